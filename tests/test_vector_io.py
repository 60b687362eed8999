"""One opener for the analyst's polygon files: the right layer, or an error that says what to fix."""

from __future__ import annotations

import pytest
from osgeo import ogr, osr

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.vector_io import open_vector_layer


def _gpkg(path, with_polygons: bool = True):
    """A GeoPackage whose first table is QGIS's non-spatial ``layer_styles``, as QGIS saves it."""
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    styles = source.CreateLayer("layer_styles", geom_type=ogr.wkbNone)
    styles.CreateField(ogr.FieldDefn("styleQML", ogr.OFTString))
    if with_polygons:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32633)
        layer = source.CreateLayer("osm_landuse", srs, ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("fclass", ogr.OFTString))
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("fclass", "water")
        feature.SetGeometry(ogr.CreateGeometryFromWkt("POLYGON ((0 0, 10 0, 10 10, 0 0))"))
        layer.CreateFeature(feature)
    source = None
    return path


def test_finds_the_polygons_beside_the_style_table(tmp_path):
    path = _gpkg(tmp_path / "labels.gpkg")
    source, layer = open_vector_layer(path)
    assert layer.GetName() == "osm_landuse" and layer.GetFeatureCount() == 1
    named_source, named = open_vector_layer(str(path), "osm_landuse")  # keep the source: it owns the layer
    assert named.GetName() == "osm_landuse"


def test_errors_say_what_to_change(tmp_path):
    with pytest.raises(GeedlError, match="does not exist. Check the path"):
        open_vector_layer(tmp_path / "missing.gpkg")
    path = _gpkg(tmp_path / "labels.gpkg")
    with pytest.raises(GeedlError, match="no layer 'roads'; its layers: ") as raised:
        open_vector_layer(path, "roads")
    assert "osm_landuse" in str(raised.value) and "layer_styles" in str(raised.value)
    empty = _gpkg(tmp_path / "styles_only.gpkg", with_polygons=False)
    with pytest.raises(GeedlError, match="no layer with geometries"):
        open_vector_layer(empty)
    text = tmp_path / "notes.gpkg"
    text.write_text("not a geopackage")
    with pytest.raises(GeedlError, match="as a vector layer|holds no vector layer"):
        open_vector_layer(text)
