"""The dock's state and layers live in the project: save, clear, reopen, and continue.

Earth Engine runs offline here, as earthengine-api's own tests do (tests/ee_harness.py): the
real library builds the real requests, and the REST resource is a mock that answers the scene
query and hands out map ids. Reopening the project must ask for a fresh map id (tokens expire).
"""

from __future__ import annotations

from unittest import mock

import pytest
from fixtures_gui import dock_fixture, draw_region, fetch_sample, gui_settings_fixture  # noqa: F401
from qgis.core import QgsMultiBandColorRenderer, QgsProject
from qgis.PyQt.QtCore import Qt

from geedl_plugin.gui import layers
from geedl_plugin.gui.context import COMPOSITE, EE_PREVIEW, REGION
from geedl_plugin.gui.step_source import SourceStep
from geedl_plugin.gui.step_train import TrainStep

ee_harness = pytest.importorskip("ee_harness")


def ee_resource(map_name: str) -> mock.MagicMock:
    """A Cloud API resource answering computeValue (scene summary) and maps.create (map id)."""
    resource = mock.MagicMock()
    projects = resource.projects.return_value
    projects.value.return_value.compute.return_value.execute.return_value = {"result": {
        "count": 2, "ids": ["20240105T160000_a", "20240115T160000_b"],
        "times": [1704470400000, 1705334400000], "cloud": [0.2, 0.7]}}
    projects.maps.return_value.create.return_value.execute.return_value = {"name": map_name}
    return resource


def test_state_layers_and_ee_preview_survive_save_and_reopen(dock, qtbot, qgis_canvas, tmp_path):
    draw_region(dock, qtbot, qgis_canvas)
    fetch_sample(dock, qtbot)
    source = dock.step(SourceStep)
    train = dock.step(TrainStep)
    train.epochs.setValue(3)
    train.size.setCurrentIndex(train.size.findData(32))
    source.ee_radio.setChecked(True)
    source.collection.setCurrentIndex(source.collection.findData("S2"))

    from ee import apitestcase

    with ee_harness.offline_ee(), ee_harness.no_network():
        first = ee_resource("projects/geedl-test/maps/first-map")
        with apitestcase.UsingCloudApi(cloud_api_resource=first):
            qtbot.mouseClick(source.preview_button, Qt.LeftButton)
            qtbot.waitUntil(lambda: dock.ctx.layer(EE_PREVIEW) is not None, timeout=60000)
        preview = dock.ctx.layer(EE_PREVIEW)
        assert "first-map" in preview.source() and preview.providerType() == "wms"
        assert "2 scene(s) on 2 date(s)" in source.status.text()
        # the map request carried the false-colour visualisation of document 000
        body = first.projects.return_value.maps.return_value.create.call_args.kwargs["body"]
        visualize = ee_harness.Graph(body["expression"]).one("Image.visualize")
        assert visualize.arg("bands") == ["B11", "B8", "B3"]
        assert ee_harness.Graph(body["expression"]).find("Collection.filter"), "a filtered S2 collection"
        stored = preview.customProperty(layers.EE_OBJECT_PROPERTY)
        assert '"expression"' in stored

        run_name = dock.ctx.run.name
        project_file = tmp_path / "project.qgz"
        assert QgsProject.instance().write(str(project_file))
        QgsProject.instance().clear()
        assert dock.ctx.run is None and not dock.toolbox.isItemEnabled(1)

        fresh = ee_resource("projects/geedl-test/maps/fresh-map")
        with apitestcase.UsingCloudApi(cloud_api_resource=fresh):
            assert QgsProject.instance().read(str(project_file))
            qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=60000)
            reopened = dock.ctx.layer(EE_PREVIEW)
            assert reopened is not None and "fresh-map" in reopened.source(), reopened.source()

    assert dock.ctx.run.name == run_name
    assert dock.ctx.has(REGION) and dock.ctx.has(COMPOSITE)
    assert dock.toolbox.isItemEnabled(1) and dock.toolbox.isItemEnabled(2)
    assert train.epochs.value() == 3 and source.ee_radio.isChecked()
    assert train.size.currentData() == 32
    assert source.collection.currentData() == "S2"
    composite = dock.ctx.layer(COMPOSITE)
    assert isinstance(composite.renderer(), QgsMultiBandColorRenderer)
    assert {layer.name() for layer in layers.layers_in_run(dock.ctx.run)} >= {"region", "composite"}
