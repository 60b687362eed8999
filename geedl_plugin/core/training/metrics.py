"""Per-class accuracy from a confusion matrix (document 002: IoU/Jaccard, precision, recall).

Rows of the confusion matrix are the labelled (true) class, columns the predicted class; pixels
labelled 255 are not counted. IoU = TP / (TP + FP + FN), precision = TP / (TP + FP), recall =
TP / (TP + FN), F1 = 2PR / (P + R). A class without labelled pixels in the validation area gets
``None`` for the scores that need them, and is left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..model_metadata import IGNORE_INDEX


def confusion_matrix(
    truth: np.ndarray, predicted: np.ndarray, n_classes: int, ignore: int = IGNORE_INDEX
) -> np.ndarray:
    truth = np.asarray(truth).ravel()
    predicted = np.asarray(predicted).ravel()
    keep = (truth != ignore) & (truth < n_classes) & (predicted < n_classes)
    index = truth[keep].astype(np.int64) * n_classes + predicted[keep].astype(np.int64)
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def label_edges(label: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label, unlabelled included: the 1 px band on either
    side of every label boundary. Polygons drawn by hand or taken from OpenStreetMap rarely follow a
    shore to the pixel (on the Brandenburg scene two thirds of the water a U-Net missed lay on the
    outermost pixel ring of an OSM polygon), so scores without this band tell whole-object errors
    from disagreement about where an edge runs; the ISPRS labelling benchmark reports both."""
    label = np.asarray(label)
    padded = np.pad(label, 1, mode="edge")
    rows, cols = label.shape
    edges = np.zeros(label.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edges |= padded[dy : dy + rows, dx : dx + cols] != label
    return edges


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def scores(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU, precision, recall, F1 and support; overall accuracy, mean IoU/F1, kappa."""
    matrix = np.asarray(matrix, dtype=np.int64)
    total = int(matrix.sum())
    per_class = {}
    ious, f1s = [], []
    for k, name in enumerate(class_names):
        tp = float(matrix[k, k])
        fp = float(matrix[:, k].sum() - tp)
        fn = float(matrix[k, :].sum() - tp)
        support = int(matrix[k, :].sum())
        iou = _ratio(tp, tp + fp + fn) if support else None
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else (0.0 if support else None)
        )
        per_class[name] = {"iou": iou, "precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            ious.append(iou or 0.0)
            f1s.append(f1 or 0.0)
    accuracy = _ratio(float(np.trace(matrix)), total)
    expected = float((matrix.sum(axis=0) * matrix.sum(axis=1)).sum()) / total**2 if total else 0.0
    kappa = (accuracy - expected) / (1 - expected) if accuracy is not None and expected < 1 else None
    return {
        "overall_accuracy": accuracy,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "mean_f1": float(np.mean(f1s)) if f1s else None,
        "kappa": kappa,
        "pixels": total,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


def compact(metrics: dict[str, Any]) -> dict[str, Any]:
    """The short form carried in progress lines and ONNX metadata: means plus IoU/F1 per class."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(float(value), 4)

    return {
        "overall_accuracy": rounded(metrics.get("overall_accuracy")),
        "mean_iou": rounded(metrics.get("mean_iou")),
        "mean_f1": rounded(metrics.get("mean_f1")),
        "iou": {k: rounded(v["iou"]) for k, v in metrics.get("per_class", {}).items()},
        "f1": {k: rounded(v["f1"]) for k, v in metrics.get("per_class", {}).items()},
    }
