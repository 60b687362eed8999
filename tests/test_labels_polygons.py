"""Mask -> label polygons on real masks: areas, statistics, validity, formats, QGIS agreement."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
from fixtures_labels import brandenburg_composite, labels_dir, layer_features, read_mask, window_composite  # noqa: F401
from osgeo import gdal, ogr, osr

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.labels.legend import IGNORE
from geedl_plugin.core.labels.polygons import PolygonizeParams, read_area_stats, run_polygonize
from geedl_plugin.core.labels.rules import AutolabelParams, run_autolabel
from geedl_plugin.core.labels.schema import FIELD_NAMES

PIXEL_M2 = 100.0  # 10 m pixels


@pytest.fixture(scope="module")
def water_mask(window_composite, labels_dir):  # noqa: F811
    return run_autolabel(
        AutolabelParams(window_composite, labels_dir / "poly_water.tif", "water", {"method": "ndwi"})
    ).path


@pytest.fixture(scope="module")
def crop_mask(window_composite, labels_dir):  # noqa: F811
    return run_autolabel(AutolabelParams(window_composite, labels_dir / "poly_crop.tif", "crop")).path


def test_polygons_areas_statistics_and_validity(water_mask, tmp_path):
    result = run_polygonize(PolygonizeParams(water_mask, tmp_path / "water.gpkg"))
    rows = layer_features(result.path)
    water_pixels = int((read_mask(water_mask) == 1).sum())
    # before the filter the polygons cover exactly the water pixels
    assert result.stats_all.total == pytest.approx(water_pixels * PIXEL_M2)
    assert result.stats_all.count > result.stats.count == len(rows) > 0
    assert result.dropped_small == result.stats_all.count - result.stats.count
    assert all(r["_valid"] for r in rows)
    assert all(r["area_m2"] >= 3000 for r in rows)
    assert all(r["area_m2"] == pytest.approx(r["_area"], rel=1e-9) for r in rows)
    assert result.stats.min == pytest.approx(min(r["area_m2"] for r in rows))
    assert result.stats.total == pytest.approx(sum(r["area_m2"] for r in rows))
    assert {r["class_name"] for r in rows} == {"water"} and {r["source"] for r in rows} == {"auto"}
    assert all("NDWI > 0" in r["rule"] for r in rows)
    # statistics stored beside the file and in the layer metadata
    stored = read_area_stats(result.path)
    assert stored["area_stats_m2"]["count"] == len(rows)
    assert stored["legend"]["classes"][1]["name"] == "water"
    dataset = ogr.Open(str(result.path))
    layer = dataset.GetLayer(0)
    assert json.loads(layer.GetMetadataItem("GEEDL_AREA_STATS"))["area_stats_m2"]["count"] == len(rows)


def test_eight_connected_joins_diagonals_and_stays_valid(water_mask, tmp_path):
    four = run_polygonize(PolygonizeParams(water_mask, tmp_path / "four.gpkg", min_area_m2=0))
    eight = run_polygonize(
        PolygonizeParams(water_mask, tmp_path / "eight.gpkg", min_area_m2=0, connectedness=8)
    )
    assert eight.stats_all.count < four.stats_all.count
    assert eight.stats_all.total == pytest.approx(four.stats_all.total)
    rows = layer_features(eight.path)
    assert all(r["_valid"] for r in rows) and eight.repaired > 0  # corner-touching rings were repaired
    assert sum(r["_area"] for r in rows) == pytest.approx(four.stats_all.total)


def test_min_area_bbox_simplify_and_fill_holes(crop_mask, tmp_path):
    base = run_polygonize(PolygonizeParams(crop_mask, tmp_path / "base.gpkg"))
    bigger = run_polygonize(PolygonizeParams(crop_mask, tmp_path / "big.gpkg", min_area_m2=20000))
    assert bigger.stats_all.count == base.stats_all.count and 0 < bigger.stats.count < base.stats.count
    assert bigger.stats.min >= 20000
    boxes = layer_features(
        run_polygonize(PolygonizeParams(crop_mask, tmp_path / "bb.gpkg", geometry="bbox")).path
    )
    assert len(boxes) == base.stats.count
    assert all(
        re.fullmatch(r"MULTIPOLYGON \(\(\([^()]*\)\)\)", r["_wkt"]) and r["_wkt"].count(",") == 4
        for r in boxes
    )  # one ring, 5 points: rectangles
    assert sum(r["area_m2"] for r in boxes) > base.stats.total
    filled = run_polygonize(PolygonizeParams(crop_mask, tmp_path / "filled.gpkg", fill_holes_m2=1e9))
    filled_rows = layer_features(filled.path)
    assert all(r["_rings"] == len(re.findall(r"\(\(", r["_wkt"])) for r in filled_rows)  # no holes left
    assert filled.stats.total > base.stats.total
    simple = run_polygonize(PolygonizeParams(crop_mask, tmp_path / "simple.gpkg", simplify_m=15))
    simple_rows = layer_features(simple.path)
    base_rows = layer_features(base.path)
    assert all(r["_valid"] for r in simple_rows)
    assert sum(r["_wkt"].count(",") for r in simple_rows) < 0.6 * sum(r["_wkt"].count(",") for r in base_rows)
    assert simple.stats.total == pytest.approx(base.stats.total, rel=0.05)


def test_shapefile_opens_in_ogrinfo_with_crs_fields_and_count(water_mask, tmp_path):
    result = run_polygonize(PolygonizeParams(water_mask, tmp_path / "water.shp"))
    assert (tmp_path / "water.prj").exists() and (tmp_path / "water.qml").exists()
    info = subprocess.run(
        ["ogrinfo", "-so", "-al", str(result.path)], capture_output=True, text=True, check=True
    )
    assert f"Feature Count: {result.features}" in info.stdout
    assert 'ID["EPSG",32633]' in info.stdout or "UTM zone 33N" in info.stdout
    for name in FIELD_NAMES:
        assert re.search(rf"^{name}: ", info.stdout, re.MULTILINE), name
    assert all(len(name) <= 10 for name in FIELD_NAMES)


def test_areas_agree_with_qgis(water_mask, tmp_path, qgis_app):
    """Our area_m2 against QGIS's own $area: planar in the projected CRS (the layer's) and ellipsoidal."""
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsDistanceArea,
        QgsExpression,
        QgsExpressionContext,
        QgsProject,
        QgsVectorLayer,
    )

    result = run_polygonize(PolygonizeParams(water_mask, tmp_path / "water.shp"))
    layer = QgsVectorLayer(str(result.path), "water", "ogr")
    assert layer.isValid() and layer.featureCount() == result.features
    assert layer.crs() == QgsCoordinateReferenceSystem("EPSG:32633")
    for ellipsoid, tolerance in (("NONE", 1e-6), ("EPSG:7030", 5e-3)):
        distance = QgsDistanceArea()
        distance.setSourceCrs(layer.crs(), QgsProject.instance().transformContext())
        distance.setEllipsoid(ellipsoid)
        expression = QgsExpression("$area")
        expression.setGeomCalculator(distance)
        expression.setAreaUnits(distance.areaUnits() if ellipsoid == "NONE" else 0)  # square metres
        context = QgsExpressionContext()
        for feature in layer.getFeatures():
            context.setFeature(feature)
            qgis_area = expression.evaluate(context)
            assert qgis_area == pytest.approx(feature["area_m2"], rel=tolerance), (ellipsoid, feature.id())


def test_geographic_mask_gets_areas_in_utm(water_mask, tmp_path, qgis_app):
    """An EPSG:4326 mask: polygons stay in degrees, areas are metres (local UTM), QGIS agrees."""
    from qgis.core import QgsDistanceArea, QgsProject, QgsVectorLayer

    geographic = tmp_path / "water_4326.tif"
    gdal.Warp(str(geographic), str(water_mask), dstSRS="EPSG:4326", resampleAlg="near")
    result = run_polygonize(PolygonizeParams(geographic, tmp_path / "water_4326.gpkg", min_area_m2=3000))
    assert result.crs == "EPSG:4326" and result.area_crs == "EPSG:32633"
    layer = QgsVectorLayer(f"{result.path}|layername={result.layer}", "w", "ogr")
    assert layer.crs().authid() == "EPSG:4326" and layer.featureCount() == result.features > 0
    distance = QgsDistanceArea()
    distance.setSourceCrs(layer.crs(), QgsProject.instance().transformContext())
    distance.setEllipsoid("EPSG:7030")
    for feature in layer.getFeatures():
        assert distance.measureArea(feature.geometry()) == pytest.approx(feature["area_m2"], rel=5e-3)
    # about the same water as the projected mask (resampling moves a few boundary pixels)
    projected = run_polygonize(PolygonizeParams(water_mask, tmp_path / "water_utm.gpkg", min_area_m2=0))
    assert result.stats_all.total == pytest.approx(projected.stats_all.total, rel=0.03)


def test_empty_mask_gives_an_empty_layer_with_a_warning(window_composite, tmp_path):  # noqa: F811
    mask = run_autolabel(AutolabelParams(window_composite, tmp_path / "none.tif", "NDVI > 5")).path
    result = run_polygonize(PolygonizeParams(mask, tmp_path / "none.gpkg"))
    assert result.features == 0 and result.stats.count == 0 and result.warnings
    dataset = ogr.Open(str(result.path))
    layer = dataset.GetLayer(0)
    assert layer.GetFeatureCount() == 0
    assert [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(7)] == list(FIELD_NAMES)


def test_existing_label_file_is_backed_up_never_lost(water_mask, tmp_path):
    out = tmp_path / "labels.gpkg"
    first = run_polygonize(PolygonizeParams(water_mask, out))
    run_polygonize(PolygonizeParams(water_mask, out, min_area_m2=50000))
    backups = sorted(tmp_path.glob("labels.bak-*.gpkg"))
    assert len(backups) == 1
    dataset = ogr.Open(str(backups[0]))
    assert dataset.GetLayer(0).GetFeatureCount() == first.features
    with pytest.raises(GeedlError, match="Geometry"):
        run_polygonize(PolygonizeParams(water_mask, out, geometry="hexagon"))
    assert len(sorted(tmp_path.glob("labels.bak-*.gpkg"))) == 1  # a refused run touches nothing


def test_not_a_class_mask_is_refused(window_composite, tmp_path):  # noqa: F811
    with pytest.raises(GeedlError, match="not a class mask"):
        run_polygonize(PolygonizeParams(window_composite, tmp_path / "x.gpkg"))
    assert not (tmp_path / "x.gpkg").exists()


def test_mask_without_legend_uses_its_values(water_mask, tmp_path):
    source = gdal.Open(str(water_mask))
    plain = gdal.GetDriverByName("GTiff").Create(
        str(tmp_path / "plain.tif"), source.RasterXSize, source.RasterYSize, 1, gdal.GDT_Byte
    )
    plain.SetGeoTransform(source.GetGeoTransform())
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    plain.SetProjection(srs.ExportToWkt())
    values = source.GetRasterBand(1).ReadAsArray()
    values[values == 1] = 7
    plain.GetRasterBand(1).WriteArray(values)
    plain = None
    result = run_polygonize(PolygonizeParams(tmp_path / "plain.tif", tmp_path / "plain.gpkg"))
    rows = layer_features(result.path)
    assert {r["class_id"] for r in rows} == {7} and {r["class_name"] for r in rows} == {"class 7"}
    assert np.isclose(result.stats_all.total, (values == 7).sum() * PIXEL_M2)
    assert IGNORE not in {r["class_id"] for r in rows}
