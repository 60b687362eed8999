"""Training: data, spatial split, normalisation, the loop, metrics, ONNX export, fast retrain.

Entry points: :func:`train` (files in, model out: what the CLI, the QgsTask subprocess and the
Processing algorithm call) and :func:`train_on_data` (prepared :class:`TrainingData`, for
scripts and tests). Everything here runs without QGIS; torch is imported only by this package.
"""

from __future__ import annotations

import os

# OpenMP threads that busy-wait between operations slow small CPU convolutions down 10-50x when
# other processes share the cores (QGIS, a second job, CI). Passive waiting costs little on an
# idle machine. Must be set before torch loads its OpenMP runtime; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from ..progress import Feedback  # noqa: E402
from .data import ClassSpec, Scene, TrainingData, load_training_data  # noqa: E402
from .settings import TrainSettings  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Record, TrainOutputs, TrainResult, train_on_data

# torch loads only when training starts, so reading and checking inputs (and refusing bad
# ones) takes a second, not the several seconds torch's import costs
_LAZY = {"Record", "TrainOutputs", "TrainResult", "train_on_data"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train(
    image: str | Path | None,
    labels: str | Path,
    out: str | Path,
    settings: TrainSettings | None = None,
    classes: ClassSpec | None = None,
    time_steps: int | None = None,
    feedback: Feedback | None = None,
    on_record: Record | None = None,
) -> TrainResult:
    """Train a model on an image and labels (polygons, label raster or chips manifest).

    Writes ``out`` (.onnx with metadata), ``<out>.ckpt``, ``<out>.metrics.json`` and
    ``<out>.comparison.png``. With ``settings.finetune_from`` the classes and normalisation of
    that model are kept and only the corrected labels are used (``head_only`` for seconds).
    """
    from .trainer import TrainOutputs, train_on_data

    settings = settings or TrainSettings()
    TrainOutputs.beside(out, settings.checkpoint)  # fail on a bad output name before reading data
    data = load_training_data(image, labels, classes, time_steps=time_steps, feedback=feedback)
    return train_on_data(data, settings, out, feedback=feedback, on_record=on_record)


__all__ = [
    "ClassSpec",
    "Scene",
    "TrainingData",
    "TrainSettings",
    "TrainOutputs",
    "TrainResult",
    "train",
    "train_on_data",
    "load_training_data",
]
