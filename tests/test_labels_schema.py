"""Label-layer schema and QGIS style: QGIS opens the files styled, editing gives a class dropdown."""

from __future__ import annotations

import subprocess

import pytest
from fixtures_labels import brandenburg_composite, labels_dir, window_composite  # noqa: F401
from osgeo import ogr

from geedl_plugin.core.labels.legend import Legend, LegendClass
from geedl_plugin.core.labels.polygons import PolygonizeParams, run_polygonize
from geedl_plugin.core.labels.rules import AutolabelParams, crop_soil_rules, run_autolabel
from geedl_plugin.core.labels.schema import FIELD_NAMES, export_labels, style_qml


@pytest.fixture(scope="module")
def crop_soil_layer(window_composite, labels_dir):  # noqa: F811
    mask = run_autolabel(
        AutolabelParams(window_composite, labels_dir / "schema_cs.tif", crop_soil_rules())
    ).path
    return run_polygonize(PolygonizeParams(mask, labels_dir / "schema_cs.gpkg", min_area_m2=20000))


def _check_styled(layer, legend: Legend) -> None:
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
    categories = {str(c.value()): (c.label(), c.symbol().color().name()) for c in renderer.categories()}
    assert categories == {str(c.id): (c.name, c.color) for c in legend.classes if c.id != legend.background}
    setup = layer.editorWidgetSetup(layer.fields().indexOf("class_id"))
    assert setup.type() == "ValueMap"
    pairs = {value: label for item in setup.config()["map"] for label, value in item.items()}
    assert pairs == {str(c.id): f"{c.id} {c.name}" for c in legend.classes}
    source = layer.editorWidgetSetup(layer.fields().indexOf("source"))
    assert source.type() == "ValueMap"
    default = layer.defaultValueDefinition(layer.fields().indexOf("source"))
    assert default.expression() == "'manual'"


def test_qgis_applies_the_style_stored_in_the_geopackage(crop_soil_layer, qgis_app):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{crop_soil_layer.path}|layername={crop_soil_layer.layer}", "labels", "ogr")
    assert layer.isValid() and layer.featureCount() == crop_soil_layer.features > 0
    _check_styled(layer, crop_soil_rules().legend())
    assert [f.name() for f in layer.fields() if f.name() != "fid"] == list(FIELD_NAMES)


def test_shapefile_export_keeps_fields_and_style(crop_soil_layer, tmp_path, qgis_app):
    from qgis.core import QgsVectorLayer

    out = export_labels(crop_soil_layer.path, tmp_path / "labels.shp")
    assert (tmp_path / "labels.prj").exists() and (tmp_path / "labels.qml").exists()
    info = subprocess.run(
        ["ogrinfo", "-so", "-al", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert f"Feature Count: {crop_soil_layer.features}" in info
    assert all(f"\n{name}: " in info for name in FIELD_NAMES)
    layer = QgsVectorLayer(str(out), "labels", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    _check_styled(layer, crop_soil_rules().legend())
    source, target = ogr.Open(str(crop_soil_layer.path)), ogr.Open(str(out))
    a = sorted((f["class_id"], round(f["area_m2"], 2)) for f in source.GetLayer(0))
    b = sorted((f["class_id"], round(f["area_m2"], 2)) for f in target.GetLayer(0))
    assert a == b
    export_labels(crop_soil_layer.path, tmp_path / "labels.shp")  # again: the first export is backed up
    assert len(list(tmp_path.glob("labels.bak-*.shp"))) == 1
    assert len(list(tmp_path.glob("labels.bak-*.dbf"))) == 1


def test_style_follows_the_legend_names_and_colours(qgis_app):
    legend = Legend(
        [LegendClass(0, "other"), LegendClass(4, "rice paddy", "#123456"), LegendClass(9, "O'Brien's field")],
        background=0,
    )
    qml = style_qml(legend)
    assert 'value="4" label="rice paddy"' in qml and "18,52,86,255" in qml
    # the class_name default must parse in QGIS 3.22 and follow class_id when it is edited
    from xml.etree import ElementTree

    from qgis.core import QgsExpression, QgsExpressionContext, QgsFeature, QgsField, QgsFields
    from qgis.PyQt.QtCore import QVariant

    text = ElementTree.fromstring(qml).find(".//default[@field='class_name']").get("expression")
    assert "WHEN \"class_id\" = 9 THEN 'O''Brien''s field'" in text  # quotes escaped
    expression = QgsExpression(text)
    assert not expression.hasParserError(), expression.parserErrorString()
    fields = QgsFields()
    fields.append(QgsField("class_id", QVariant.Int))
    fields.append(QgsField("class_name", QVariant.String))
    feature = QgsFeature(fields)
    feature.setAttributes([9, "stale name"])
    context = QgsExpressionContext()
    context.setFeature(feature)
    assert expression.evaluate(context) == "O'Brien's field"
    assert 'value="0" label="other"' not in qml  # the background is not drawn


def test_likely_class_field_prefers_known_class_names():
    from geedl_plugin.core.labels.schema import likely_class_field

    assert likely_class_field(["fid", "osm_id", "code", "fclass", "name"]) == "fclass"  # OSM land use
    assert likely_class_field(["fid", "class_id", "class_name", "source"]) == "class_id"  # ours
    assert likely_class_field(["FID", "Label"]) == "Label"  # any case, returned as spelled
    assert likely_class_field(["fid", "name", "area"]) is None
