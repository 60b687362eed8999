"""Source step: fetch a composite from the real sample scene, in a task, styled false colour."""

from __future__ import annotations

from pathlib import Path

from fixtures_gui import dock_fixture, draw_region, fetch_sample, gui_settings_fixture  # noqa: F401
from qgis.core import QgsMultiBandColorRenderer, QgsProject

from geedl_plugin.core.raster_io import band_descriptions, open_raster
from geedl_plugin.gui.context import COMPOSITE
from geedl_plugin.gui.step_source import SourceStep


def test_fetch_sample_composite(dock, qtbot, qgis_canvas):
    draw_region(dock, qtbot, qgis_canvas)
    source = fetch_sample(dock, qtbot)
    composite = dock.ctx.artifact(COMPOSITE)
    assert composite, source.status.text()
    path = Path(composite["path"])
    assert path.is_file() and path.parent == Path(dock.ctx.run.folder)
    names = band_descriptions(open_raster(path))
    assert names == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "HUE"]
    group = QgsProject.instance().layerTreeRoot().findGroup(dock.ctx.run.name)
    layers = {node.layer().name(): node.layer() for node in group.findLayers()}
    assert set(layers) == {"region", "composite"}
    renderer = layers["composite"].renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)
    assert [renderer.redBand(), renderer.greenBand(), renderer.blueBand()] == [5, 4, 2]  # B11/B8/B3
    low = renderer.redContrastEnhancement().minimumValue()
    high = renderer.redContrastEnhancement().maximumValue()
    assert 0 < low < high < 10000, "a percentile stretch of reflectance x 10000"
    assert source.fetch.bar.value() == 100
    assert dock.toolbox.isItemEnabled(2), "Labels is enabled once the composite exists"


def test_earth_engine_form_drives_the_cli(dock, qtbot, qgis_canvas, tmp_path):
    """The Earth Engine download and export run the CLI (composite --source gee) in the runner:
    its --dry-run, built offline, must describe exactly what the form says."""
    from qgis.PyQt.QtCore import QDate

    from geedl_plugin.gui.tasks import RunnerTask, TaskRunner

    draw_region(dock, qtbot, qgis_canvas)
    source = dock.step(SourceStep)
    source.ee_radio.setChecked(True)
    source.collection.setCurrentIndex(source.collection.findData("S2_SR"))
    source.start_date.setDate(QDate(2023, 6, 1))
    source.end_date.setDate(QDate(2023, 7, 1))
    source.max_cloud.setValue(5)
    source.cloud_mask.setCurrentIndex(source.cloud_mask.findData("scl"))
    source.reducer.setCurrentIndex(source.reducer.findData("median"))
    source.custom_index.setText("WET=max(B3, B8) - B11")
    args = source.gee_arguments(source.recipe(), source.ee_request()) + [
        "--dry-run", "--out", str(tmp_path / "gee.tif")]
    task = RunnerTask("geedl test: gee dry run", "composite", args)
    results: list = []
    task.succeeded.connect(results.append)
    task.failed.connect(lambda message, details: results.append(message))
    runner = TaskRunner()
    runner.start(task)
    qtbot.waitUntil(lambda: bool(results), timeout=120000)
    payload = results[0]
    assert isinstance(payload, dict), payload
    query = payload["query"]
    assert query["collection"] == "S2_SR"
    assert (query["start"], query["end_exclusive"]) == ("2023-06-01", "2023-07-01")
    assert query["max_cloud"] == 5 and query["cloud_mask"] == "scl"
    assert payload["recipe"]["reducer"] == "median"
    assert payload["bands"] == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "HUE", "WET"]
    assert payload["decision"]["mode"] == "download"
