"""Rule masks on the real Brandenburg composite: values, legend, errors, Earth Engine expressions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fixtures_labels import (  # noqa: F401
    brandenburg_composite,
    crop_raster,
    labels_dir,
    osm_classes,
    osm_gpkg,
    read_bands,
    read_mask,
    window_composite,
)
from osgeo import gdal

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.expression import parse
from geedl_plugin.core.labels.legend import IGNORE, read_legend
from geedl_plugin.core.labels.rules import (
    QA_CLOUD,
    QA_FILL,
    QA_SHADOW,
    QA_SNOW,
    QA_WATER,
    SCL_IGNORE,
    AutolabelParams,
    CropRule,
    ExpressionRule,
    RuleSet,
    WaterRule,
    crop_soil_rules,
    read_rules,
    rule_from_spec,
    run_autolabel,
)


def _ndvi_hue(b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        ndvi = (b["B8"] - b["B4"]) / (b["B8"] + b["B4"])
        hue = np.arctan(2 * (b["B2"] - b["B3"] - b["B4"]) / (30.5 * (b["B3"] - b["B4"])))
    return ndvi, hue


def test_crop_rule_matches_document_000_formula(window_composite, tmp_path):  # noqa: F811
    result = run_autolabel(AutolabelParams(window_composite, tmp_path / "crop.tif", "crop"))
    mask = read_mask(result.path)
    ndvi, hue = _ndvi_hue(read_bands(window_composite))
    expected = np.where((hue < 0) & (ndvi > 0), 1, 0)
    assert mask.dtype == np.uint8
    # the composite's own NDVI/HUE bands are float32: allow the few pixels on the threshold itself
    assert (mask != expected).mean() < 1e-4
    assert result.class_counts[1] == int((mask == 1).sum()) > 0
    dataset = gdal.Open(str(result.path))
    band = dataset.GetRasterBand(1)
    assert band.GetNoDataValue() == IGNORE
    assert band.GetCategoryNames()[1] == "crop" and band.GetCategoryNames()[IGNORE] == "ignore"
    assert band.GetColorTable().GetColorEntry(1)[3] == 255
    legend = read_legend(dataset)
    assert legend.names == {0: "other", 1: "crop"} and legend.background == 0
    assert read_rules(dataset).classes[0].rule == CropRule(0.0, 0.0)
    assert dataset.GetGeoTransform() == gdal.Open(str(window_composite)).GetGeoTransform()


def test_thresholds_change_the_mask_and_the_expression(window_composite, tmp_path):  # noqa: F811
    loose = run_autolabel(AutolabelParams(window_composite, tmp_path / "a.tif", "crop"))
    strict = run_autolabel(
        AutolabelParams(window_composite, tmp_path / "b.tif", "crop", {"threshold": 0.3, "hue": -0.2})
    )
    assert strict.rules.classes[0].rule.to_expression() == "HUE < -0.2 && NDVI > 0.3"
    assert 0 < strict.class_counts[1] < loose.class_counts[1]
    assert np.all(read_mask(strict.path)[read_mask(loose.path) == 0] == 0)  # strict is a subset


def test_indices_are_computed_when_the_composite_lacks_them(brandenburg_composite, labels_dir, tmp_path):  # noqa: F811
    bands_only = crop_raster(brandenburg_composite, tmp_path / "bands.tif", bands=[1, 2, 3, 4, 5, 6])
    with_index = run_autolabel(
        AutolabelParams(crop_raster(brandenburg_composite, tmp_path / "w.tif"), tmp_path / "m1.tif", "crop")
    )
    computed = run_autolabel(AutolabelParams(bands_only, tmp_path / "m2.tif", "crop"))
    a, b = read_mask(with_index.path), read_mask(computed.path)
    assert (a != b).mean() < 1e-4
    water = run_autolabel(AutolabelParams(bands_only, tmp_path / "water.tif", "water"))
    assert water.rules.classes[0].rule.method == "mndwi"  # auto: B3 and B11 present, no SCL/QA band
    b_ = read_bands(bands_only)
    with np.errstate(all="ignore"):
        mndwi = (b_["B3"] - b_["B11"]) / (b_["B3"] + b_["B11"])
    assert (read_mask(water.path) == (mndwi > 0)).mean() > 0.9999


def test_multi_class_rule_set_and_its_earth_engine_expression(window_composite, tmp_path):  # noqa: F811
    rules = crop_soil_rules()
    result = run_autolabel(AutolabelParams(window_composite, tmp_path / "cs.tif", rules))
    mask = read_mask(result.path)
    assert set(np.unique(mask)) <= {0, 1, 2}
    assert result.legend.names == {0: "other", 1: "crop", 2: "soil"}
    # the same rule set as one Earth Engine expression gives the same classes
    bands = read_bands(window_composite)
    via_expression = parse(rules.to_expression()).evaluate(bands)
    assert (via_expression.astype(np.uint8) == mask).mean() > 0.9999
    assert "? 1 :" in rules.to_expression() and "? 2 :" in rules.to_expression()


def test_rule_set_from_json_file(window_composite, tmp_path):  # noqa: F811
    spec = {
        "name": "veg+water",
        "background": {"id": 0, "name": "other"},
        "classes": [
            {"id": 1, "name": "water", "rule": {"kind": "water", "method": "ndwi", "threshold": 0.1}},
            {"id": 3, "name": "dense", "expression": "NDVI > 0.3 && B11 < 2000", "color": "#00ff00"},
        ],
    }
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(spec))
    result = run_autolabel(AutolabelParams(window_composite, tmp_path / "m.tif", str(path)))
    assert result.legend.names == {0: "other", 1: "water", 3: "dense"}
    assert result.legend.colors[3] == "#00ff00"
    assert result.class_counts[1] > 0 and result.class_counts[3] > 0
    round_trip = RuleSet.from_dict(result.rules.to_dict())
    assert round_trip.to_expression() == result.rules.to_expression()


def test_user_expression_rule(window_composite, tmp_path):  # noqa: F811
    result = run_autolabel(
        AutolabelParams(window_composite, tmp_path / "e.tif", "NDVI > 0.3 && B11 < 2000", {"name": "dense"})
    )
    b = read_bands(window_composite)
    expected = (b["NDVI"] > 0.3) & (b["B11"] < 2000)
    assert np.array_equal(read_mask(result.path) == 1, expected)
    assert result.rules.classes[0].rule == ExpressionRule("NDVI > 0.3 && B11 < 2000")


def test_missing_band_is_a_clear_error_and_nothing_is_overwritten(window_composite, tmp_path):  # noqa: F811
    out = tmp_path / "mask.tif"
    out.write_bytes(b"the user's previous file")
    with pytest.raises(GeedlError) as error:
        run_autolabel(AutolabelParams(window_composite, out, "NDVI > 0.3 && SCL == 4"))
    assert "SCL" in str(error.value) and "B11" in str(error.value)  # names what is missing and what exists
    assert out.read_bytes() == b"the user's previous file"
    assert sorted(os.listdir(tmp_path)) == ["mask.tif"]  # no partial file left behind
    with pytest.raises(GeedlError, match="QA_PIXEL"):
        run_autolabel(AutolabelParams(window_composite, tmp_path / "qa.tif", "water", {"method": "qa_pixel"}))
    with pytest.raises(GeedlError, match="no parameter"):
        rule_from_spec("crop", bogus=1)
    with pytest.raises(GeedlError, match="Expression"):
        rule_from_spec("NDVI >> 2")


def test_a_rule_that_matches_nothing_warns_instead_of_failing(window_composite, tmp_path):  # noqa: F811
    result = run_autolabel(AutolabelParams(window_composite, tmp_path / "none.tif", "NDVI > 5"))
    assert result.class_counts[1] == 0 and result.warnings
    assert "No pixel matched" in result.warnings[0]


def test_landsat_qa_pixel_water_bits():
    """Collection 2 QA_PIXEL: bit 7 water; fill 0, cloud 3, shadow 4, snow 5 -> ignore (documented layout)."""
    values = np.arange(0, 1 << 8, dtype=np.uint16)  # every combination of bits 0-7
    values = np.concatenate([values, values | (1 << 15)])  # high bits must not matter
    rule = WaterRule("qa_pixel")
    positive, ignore = rule.evaluate({"QA_PIXEL": values.astype(np.float32)})
    bit = lambda b: (values >> b) & 1 == 1  # noqa: E731
    expected_ignore = bit(QA_FILL) | bit(QA_CLOUD) | bit(QA_SHADOW) | bit(QA_SNOW)
    assert np.array_equal(ignore, expected_ignore)
    assert np.array_equal(positive, bit(QA_WATER) & ~expected_ignore)
    # the Earth Engine expressions the rule hands to the EE compiler say the same
    ee_positive = parse(rule.to_expression()).evaluate({"QA_PIXEL": values.astype(np.float32)}) != 0
    ee_ignore = parse(rule.ignore_expression()).evaluate({"QA_PIXEL": values.astype(np.float32)}) != 0
    assert np.array_equal(ee_ignore, expected_ignore)
    assert np.array_equal(ee_positive & ~ee_ignore, positive)
    # a typical clear-water value (bits 6 and 7) and a cloudy one (bits 1 and 3)
    clear_water, cloud = np.array([0b11000000], np.float32), np.array([0b00001010], np.float32)
    assert rule.evaluate({"QA_PIXEL": clear_water})[0][0]
    assert rule.evaluate({"QA_PIXEL": cloud})[1][0]
    dilated = WaterRule("qa_pixel", mask_dilated_cloud=True)
    assert dilated.evaluate({"QA_PIXEL": np.array([0b10000010], np.float32)})[1][0]


def test_sentinel2_scl_water_class():
    scl = np.arange(12, dtype=np.float32)
    positive, ignore = WaterRule("scl").evaluate({"SCL": scl})
    assert positive.tolist() == [v == 6 for v in range(12)]
    assert ignore.tolist() == [v in SCL_IGNORE for v in range(12)]
    assert WaterRule("auto").resolve(["B3", "B11", "SCL"]).method == "scl"
    assert WaterRule("auto").resolve(["QA_PIXEL", "B3", "B8"]).method == "qa_pixel"
    assert WaterRule("auto").resolve(["B3", "B8"]).method == "ndwi"


def test_ignored_and_nodata_pixels_are_255(window_composite, tmp_path):  # noqa: F811
    src = gdal.Open(str(window_composite))
    copy = gdal.GetDriverByName("GTiff").CreateCopy(str(tmp_path / "holes.tif"), src)
    band = copy.GetRasterBand(5)  # B11
    values = band.ReadAsArray()
    values[:10, :] = np.nan
    band.WriteArray(values)
    copy = None
    result = run_autolabel(AutolabelParams(tmp_path / "holes.tif", tmp_path / "w.tif", "water"))
    mask = read_mask(result.path)
    assert np.all(mask[:10] == IGNORE) and np.all(mask[10:] != IGNORE)
    assert result.ignored == 10 * mask.shape[1]


@pytest.mark.slow
def test_crop_rule_precision_and_recall_against_osm_farms(brandenburg_composite, osm_classes, tmp_path):  # noqa: F811
    """Document 000's crop rule scored on OSM farm polygons (labelled pixels only); the guide says it
    marks green vegetation in general (forest too), so precision is expected to be poor."""
    osm, ids = osm_classes
    result = run_autolabel(AutolabelParams(brandenburg_composite, tmp_path / "crop.tif", "crop"))
    crop = read_mask(result.path) == 1
    labelled = osm != IGNORE
    farm = osm == ids["farm"]
    tp = (crop & farm & labelled).sum()
    precision = tp / (crop & labelled).sum()
    recall = tp / farm.sum()
    forest_rate = crop[osm == ids["forest"]].mean()
    print(
        f"\ncrop rule vs OSM farm: precision {precision:.3f}, recall {recall:.3f}; fires on "
        f"{forest_rate:.1%} of OSM forest pixels"
    )
    farm_share = farm.sum() / labelled.sum()
    print(f"share of farm among OSM-labelled pixels (precision of a random mask): {farm_share:.3f}")
    assert 0.1 < precision < 0.9 and 0.3 < recall < 1.0  # computed on real overlap, neither 0 nor perfect
    # the guide's measured fact: it marks green vegetation, forest more often than farmland (winter scene)
    assert forest_rate > 0.5 and forest_rate > crop[farm].mean()
