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
