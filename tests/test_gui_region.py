"""Region step: drawing on the canvas with the dock's map tools, as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_gui import click_polygon, dock_fixture, drag_rectangle, gui_settings_fixture, wait_for_tasks  # noqa: F401
from qgis.core import QgsProject
from qgis.PyQt.QtCore import Qt

from geedl_plugin.gui.context import REGION
from geedl_plugin.gui.step_region import RegionStep


def _group_layers(dock):
    group = QgsProject.instance().layerTreeRoot().findGroup(dock.ctx.run.name)
    assert group is not None, "the run's layer group is missing"
    return {node.layer().name(): node.layer() for node in group.findLayers()}


def test_draw_rectangle_makes_region_layer_with_area(dock, qtbot, qgis_canvas):
    step = dock.step(RegionStep)
    assert not dock.toolbox.isItemEnabled(1), "Source must wait for a region"
    qtbot.mouseClick(step.rectangle_button, Qt.LeftButton)
    assert qgis_canvas.mapTool() is step.rectangle_tool
    drag_rectangle(qtbot, qgis_canvas, 446500, 4168500, 448100, 4169700)
    wait_for_tasks(qtbot, dock)
    region = dock.ctx.artifact(REGION)
    assert region and Path(region["path"]).is_file()
    # drawn corners are snapped to screen pixels: the area is 1.6 x 1.2 km within a pixel's width
    assert region["km2"] == pytest.approx(1.92, rel=0.01)
    assert f"{region['km2']:,.2f} km²" in step.area_label.text()
    layers = _group_layers(dock)
    assert "region" in layers and layers["region"].featureCount() == 1
    assert dock.ctx.run.name.startswith("geedl ")
    assert dock.toolbox.isItemEnabled(1), "Source is enabled once the region exists"
    assert qgis_canvas.mapTool() is not step.rectangle_tool, "the tool is released after drawing"


def test_draw_polygon_and_use_selected_feature(dock, qtbot, qgis_canvas):
    step = dock.step(RegionStep)
    qtbot.mouseClick(step.polygon_button, Qt.LeftButton)
    triangle = [(446500, 4168500), (448500, 4168500), (446500, 4170500)]
    click_polygon(qtbot, qgis_canvas, triangle)
    wait_for_tasks(qtbot, dock)
    region = dock.ctx.artifact(REGION)
    assert region["km2"] == pytest.approx(2.0, rel=0.01)

    # the region layer itself is a polygon layer: use its (only) feature again as the region
    layer = _group_layers(dock)["region"]
    step.layer_combo.setLayer(layer)
    layer.selectAll()
    qtbot.mouseClick(step.selected_button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    assert dock.ctx.artifact(REGION)["km2"] == pytest.approx(region["km2"], rel=1e-6)
    assert "feature" in dock.ctx.artifact(REGION)["source"]


def test_huge_region_warns_and_offers_export(dock, qtbot, qgis_canvas):
    step = dock.step(RegionStep)
    from qgis.core import QgsGeometry, QgsRectangle

    step.use_geometry(QgsGeometry.fromRect(QgsRectangle(300000, 4000000, 600000, 4300000)))
    wait_for_tasks(qtbot, dock)
    assert dock.ctx.artifact(REGION)["km2"] > 80000
    assert "Too large to download" in step.area_label.text()
    assert "Export" in step.area_label.text()
