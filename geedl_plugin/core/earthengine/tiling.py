"""Split an output grid into ``computePixels`` requests Earth Engine accepts (no ``ee`` needed).

Earth Engine refuses (HTTP 400) a computePixels request over 48 MiB of uncompressed pixels
(bands x bytes per value x width x height), over 32768 px a side or over 1024 bands. The plan
keeps every request inside those limits for any region, band count and data type: it tiles
the grid into blocks of at most ``tile_size`` pixels a side (document 001 used 512) and splits
the bands into groups when a block of all bands would be too big. The tiles partition the grid:
every pixel of every band is requested exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import GeedlError

MAX_REQUEST_BYTES = 48 * 1024 * 1024  # the server's limit: 50331648 bytes
MAX_SIDE = 32768
MAX_BANDS = 1024
DEFAULT_TILE_SIZE = 512

DTYPE_BYTES = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "uint32": 4, "int32": 4,
               "float32": 4, "float64": 8}


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise GeedlError(f"Unknown data type {dtype!r}; use one of {', '.join(DTYPE_BYTES)}.") from None


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: upper-left corner (x0, y0), square pixels of ``scale`` CRS units."""

    crs: str
    x0: float
    y0: float
    scale: float
    width: int
    height: int

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        return (self.x0, self.scale, 0.0, self.y0, 0.0, -self.scale)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict:
        return {"crs": self.crs, "x0": self.x0, "y0": self.y0, "scale": self.scale,
                "width": self.width, "height": self.height}


@dataclass(frozen=True)
class TileRequest:
    """One computePixels request: a pixel window of the grid and a contiguous group of bands."""

    col_off: int
    row_off: int
    width: int
    height: int
    band_start: int
    band_count: int

    @property
    def key(self) -> str:
        return f"r{self.row_off:06d}_c{self.col_off:06d}_b{self.band_start:04d}"

    def nbytes(self, bytes_per_value: int) -> int:
        return self.width * self.height * self.band_count * bytes_per_value

    def affine(self, grid: Grid) -> dict[str, float]:
        """Earth Engine's ``affineTransform`` of this window (origin = the window's corner)."""
        return {"scaleX": grid.scale, "shearX": 0.0, "translateX": grid.x0 + self.col_off * grid.scale,
                "shearY": 0.0, "scaleY": -grid.scale, "translateY": grid.y0 - self.row_off * grid.scale}


@dataclass(frozen=True)
class TilePlan:
    grid: Grid
    band_names: tuple[str, ...]
    dtype: str
    tile_size: int
    band_group: int
    tiles: tuple[TileRequest, ...]

    @property
    def total_bytes(self) -> int:
        return self.grid.pixels * len(self.band_names) * dtype_bytes(self.dtype)

    def bands_of(self, tile: TileRequest) -> list[str]:
        return list(self.band_names[tile.band_start:tile.band_start + tile.band_count])


def grid_for_bounds(bounds: tuple[float, float, float, float], scale: float, crs: str) -> Grid:
    """The smallest grid aligned on multiples of ``scale`` that contains ``bounds``.

    Aligning on the CRS origin means two downloads of neighbouring regions share pixel edges.
    """
    xmin, ymin, xmax, ymax = bounds
    if not scale > 0:
        raise GeedlError(f"Pixel size {scale} must be positive.")
    if not (xmax > xmin and ymax > ymin):
        raise GeedlError("The region is empty in the output CRS; draw an area.")
    x0 = math.floor(xmin / scale + 1e-9) * scale
    y0 = math.ceil(ymax / scale - 1e-9) * scale
    width = max(1, math.ceil((xmax - x0) / scale - 1e-9))
    height = max(1, math.ceil((y0 - ymin) / scale - 1e-9))
    return Grid(crs, float(x0), float(y0), float(scale), int(width), int(height))


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def plan_tiles(grid: Grid, band_names: list[str] | tuple[str, ...], dtype: str = "float32",
               tile_size: int = DEFAULT_TILE_SIZE, max_bytes: int = MAX_REQUEST_BYTES,
               max_bands: int = MAX_BANDS, max_side: int = MAX_SIDE) -> TilePlan:
    """Plan requests of at most ``tile_size`` px a side within the server's limits.

    The requested tile size is kept when it fits; bands are grouped so a block of one group
    fits ``max_bytes``; only when a single band of a ``tile_size`` block is too big is the tile
    made smaller.
    """
    n_bands = len(band_names)
    if n_bands == 0:
        raise GeedlError("Nothing to download: the image has no bands.")
    if tile_size < 1:
        raise GeedlError(f"Tile size {tile_size} must be at least 1 pixel.")
    per_value = dtype_bytes(dtype)
    side = min(int(tile_size), max_side)
    largest_side = math.isqrt(max_bytes // per_value)
    side = max(1, min(side, largest_side))
    block = min(side, grid.width) * min(side, grid.height) * per_value
    group = max(1, min(n_bands, max_bands, max_bytes // block))
    tiles = tuple(
        TileRequest(col, row, w, h, band_start, min(group, n_bands - band_start))
        for band_start in range(0, n_bands, group)
        for row, h in _chunks(grid.height, side)
        for col, w in _chunks(grid.width, side)
    )
    return TilePlan(grid, tuple(band_names), dtype, side, group, tiles)
