"""Labels step: rules with editable thresholds, a mask preview layer, polygons, class edits."""

from __future__ import annotations

import json

import numpy as np
from fixtures_gui import dock_fixture, draw_region, fetch_sample, gui_settings_fixture  # noqa: F401
from osgeo import gdal
from qgis.core import QgsPalettedRasterRenderer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QTextDocument

from geedl_plugin.gui import layers
from geedl_plugin.gui.context import MASK
from geedl_plugin.gui.step_labels import LabelsStep


def displayed(label) -> str:
    """The text a rich-text QLabel shows (markup rendered, entities decoded)."""
    document = QTextDocument()
    document.setHtml(label.text())
    return document.toPlainText()


def test_rule_masks_with_thresholds_and_expression(dock, qtbot, qgis_canvas):
    draw_region(dock, qtbot, qgis_canvas)  # fields, marsh and a tidal channel
    fetch_sample(dock, qtbot)
    labels = dock.step(LabelsStep)
    assert dock.toolbox.currentIndex() == 2, "the Labels step opens once the composite is there"

    labels.rule.setCurrentIndex(labels.rule.findData("water"))
    assert set(labels.param_widgets) == {"method", "threshold", "mask_dilated_cloud"}
    labels.param_widgets["method"].setCurrentIndex(labels.param_widgets["method"].findData("mndwi"))
    labels.param_widgets["threshold"].setValue(0.1)
    assert "MNDWI > 0.1" in displayed(labels.rule_text)
    labels.rule.setCurrentIndex(labels.rule.findData("crop"))
    assert "HUE < 0 && NDVI > 0" in displayed(labels.rule_text), labels.rule_text.text()
    labels.rule.setCurrentIndex(labels.rule.findData("water"))
    labels.param_widgets["method"].setCurrentIndex(labels.param_widgets["method"].findData("mndwi"))
    labels.param_widgets["threshold"].setValue(0.1)
    qtbot.mouseClick(labels.mask_row.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    mask = dock.ctx.layer(MASK)
    assert mask is not None and mask.name() == "mask water", labels.status.text()
    assert isinstance(mask.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in mask.renderer().classes()] == ["water"]
    water = gdal.Open(mask.source()).ReadAsArray()
    share = float(np.mean(water == 1))
    assert 0.02 < share < 0.9, "the window holds a tidal channel and land"
    assert "water" in labels.status.text()

    # stricter threshold -> fewer water pixels, replacing the previous mask layer in the group
    labels.param_widgets["threshold"].setValue(0.4)
    qtbot.mouseClick(labels.mask_row.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    stricter = float(np.mean(gdal.Open(dock.ctx.layer(MASK).source()).ReadAsArray() == 1))
    assert stricter < share
    assert len(layers.layers_by_role(MASK, dock.ctx.run)) == 1

    # an expression from the builder
    labels.rule.setCurrentIndex(labels.rule.findData("expression"))
    assert labels.builder.isVisible()
    labels.builder.setText("NDVI > 0.5 && B11 < 2500")
    assert labels.builder.valid
    qtbot.mouseClick(labels.mask_row.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    assert dock.ctx.layer(MASK).name() == "mask expression"
    assert dock.ctx.artifact(MASK)["rule"].endswith("NDVI > 0.5 && B11 < 2500")


def test_polygons_edit_class_with_dropdown_and_export_shapefile(dock, qtbot, qgis_canvas, tmp_path):
    draw_region(dock, qtbot, qgis_canvas)
    fetch_sample(dock, qtbot)
    labels = dock.step(LabelsStep)
    labels.rule.setCurrentIndex(labels.rule.findData("water"))
    qtbot.mouseClick(labels.mask_row.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    labels.min_area.setValue(500)
    qtbot.mouseClick(labels.polygons_row.button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    layer = labels.label_layer()
    assert layer is not None and layer.name() == "labels", labels.status.text()
    assert layer.featureCount() > 0
    assert all(f["area_m2"] >= 500 for f in layer.getFeatures())
    assert layer.renderer().type() == "categorizedSymbol"
    class_index = layer.fields().indexOf("class_id")
    widget = layer.editorWidgetSetup(class_index)
    assert widget.type() == "ValueMap"
    choices = {value: name for entry in widget.config()["map"] for name, value in entry.items()}
    assert any(name.endswith("water") for name in choices.values())
    assert dock.toolbox.isItemEnabled(3), "Train is enabled once labels exist"

    # the analyst says one "water" polygon is something else: pick another class in the dropdown
    other = next(int(v) for v, name in choices.items() if not name.endswith("water"))
    feature = next(layer.getFeatures())
    qtbot.mouseClick(labels.edit_button, Qt.LeftButton)
    assert layer.isEditable()
    assert layer.changeAttributeValue(feature.id(), class_index, other)
    qtbot.mouseClick(labels.edit_button, Qt.LeftButton)
    assert not layer.isEditable() and layer.getFeature(feature.id())["class_id"] == other

    out = tmp_path / "labels.shp"
    labels.export(str(out))
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    exported = gdal.OpenEx(str(out))
    assert exported is not None, labels.status.text()
    rows = [(f.GetField("class_id"), f.GetField("source")) for f in exported.GetLayer(0)]
    assert len(rows) == layer.featureCount()
    assert sum(1 for class_id, _ in rows if class_id == other) == 1
    assert out.with_suffix(".prj").is_file()

    # georeferenced chips with a manifest, for training elsewhere
    labels.chip_size.setValue(32)
    labels.export_chips(str(tmp_path / "chips"))
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
    manifest = tmp_path / "chips" / "manifest.json"
    assert manifest.is_file(), labels.status.text()
    chips = json.loads(manifest.read_text())
    assert chips["chip_size"] == 32 and chips["chips"]
    first = gdal.Open(str(tmp_path / "chips" / chips["chips"][0]["image"]))
    assert first.GetProjection() and first.RasterXSize == 32
