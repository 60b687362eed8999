"""``make demo`` end to end: the reduced demo (``--quick``: small region, one short epoch) runs in a
subprocess as a user runs it, and what it wrote is checked the way a user would open it: the
QGIS project read by QGIS (every layer valid and styled, relative paths so the folder can be
moved), the label files read by OGR, the report's images present."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from osgeo import gdal, ogr

from geedl_plugin.core.model_metadata import read_metadata

ROOT = Path(__file__).resolve().parent.parent

# the layers the demo project must hold, by role, with the renderer QGIS must restore for each
EXPECTED_RENDERERS = {
    "composite": "multibandcolor",
    "region": "singleSymbol",
    "mask": "paletted",
    "labels": "categorizedSymbol",
    "water_corrected": "paletted",
    "water_changes": "paletted",
    "reference_train": "categorizedSymbol",
    "reference_holdout": "categorizedSymbol",
    "prediction": "paletted",
    "errors": "paletted",
}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    completed = subprocess.run(
        [sys.executable, "-m", "geedl_plugin", "demo", "--quick", "--out", str(out), "--progress", "jsonl"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "2"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    result = [line for line in lines if line.get("type") == "result"]
    assert result, completed.stdout[-2000:]
    return out, result[-1]


def test_quick_demo_writes_every_output(quick_demo):
    out, result = quick_demo
    for key in ("composite", "region", "preview", "mask", "labels_gpkg", "labels_shp", "water_corrected",
                "osm_train", "osm_holdout", "model", "prediction", "evaluation", "error_map", "project",
                "report", "summary"):
        assert Path(result[key]).exists(), f"{key}: {result[key]} missing"
        assert Path(result[key]).resolve().parent == out.resolve(), key
    summary = json.loads((out / "demo-summary.json").read_text())
    figures = summary["figures"]
    assert figures["total"]["quick"] is True
    # area statistics: polygons kept are >= 3000 m2 and the per-class counts add up
    stats = figures["area_stats"]
    assert stats["kept"]["count"] > 0 and stats["kept"]["min"] >= 3000
    assert sum(c["count"] for c in stats["per_class"].values()) == stats["kept"]["count"]
    # held-out evaluation: per-class scores of the four classes on pixels the model never saw
    evaluation = figures["evaluation"]
    assert set(evaluation["per_class"]) == {"water", "farm", "forest", "other"}
    assert 0.0 <= evaluation["summary"]["overall_accuracy"] <= 1.0
    assert sum(map(sum, evaluation["confusion"]["matrix"])) > 1000
    assert [t["step"] for t in summary["timings"]][:2] == ["composite", "preview"]
    # the water threshold is tuned on the training part and travels in the model
    tuned = read_metadata(result["model"]).class_thresholds
    decision = figures["training"]["class_decision"]
    assert (decision == "highest probability") if not tuned else decision.startswith("calls water where")
    assert set(tuned) <= {"water"}


def test_label_files_open_with_ogr(quick_demo):
    out, result = quick_demo
    counts = []
    for name in ("labels_gpkg", "labels_shp"):
        dataset = ogr.Open(result[name])
        layer = dataset.GetLayer(0)
        defn = layer.GetLayerDefn()
        fields = {defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())}
        assert {"class_id", "class_name", "source", "area_m2"} <= fields
        srs = layer.GetSpatialRef()
        srs.AutoIdentifyEPSG()
        assert srs.GetAuthorityCode(None) == "32633"
        areas = [f.GetGeometryRef().GetArea() for f in layer]
        assert areas and min(areas) >= 3000 * 0.999
        counts.append(len(areas))
    assert counts[0] == counts[1] == int(result["polygons"])
    assert (out / "auto_labels.prj").exists()
    prediction = gdal.Open(result["prediction"])
    composite = gdal.Open(result["composite"])
    assert (prediction.RasterXSize, prediction.RasterYSize) == (composite.RasterXSize, composite.RasterYSize)


def _check_project(path: Path) -> dict[str, str]:
    from qgis.core import QgsProject

    project = QgsProject()
    assert project.read(str(path)), project.error()
    found = {}
    for layer in project.mapLayers().values():
        assert layer.isValid(), f"{layer.name()}: {layer.source()}"
        found[layer.customProperty("geedl/role")] = layer.renderer().type()
    groups = project.layerTreeRoot().findGroups()
    assert len(groups) == 1 and groups[0].name().startswith("geedl ")
    assert len(groups[0].findLayers()) == len(found)
    return found


def test_project_loads_styled_and_survives_a_move(quick_demo, qgis_app, tmp_path):
    out, result = quick_demo
    project = Path(result["project"])
    assert project.name == "geedl-demo.qgz"
    assert _check_project(project) == EXPECTED_RENDERERS
    with zipfile.ZipFile(project) as archive:
        text = archive.read(next(n for n in archive.namelist() if n.endswith(".qgs"))).decode("utf-8")
    sources = [s for s in re.findall(r"<datasource>([^<]*)</datasource>", text) if s]  # "": annotations
    assert len(sources) == len(EXPECTED_RENDERERS) and all(s.startswith("./") for s in sources), sources
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    assert _check_project(moved / project.name) == EXPECTED_RENDERERS


def test_project_gives_the_dock_its_state_after_a_move(quick_demo, qgis_app, tmp_path):
    """Opening the demo project sets the dock up as if the analyst had clicked through the demo:
    region, composite, mask, training labels, model and prediction are known, inside the moved
    folder."""
    from qgis.core import QgsProject

    from geedl_plugin.gui import layers
    from geedl_plugin.gui.context import COMPOSITE, LABELS, MASK, MODEL, PREDICTION, REGION, DockContext

    out, result = quick_demo
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    project = QgsProject()
    assert project.read(str(moved / Path(result["project"]).name)), project.error()
    stored = layers.load_state(project)
    assert stored["artifacts"][MODEL]["path"] == "./model.onnx"  # relative, like the layers
    context = DockContext(None, project)
    context.restore(stored)
    for key in (REGION, COMPOSITE, MASK, LABELS, MODEL, PREDICTION):
        assert context.has(key), key
        assert Path(context.artifact(key)["path"]).parent == moved.resolve(), context.artifact(key)
    assert context.artifact(COMPOSITE)["bands"][:2] == ["B2", "B3"]
    assert context.artifact(LABELS)["field"] == "class_id" and "water" in context.artifact(LABELS)["classes"]
    assert Path(context.artifact(MODEL)["metrics_json"]).is_file()
    # the quick demo's 3.2 x 2 km box, small enough to download
    region = context.artifact(REGION)
    assert region["km2"] == pytest.approx(6.4, rel=1e-3) and region["advice"]["mode"] == "download"
    assert Path(context.run.folder) == moved.resolve()


def test_report_embeds_qgis_renders(quick_demo):
    out, _result = quick_demo
    report = (out / "report.html").read_text(encoding="utf-8")
    images = re.findall(r"<img src='([^']+)'", report)
    assert len(images) >= 6
    for src in images:
        assert not Path(src).is_absolute()
        image = gdal.Open(str(out / src))
        assert image is not None and image.RasterXSize > 100
    for heading in ("area statistics", "Training", "class decision", "Held-out evaluation",
                    "Confusion matrix"):
        assert heading in report
    # a QGIS render is not blank: the composite render has many distinct colours
    render = gdal.Open(str(out / "renders" / "render_composite.png")).ReadAsArray()
    colours = {tuple(pixel) for pixel in render[:3].reshape(3, -1).T.tolist()}
    assert len(colours) > 100
