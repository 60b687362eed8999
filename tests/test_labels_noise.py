"""Label-noise correction (document 001) scored against OpenStreetMap water on the real scene."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_labels import (  # noqa: F401
    brandenburg_composite,
    iou,
    labels_dir,
    osm_classes,
    osm_gpkg,
    read_mask,
    window_composite,
)
from osgeo import gdal

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.labels.legend import IGNORE, read_legend
from geedl_plugin.core.labels.noise import DenoiseParams, choose_features, run_denoise
from geedl_plugin.core.labels.rules import AutolabelParams, run_autolabel


@pytest.fixture(scope="module")
def noisy_water(brandenburg_composite, labels_dir):  # noqa: F811
    """McFeeters' water rule (NDWI > 0) on the whole scene: the noisy labels to correct."""
    return run_autolabel(
        AutolabelParams(brandenburg_composite, labels_dir / "noisy_water.tif", "water", {"method": "ndwi"})
    ).path


@pytest.mark.slow
def test_correction_raises_water_iou_against_osm(brandenburg_composite, noisy_water, osm_classes, tmp_path):  # noqa: F811
    """IoU of water vs the other OSM classes, on OSM-labelled pixels, before and after correction.
    Both learners are measured; the lighter one is the default because it scores at least as well."""
    osm, ids = osm_classes
    labelled = osm != IGNORE
    truth = osm == ids["water"]
    before = iou(read_mask(noisy_water) == 1, truth, labelled)
    scores = {}
    for method in ("mlp", "cnn"):
        result = run_denoise(
            DenoiseParams(brandenburg_composite, noisy_water, tmp_path / f"{method}.tif", method=method)
        )
        scores[method] = iou(read_mask(result.path) == 1, truth, labelled)
        print(
            f"\nwater IoU vs OSM: before {before:.3f}, after {method} {scores[method]:.3f} "
            f"({result.changed} px relabelled {result.transitions}, {result.seconds:.1f} s)"
        )
    assert scores["mlp"] > before + 0.02  # the default correction raises IoU, clearly
    # document 001's pixel CNN (measured +0.004 to +0.02 over seeds here) does not beat the lighter
    # learner, which is why the lighter one is the default
    assert scores["mlp"] >= scores["cnn"]


def test_outputs_change_map_and_second_view(brandenburg_composite, noisy_water, tmp_path):  # noqa: F811
    result = run_denoise(
        DenoiseParams(
            brandenburg_composite, noisy_water, tmp_path / "fixed.tif", samples_per_class=500, epochs=3
        )
    )
    assert result.features == ["B2", "B4", "B11", "B12"]  # the rule read B3, B8 (NDWI); NDVI, HUE use them
    noisy, fixed = read_mask(noisy_water), read_mask(result.path)
    changes = gdal.Open(str(result.changes_path))
    changed = changes.GetRasterBand(1).ReadAsArray()
    assert np.array_equal(changed == 1, noisy != fixed) and result.changed == int((noisy != fixed).sum()) > 0
    assert sum(result.transitions.values()) == result.changed
    confidence = changes.GetRasterBand(2).ReadAsArray()
    assert confidence[changed == 1].min() > 60  # relabelled only where the model was > 0.6 sure
    dataset = gdal.Open(str(result.path))
    assert read_legend(dataset).names == {0: "other", 1: "water"}
    assert dataset.GetGeoTransform() == gdal.Open(str(noisy_water)).GetGeoTransform()
    assert result.counts_after[1] == int((fixed == 1).sum())


def test_feature_choice():
    available = ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "HUE", "MNDWI"]
    chosen, warnings = choose_features(available, {"MNDWI", "B3", "B11"}, None, True)
    assert chosen == ["B2", "B4", "B8", "B12", "NDVI"] and not warnings
    everything, warnings = choose_features(["B3", "B11", "MNDWI"], {"MNDWI", "B3", "B11"}, None, True)
    assert everything == ["B3", "B11", "MNDWI"] and "smooth" in warnings[0]
    with pytest.raises(GeedlError, match="B99"):
        choose_features(available, set(), ["B2", "B99"], True)


def test_bad_inputs(window_composite, brandenburg_composite, noisy_water, tmp_path):  # noqa: F811
    with pytest.raises(GeedlError, match="not on the grid"):
        run_denoise(DenoiseParams(window_composite, noisy_water, tmp_path / "x.tif"))
    nothing = run_autolabel(AutolabelParams(window_composite, tmp_path / "none.tif", "NDVI > 5")).path
    with pytest.raises(GeedlError, match="only one"):
        run_denoise(DenoiseParams(window_composite, nothing, tmp_path / "y.tif"))
    with pytest.raises(GeedlError, match="confidence"):
        run_denoise(DenoiseParams(brandenburg_composite, noisy_water, tmp_path / "z.tif", confidence=0.3))
    with pytest.raises(GeedlError, match="overwrite an input"):
        run_denoise(DenoiseParams(brandenburg_composite, noisy_water, noisy_water))
    assert {p.name for p in tmp_path.iterdir()} <= {"none.tif", "none.tif.aux.xml"}  # only the input mask
