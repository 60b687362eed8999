"""Training chips from the real composite and masks: georeferencing, manifest, spatial split."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from fixtures_labels import (  # noqa: F401
    brandenburg_composite,
    crop_raster,
    labels_dir,
    osm_gpkg,
    read_bands,
    read_mask,
    window_composite,
)
from osgeo import gdal

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.labels.chips import ChipsParams, chip_origins, read_manifest, run_chips
from geedl_plugin.core.labels.legend import IGNORE
from geedl_plugin.core.labels.rasterize import RasterizeParams, run_rasterize


@pytest.fixture(scope="module")
def osm_mask(window_composite, osm_gpkg, labels_dir):  # noqa: F811
    return run_rasterize(
        RasterizeParams(
            osm_gpkg,
            window_composite,
            labels_dir / "chips_osm.tif",
            class_field="fclass",
            backup_existing=False,
        )
    ).path


def test_chip_origins_cover_the_image():
    assert chip_origins(512, 128, 96) == [0, 96, 192, 288, 384]
    assert chip_origins(500, 128, 128) == [0, 128, 256, 372]
    assert chip_origins(100, 128, 96) == [0]


def test_chips_manifest_georeferencing_and_split(window_composite, osm_mask, tmp_path):  # noqa: F811
    result = run_chips(
        ChipsParams(
            window_composite,
            osm_mask,
            tmp_path / "chips",
            chip_size=64,
            overlap=16,
            min_labelled_fraction=0.1,
            val_fraction=0.25,
            block_size=128,
        )
    )
    manifest = read_manifest(result.out_dir)
    assert manifest["chip_size"] == 64 and manifest["stride"] == 48
    assert manifest["bands"] == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "HUE"]
    assert result.train == manifest["splits"]["train"] > 0 and result.val == manifest["splits"]["val"] > 0
    image = gdal.Open(str(window_composite))
    x0, dx, _, y0, _, dy = image.GetGeoTransform()
    labels = read_mask(osm_mask)
    pixels = read_bands(window_composite)
    owner = np.full(labels.shape, "", dtype=object)
    for chip in manifest["chips"]:
        img = gdal.Open(str(result.out_dir / chip["image"]))
        lab = gdal.Open(str(result.out_dir / chip["label"]))
        r, c = chip["row"], chip["col"]
        assert img.GetGeoTransform() == pytest.approx((x0 + c * dx, dx, 0, y0 + r * dy, 0, dy))
        assert img.GetProjection() == image.GetProjection() == lab.GetProjection()
        assert img.RasterCount == 8 and img.GetRasterBand(8).GetDescription() == "HUE"
        assert img.GetRasterBand(1).DataType == gdal.GDT_Float32
        assert np.array_equal(
            img.GetRasterBand(5).ReadAsArray(), pixels["B11"][r : r + 64, c : c + 64], equal_nan=True
        )
        chip_labels = lab.GetRasterBand(1).ReadAsArray()
        assert np.array_equal(chip_labels, labels[r : r + 64, c : c + 64])
        counts = np.bincount(chip_labels[chip_labels != IGNORE], minlength=256)
        assert chip["class_counts"] == {str(i): int(counts[i]) for i in np.nonzero(counts)[0]}
        assert chip["labelled_fraction"] >= 0.1
        assert chip["bounds"] == pytest.approx(
            [x0 + c * dx, y0 + (r + 64) * dy, x0 + (c + 64) * dx, y0 + r * dy]
        )
        # no pixel belongs to a train chip and a val chip
        window = owner[r : r + 64, c : c + 64]
        assert not np.any((window != "") & (window != chip["split"]))
        window[:] = chip["split"]
    assert {c["block"] for c in manifest["chips"] if c["split"] == "val"}.isdisjoint(
        {c["block"] for c in manifest["chips"] if c["split"] == "train"}
    )
    totals = {split: {} for split in ("train", "val")}
    for chip in manifest["chips"]:
        for key, value in chip["class_counts"].items():
            totals[chip["split"]][key] = totals[chip["split"]].get(key, 0) + value
    assert manifest["class_counts"] == totals
    with open(result.manifest_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [c["id"] for c in manifest["chips"]]
    assert {r["split"] for r in rows} == {"train", "val"}
    assert int(rows[0]["count_0"]) == manifest["chips"][0]["class_counts"].get("0", 0)


def test_integer_image_any_bands_and_vector_labels(window_composite, osm_gpkg, tmp_path):  # noqa: F811
    uint16 = crop_raster(
        window_composite,
        tmp_path / "uint16.tif",
        window=(0, 0, 200, 150),
        bands=[1, 4, 5],
        output_type=gdal.GDT_UInt16,
    )
    result = run_chips(
        ChipsParams(
            uint16,
            osm_gpkg,
            tmp_path / "chips",
            chip_size=96,
            overlap=0,
            class_field="fclass",
            class_map={"water": 1, "forest": 2},
            min_labelled_fraction=0.0,
            val_fraction=0.0,
        )
    )
    manifest = json.loads(result.manifest.read_text())
    assert manifest["image_dtype"] == "uint16" and manifest["bands"] == ["B2", "B8", "B11"]
    assert manifest["legend"]["classes"] == [
        {"id": 1, "name": "water", "color": "#1f78b4"},
        {"id": 2, "name": "forest", "color": "#1b5e20"},
    ]
    assert len(manifest["chips"]) == 4 and all(c["split"] == "train" for c in manifest["chips"])
    first = gdal.Open(str(result.out_dir / manifest["chips"][0]["image"]))
    assert first.RasterCount == 3 and first.GetRasterBand(1).DataType == gdal.GDT_UInt16
    assert (result.out_dir / "labels_rasterized.tif").exists()


def test_small_image_gives_one_padded_chip(window_composite, osm_mask, tmp_path):  # noqa: F811
    small = crop_raster(window_composite, tmp_path / "small.tif", window=(0, 300, 40, 30))
    small_labels = crop_raster(osm_mask, tmp_path / "small_labels.tif", window=(0, 300, 40, 30))
    result = run_chips(
        ChipsParams(
            small, small_labels, tmp_path / "chips", chip_size=64, overlap=0, min_labelled_fraction=0.0
        )
    )
    chip = read_manifest(result.manifest)["chips"][0]
    image = gdal.Open(str(result.out_dir / chip["image"]))
    label = gdal.Open(str(result.out_dir / chip["label"])).ReadAsArray()
    assert image.RasterXSize == 64 and np.isnan(image.GetRasterBand(1).ReadAsArray()[40:, :]).all()
    assert (label[30:, :] == IGNORE).all() and (label[:, 40:] == IGNORE).all()


def test_too_few_labels_are_skipped(window_composite, osm_mask, tmp_path):  # noqa: F811
    result = run_chips(
        ChipsParams(
            window_composite,
            osm_mask,
            tmp_path / "c",
            chip_size=64,
            overlap=0,
            min_labelled_fraction=0.9,
            val_fraction=0.0,
        )
    )
    assert result.skipped_few_labels > 0
    fractions = [c["labelled_fraction"] for c in read_manifest(result.manifest)["chips"]]
    assert all(f >= 0.9 for f in fractions)
    assert result.train == len(fractions) == (6 * 8) - result.skipped_few_labels


def test_bad_inputs_are_refused_before_writing(window_composite, osm_mask, tmp_path):  # noqa: F811
    other_grid = crop_raster(osm_mask, tmp_path / "shifted.tif", window=(1, 0, 200, 200))
    with pytest.raises(GeedlError, match="not on the grid"):
        run_chips(ChipsParams(window_composite, other_grid, tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    with pytest.raises(GeedlError, match="Overlap"):
        run_chips(ChipsParams(window_composite, osm_mask, tmp_path / "b", chip_size=64, overlap=64))
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(GeedlError, match="not empty"):
        run_chips(ChipsParams(window_composite, osm_mask, target, chip_size=128))
    result = run_chips(ChipsParams(window_composite, osm_mask, target, chip_size=128, overwrite=True))
    assert result.backup is not None and (result.backup / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
