"""``python -m geedl_plugin train`` as the QGIS background task runs it: a subprocess printing
JSON lines, stopped with SIGTERM after an epoch, then resumed from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_training import build_brandenburg_image, rasterize_osm

from geedl_plugin.core.model_metadata import read_metadata
from geedl_plugin.core.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # trains small models on real data


def _command(image: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "geedl_plugin",
        "train",
        "--model",
        "pixelcnn",
        "--image",
        str(image),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--samples-per-epoch",
        "1024",
        "--batch-size",
        "128",
        "--block-size",
        "64",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--progress",
        "jsonl",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    image = build_brandenburg_image(folder / "composite.tif", bands=["B2", "B3", "B4", "B8", "B11", "B12"])
    labels, _ = rasterize_osm(image, folder / "labels.tif")
    return image, labels


def test_sigterm_stops_cleanly_and_resume_finishes(inputs, tmp_path):
    image, labels = inputs
    out = tmp_path / "model.onnx"
    process = subprocess.Popen(
        _command(image, labels, out),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    records = []
    try:
        for line in process.stdout:
            record = json.loads(line)
            records.append(record)
            if record.get("phase") == "epoch_end":
                process.send_signal(signal.SIGTERM)
                break
        rest, errors = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    records += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert process.returncode == 3, errors
    assert records[-1]["type"] == "cancelled"
    steps = [r for r in records if r.get("phase") == "train"]
    assert steps and all(
        {"epoch", "epochs", "step", "steps", "loss", "percent", "eta_s"} <= set(r) for r in steps
    )
    end = next(r for r in records if r.get("phase") == "epoch_end")
    assert end["epoch"] == 1 and {"mean_iou", "iou", "f1", "overall_accuracy"} <= set(end["val"])
    assert not out.exists()
    checkpoint = out.with_suffix(".ckpt")
    stopped_at = load_checkpoint(checkpoint)["epoch"]
    assert stopped_at >= 1

    finished = subprocess.run(
        _command(image, labels, out, "--resume", str(checkpoint)),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
    result = lines[-1]
    assert result["type"] == "result"
    assert result["epochs_run"] == 3
    for key in ("model", "checkpoint", "metrics_json", "comparison_png"):
        assert Path(result[key]).is_file()
    assert set(result["metrics"]["iou"]) == {"water", "farm", "forest", "other"}
    ends = [r for r in lines if r.get("phase") == "epoch_end"]
    replayed = [r["epoch"] for r in ends if r.get("replayed")]
    epochs = [r["epoch"] for r in ends if not r.get("replayed")]
    assert epochs and epochs[0] == stopped_at + 1  # continued, did not start over
    # the epochs before the resume come first, marked, so a plot of the run starts at epoch 1
    assert replayed == list(range(1, stopped_at + 1)) and ends[0].get("replayed")
    meta = read_metadata(out)
    assert meta.architecture == "pixelcnn" and meta.bands == ["B2", "B3", "B4", "B8", "B11", "B12"]


def test_bad_input_is_one_clear_json_error(inputs, tmp_path):
    image, labels = inputs
    # labels in another CRS: refused before torch does any work
    from osgeo import gdal

    other = tmp_path / "utm32.tif"
    gdal.Warp(str(other), str(labels), dstSRS="EPSG:32632", resampleAlg="near").FlushCache()
    done = subprocess.run(
        _command(image, other, tmp_path / "m.onnx"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert (
        last["type"] == "error" and "EPSG:32632" in last["message"] and "Warp the labels" in last["message"]
    )
