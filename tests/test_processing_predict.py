"""The "Run model" algorithm: gathers parameters and gives exactly what core.run_predict gives."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_inference import (
    BANDS,
    band_stats,
    classification_metadata,
    export_onnx,
    make_composite,
    tiny_fcn,
)
from fixtures_processing import geedl_provider  # noqa: F401 - fixture
from osgeo import gdal
from qgis.core import QgsProcessingException

from geedl_plugin.core.inference import PredictParams, run_predict

gdal.UseExceptions()


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    image = make_composite(folder / "composite.tif", width=160, height=128)
    mean, std = band_stats(image, BANDS)
    model = export_onnx(tiny_fcn(len(BANDS), 3), folder / "model.onnx",
                        classification_metadata(BANDS, mean, std), len(BANDS))
    return model, image


def _pixels(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_run_model_equals_core(geedl_provider, model_and_image, tmp_path):  # noqa: F811
    import processing

    model, image = model_and_image
    out, probs = tmp_path / "pred.tif", tmp_path / "probs.tif"
    result = processing.run("geedl:runmodel", {"MODEL": str(model), "IMAGE": str(image), "OUTPUT": str(out),
                                               "PROBABILITIES": str(probs), "TILE": 64, "OVERLAP": 16,
                                               "DEVICE": "cpu"})
    assert result["OUTPUT"] == str(out) and result["PROBABILITIES"] == str(probs)
    core = run_predict(PredictParams(model=model, image=image, out=tmp_path / "core.tif",
                                     probabilities=tmp_path / "core_probs.tif", tile=64, overlap=16,
                                     device="cpu"))
    np.testing.assert_array_equal(_pixels(out), _pixels(core.out))
    np.testing.assert_array_equal(_pixels(probs), _pixels(core.probabilities))
    classes = _pixels(out)
    assert classes.shape == (128, 160) and set(np.unique(classes)) <= {0, 1, 2, 255}
    dataset = gdal.Open(str(out))  # keep the dataset alive while its band is used
    table = dataset.GetRasterBand(1).GetColorTable()
    assert table is not None and table.GetCount() >= 3


def test_run_model_region_extent_and_no_probabilities(geedl_provider, model_and_image, tmp_path):  # noqa: F811
    import processing

    model, image = model_and_image
    x0, dx, _, y0, _, dy = gdal.Open(str(image)).GetGeoTransform()
    extent = f"{x0},{x0 + 80 * dx},{y0 + 64 * dy},{y0} [EPSG:32618]"
    out = tmp_path / "part.tif"
    result = processing.run("geedl:runmodel", {"MODEL": str(model), "IMAGE": str(image), "OUTPUT": str(out),
                                               "REGION_EXTENT": extent, "DEVICE": "cpu"})
    assert result["PROBABILITIES"] is None
    assert all(p.name.startswith("part.tif") for p in tmp_path.iterdir()), "no probabilities file"
    classes = _pixels(out)
    assert (classes[:64, :80] != 255).all(), "inside the extent every pixel is classified"


def test_run_model_bad_model_is_clear(geedl_provider, model_and_image, tmp_path):  # noqa: F811
    import processing

    _, image = model_and_image
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(QgsProcessingException, match="(?i)onnx"):
        processing.run("geedl:runmodel", {"MODEL": str(broken), "IMAGE": str(image),
                                          "OUTPUT": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()


def test_prediction_to_polygons_with_confidence(geedl_provider, model_and_image, tmp_path):  # noqa: F811
    import json

    import processing
    from qgis.core import QgsVectorLayer

    from geedl_plugin.core.inference.vectorize import VectorizeParams, vectorize_prediction

    model, image = model_and_image
    pred, probs = tmp_path / "pred.tif", tmp_path / "probs.tif"
    run_predict(PredictParams(model=model, image=image, out=pred, probabilities=probs, device="cpu"))
    out = tmp_path / "model_labels.gpkg"
    result = processing.run("geedl:vectorizeprediction", {
        "PREDICTION": str(pred), "PROBABILITIES": str(probs), "OUTPUT": str(out)})
    core = vectorize_prediction(VectorizeParams(prediction=pred, out_vector=tmp_path / "core.gpkg",
                                                probabilities=probs))
    summary = json.loads(result["SUMMARY"])
    assert result["FEATURES"] == core.features > 0
    assert summary["mean_confidence"] == core.summary()["mean_confidence"]
    layer = QgsVectorLayer(str(out), "labels", "ogr")
    assert layer.isValid() and layer.featureCount() == core.features
    sources = {f["source"] for f in layer.getFeatures()}
    confidences = [f["confidence"] for f in layer.getFeatures()]
    assert sources == {"model"} and all(0.0 <= c <= 1.0 for c in confidences)
