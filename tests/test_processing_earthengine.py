"""Earth Engine algorithms through Processing, offline: the dry run builds the real request graph
with earthengine-api (no account, no network) in the runner subprocess."""

from __future__ import annotations

import json
import sys

import pytest
from fixtures_processing import geedl_provider  # noqa: F401 - fixture
from qgis.core import QgsProcessingException

from geedl_plugin.toolbelt.settings import PluginSettings

pytest.importorskip("ee")

EXTENT = "12.55,12.65,52.47,52.51 [EPSG:4326]"  # Havel lakes near Potsdam


@pytest.fixture
def runner_settings(monkeypatch):
    """The runner is this interpreter (the user's stored settings are not touched)."""
    settings = PluginSettings(runner_python=sys.executable, ee_project="geedl-settings-project")
    monkeypatch.setattr(PluginSettings, "load", classmethod(lambda cls: settings))
    return settings


def test_dry_run_returns_the_request(geedl_provider, runner_settings, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "ee.tif"
    result = processing.run("geedl:eecomposite", {
        "REGION_EXTENT": EXTENT, "START": "2024-06-01", "END": "2024-07-01", "COLLECTION": "S2_SR",
        "BANDS": "B3,B8,B11", "INDICES": "NDVI,MNDWI", "REDUCER": "median", "DRY_RUN": True,
        "OUTPUT": str(out)})
    answer = json.loads(result["RESULT"])
    assert answer["dry_run"] is True
    assert answer["bands"] == ["B3", "B8", "B11", "NDVI", "MNDWI"]
    assert answer["recipe"]["reducer"] == "median"
    assert "EPSG:326" in json.dumps(answer["grid"])  # a UTM grid for a lon/lat region
    graph = json.dumps(answer["scene_query"]) + json.dumps(answer["expression"])
    assert "COPERNICUS/S2_SR_HARMONIZED" in graph
    assert "normalizedDifference" in graph or "Image.normalizedDifference" in graph
    assert result["OUTPUT"] is None and not out.exists()


def test_bad_dates_are_a_clear_error(geedl_provider, runner_settings, tmp_path):  # noqa: F811
    import processing

    with pytest.raises(QgsProcessingException, match="2024-13-01"):
        processing.run("geedl:eecomposite", {
            "REGION_EXTENT": EXTENT, "START": "2024-13-01", "END": "2024-07-01", "DRY_RUN": True,
            "OUTPUT": str(tmp_path / "x.tif")})


def test_missing_region_is_a_clear_error(geedl_provider, runner_settings, tmp_path):  # noqa: F811
    import processing

    with pytest.raises(QgsProcessingException, match="area"):
        processing.run("geedl:eecomposite", {"DRY_RUN": True, "OUTPUT": str(tmp_path / "x.tif")})


def test_preview_adds_an_xyz_layer_that_keeps_its_expression(geedl_provider, runner_settings):  # noqa: F811
    """eepreview: scene summary and map id at the REST boundary (offline harness), an XYZ layer
    loaded on completion, and the serialized graph under the dock's key (fresh tokens on reopen)."""
    from unittest import mock

    import processing
    from ee import apitestcase
    from qgis.core import QgsProcessingContext, QgsProject, QgsRasterLayer

    from geedl_plugin.gui import layers

    ee_harness = pytest.importorskip("ee_harness")
    resource = mock.MagicMock()
    projects = resource.projects.return_value
    projects.value.return_value.compute.return_value.execute.return_value = {"result": {
        "count": 2, "ids": ["20240605T100000_a", "20240615T100000_b"],
        "times": [1717581600000, 1718445600000], "cloud": [0.3, 0.8]}}
    projects.maps.return_value.create.return_value.execute.return_value = {
        "name": "projects/geedl-test/maps/preview-map"}
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    with ee_harness.offline_ee(), ee_harness.no_network(), \
            apitestcase.UsingCloudApi(cloud_api_resource=resource):
        result = processing.run("geedl:eepreview", {
            "REGION_EXTENT": EXTENT, "START": "2024-06-01", "END": "2024-07-01", "COLLECTION": "S2"},
            context=context)

    layer = result["OUTPUT"]
    if not isinstance(layer, QgsRasterLayer):  # processing.run hands back the layer it took over
        layer = context.getMapLayer(layer)
    assert layer.providerType() == "wms" and "type=xyz" in layer.source()
    assert "projects/geedl-test/maps/preview-map/tiles/{z}/{x}/{y}" in layer.source()
    assert result["URI"] == layer.source()
    assert layer.id() in context.layersToLoadOnCompletion()
    stored = layer.customProperty(layers.EE_OBJECT_PROPERTY)
    assert ee_harness.Graph(json.loads(stored)["expression"]).find("Collection.filter")
    summary = json.loads(result["SUMMARY"])
    assert summary["count"] == 2 and len(summary["dates"]) == 2
    body = projects.maps.return_value.create.call_args.kwargs["body"]
    assert ee_harness.Graph(body["expression"]).one("Image.visualize").arg("bands") == ["B11", "B8", "B3"]
