"""The class decision rule shared by training, the prediction writer and the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from geedl_plugin.core.class_decision import (
    argmax_first,
    decide,
    threshold_vector,
    tune_threshold,
)
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.model_metadata import ModelMetadata, default_classes


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def test_without_thresholds_it_is_the_argmax():
    probs = _softmax(np.random.default_rng(0).normal(size=(4, 30, 20)))
    assert np.array_equal(decide(probs), np.argmax(probs, axis=0))
    assert np.array_equal(decide(probs, [None] * 4), np.argmax(probs, axis=0))
    assert np.array_equal(argmax_first(np.zeros((3, 2, 2))), np.zeros((2, 2)))  # first on ties


def test_a_threshold_only_adds_pixels_to_its_class():
    probs = _softmax(np.random.default_rng(1).normal(size=(4, 50, 50)))
    plain = np.argmax(probs, axis=0)
    tuned = decide(probs, [0.3, None, None, None])
    assert np.array_equal(tuned == 0, (plain == 0) | (probs[0] >= 0.3))
    changed = tuned != plain
    assert changed.any() and (tuned[changed] == 0).all()


def test_two_thresholded_classes_go_to_the_one_furthest_above_its_threshold():
    probs = np.array([[0.40, 0.30], [0.33, 0.45], [0.27, 0.25]], dtype=np.float32)[:, None, :]
    # pixel 0: class 0 is 0.10 above 0.30, class 1 0.08 above 0.25 -> class 0
    # pixel 1: class 0 is 0.00 above, class 1 0.20 above -> class 1
    assert decide(probs, [0.30, 0.25, None]).tolist() == [[0, 1]]
    # class 2 at 0.2 is 0.07 and 0.05 above; class 0 at 0.15 is 0.25 and 0.15 above
    assert decide(probs, [0.15, None, 0.2]).tolist() == [[0, 0]]
    # class 2 alone at 0.26: only pixel 0 reaches it, and pixel 1 keeps its arg-max
    assert decide(probs, [None, None, 0.26]).tolist() == [[2, 1]]


def test_tuning_finds_the_threshold_that_recovers_an_under_called_class():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, 20000)
    logits = rng.normal(size=(3, truth.size)) * 0.8
    logits[truth, np.arange(truth.size)] += 1.5
    logits[0] -= 1.0  # the model is shy of class 0, as the U-Net is of OSM water
    probs = _softmax(logits)
    choice = tune_threshold(probs, truth, 0, "water")
    assert choice.threshold is not None and 0.15 <= choice.threshold < 0.5
    assert choice.iou > choice.argmax_iou + 0.02
    assert "water called where its probability reaches" in choice.message()
    # a confident, unbiased model: no threshold beats arg-max, so none is kept
    clean = _softmax(np.eye(3)[truth].T * 8.0)
    kept = tune_threshold(clean, truth, 0, "water")
    assert kept.threshold is None and kept.iou == kept.argmax_iou == 1.0
    assert "keeps arg-max" in kept.message()


def test_metadata_carries_thresholds_by_class_name():
    classes = default_classes(["water", "farm"])
    meta = ModelMetadata(
        "segmentation", "unet", ["B2"], [0.0], [1.0], classes, class_thresholds={"water": 0.35}
    )
    again = ModelMetadata.from_props(meta.to_props())
    assert again.class_thresholds == {"water": 0.35}
    assert threshold_vector(again.class_names, again.class_thresholds) == [0.35, None]
    older = {k: v for k, v in meta.to_props().items() if k != "class_thresholds"}  # a model from before
    assert ModelMetadata.from_props(older).class_thresholds == {}
    with pytest.raises(GeedlError, match="lake, which is not one of its classes"):
        ModelMetadata("segmentation", "unet", ["B2"], [0.0], [1.0], classes, class_thresholds={"lake": 0.3})
    with pytest.raises(GeedlError, match="between 0 and 1"):
        ModelMetadata("segmentation", "unet", ["B2"], [0.0], [1.0], classes, class_thresholds={"water": 1.5})
