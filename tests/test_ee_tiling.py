"""The computePixels tile planner never exceeds Earth Engine's limits and covers the grid once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from geedl_plugin.core.earthengine.export import decide_download_or_export
from geedl_plugin.core.earthengine.tiling import (
    DTYPE_BYTES,
    MAX_BANDS,
    MAX_REQUEST_BYTES,
    MAX_SIDE,
    Grid,
    grid_for_bounds,
    plan_tiles,
)
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.recipe import CompositeRecipe


def _partition(chunks: set[tuple[int, int]], total: int) -> bool:
    """(start, length) chunks tile [0, total) without gap or overlap."""
    position = 0
    for start, length in sorted(chunks):
        if start != position or length < 1:
            return False
        position += length
    return position == total


def _estimated_requests(width: int, height: int, bands: int, per_value: int, tile: int) -> int:
    side = max(1, min(tile, MAX_SIDE, math.isqrt(MAX_REQUEST_BYTES // per_value)))
    block = min(side, width) * min(side, height) * per_value
    group = max(1, min(bands, MAX_BANDS, MAX_REQUEST_BYTES // block))
    return math.ceil(width / side) * math.ceil(height / side) * math.ceil(bands / group)


@settings(max_examples=250, deadline=None)
@given(width=st.integers(1, 400_000), height=st.integers(1, 400_000), bands=st.integers(1, 3000),
       dtype=st.sampled_from(sorted(DTYPE_BYTES)), tile=st.integers(1, 50_000))
def test_no_request_over_the_limits_and_exact_cover(width, height, bands, dtype, tile):
    per_value = DTYPE_BYTES[dtype]
    assume(_estimated_requests(width, height, bands, per_value, tile) <= 5_000)
    grid = Grid("EPSG:32633", 300000.0, 5800000.0, 10.0, width, height)
    plan = plan_tiles(grid, [f"b{i}" for i in range(bands)], dtype, tile)

    for request in plan.tiles:
        assert 1 <= request.width <= min(MAX_SIDE, tile)
        assert 1 <= request.height <= min(MAX_SIDE, tile)
        assert 1 <= request.band_count <= MAX_BANDS
        assert request.nbytes(per_value) <= MAX_REQUEST_BYTES

    groups: dict[tuple[int, int], list] = {}
    for t in plan.tiles:
        groups.setdefault((t.band_start, t.band_count), []).append(t)
    assert _partition(set(groups), bands)
    for (_start, band_count), members in groups.items():
        cols = {(t.col_off, t.width) for t in members}
        rows = {(t.row_off, t.height) for t in members}
        assert _partition(cols, width) and _partition(rows, height)
        windows = {(t.col_off, t.row_off, t.width, t.height) for t in members}
        assert len(windows) == len(members) == len(cols) * len(rows)
        assert all(t.band_count == band_count for t in members)
    assert sum(t.width * t.height * t.band_count for t in plan.tiles) == width * height * bands
    assert len({t.key for t in plan.tiles}) == len(plan.tiles)


@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 90), height=st.integers(1, 90), bands=st.integers(1, 9),
       tile=st.integers(1, 40), max_bytes=st.integers(4, 4 * 40 * 40 * 9))
def test_every_pixel_of_every_band_requested_exactly_once(width, height, bands, tile, max_bytes):
    grid = Grid("EPSG:32618", 0.0, 0.0, 10.0, width, height)
    plan = plan_tiles(grid, [f"b{i}" for i in range(bands)], "float32", tile, max_bytes=max_bytes)
    hits = np.zeros((bands, height, width), dtype=np.int32)
    for t in plan.tiles:
        assert t.nbytes(4) <= max_bytes
        hits[t.band_start:t.band_start + t.band_count, t.row_off:t.row_off + t.height,
             t.col_off:t.col_off + t.width] += 1
    assert (hits == 1).all()


def test_document_001_tiles_and_band_groups():
    grid = Grid("EPSG:32633", 0.0, 0.0, 10.0, 1500, 1100)
    plan = plan_tiles(grid, ["B2", "B3", "B4", "B8", "B11", "B12"], "float32", 512)
    assert plan.tile_size == 512 and plan.band_group == 6 and len(plan.tiles) == 3 * 3
    stack = plan_tiles(grid, [f"b{i}" for i in range(2000)], "float32", 512)
    assert stack.band_group == MAX_REQUEST_BYTES // (512 * 512 * 4) == 48
    huge = plan_tiles(Grid("EPSG:32633", 0.0, 0.0, 10.0, 100_000, 100_000), ["NDVI"], "float64", 50_000)
    assert huge.tile_size == math.isqrt(MAX_REQUEST_BYTES // 8)
    with pytest.raises(GeedlError, match="no bands"):
        plan_tiles(grid, [], "float32")
    with pytest.raises(GeedlError, match="data type"):
        plan_tiles(grid, ["B2"], "complex64")


@settings(max_examples=200, deadline=None)
@given(x=st.floats(-1e6, 1e6), y=st.floats(-1e7, 1e7), w=st.floats(0.5, 5e4), h=st.floats(0.5, 5e4),
       scale=st.sampled_from([10.0, 20.0, 30.0, 60.0, 0.5]))
def test_grid_contains_the_bounds_and_is_aligned(x, y, w, h, scale):
    grid = grid_for_bounds((x, y, x + w, y + h), scale, "EPSG:32633")
    assert grid.x0 <= x + 1e-6 and grid.y0 >= y + h - 1e-6
    assert grid.x0 + grid.width * scale >= x + w - 1e-6
    assert grid.y0 - grid.height * scale <= y + 1e-6
    assert grid.width <= math.ceil(w / scale) + 1 and grid.height <= math.ceil(h / scale) + 1
    assert abs(grid.x0 / scale - round(grid.x0 / scale)) < 1e-6


def test_download_or_export_decision():
    recipe = CompositeRecipe(indices=["NDVI", "HUE"])
    small = decide_download_or_export([13.0, 52.4, 13.1, 52.45], recipe)
    assert small.mode == "download" and small.grid.crs == "EPSG:32633"
    assert small.tiles == len(plan_tiles(small.grid, recipe.output_names).tiles)
    big = decide_download_or_export([10.0, 50.0, 15.0, 54.0], recipe)
    assert big.mode == "export" and "over the download limit" in big.reason
    assert big.total_bytes == big.grid.pixels * 8 * 4
    many = decide_download_or_export([13.0, 52.4, 13.5, 52.7], recipe, tile_size=16)
    assert many.mode == "export" and "requests" in many.reason
    south = decide_download_or_export([-47.1, -15.9, -47.0, -15.8], CompositeRecipe(scale=30))
    assert south.grid.crs == "EPSG:32723"
    with pytest.raises(GeedlError, match="geographic"):
        decide_download_or_export([13.0, 52.4, 13.1, 52.45], CompositeRecipe(crs="EPSG:4326"))
