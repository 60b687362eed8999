"""The networks geedl trains, and a registry that builds them by name.

Every model is plain torch (no torchvision), takes any number of input bands, maps
``N x C x H x W`` to ``N x K x H x W`` logits after export, and splits into ``features`` and
``head`` (see :mod:`.base`). Sources are named in each module: U-Net (documents 000/002), the
pixel CNN (document 001), the temporal 1D CNN (document 003) and SegNet (document 004).
"""

from __future__ import annotations

import os

# OpenMP threads that busy-wait between operations slow small CPU convolutions down 10-50x when
# other processes share the cores (QGIS, a second job, CI). Passive waiting costs little on an
# idle machine. Must be set before torch loads its OpenMP runtime; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import Any  # noqa: E402

from ..errors import GeedlError  # noqa: E402
from .base import GeedlModel, SamePadding  # noqa: E402
from .pixelcnn import PixelCNN  # noqa: E402
from .segnet import SegNet  # noqa: E402
from .temporal import TemporalCNN  # noqa: E402
from .unet import UNet, load_pretrained_encoder  # noqa: E402

MODELS: dict[str, type[GeedlModel]] = {
    "unet": UNet,
    "pixelcnn": PixelCNN,
    "temporal": TemporalCNN,
    "segnet": SegNet,
}

MODEL_NAMES = tuple(MODELS)


def build_model(name: str, in_channels: int, n_classes: int, **cfg: Any) -> GeedlModel:
    """Build a model by registry name; ``cfg`` holds the architecture's own options
    (``depth``/``width`` for U-Net and SegNet, ``widths`` for the pixel CNN, ``time_steps``,
    ``pooling``... for the temporal model). Unknown options are a GeedlError, not ignored."""
    key = str(name).strip().lower()
    if key not in MODELS:
        raise GeedlError(f"Unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    if in_channels < 1:
        raise GeedlError("A model needs at least one input band.")
    if n_classes < 2:
        raise GeedlError(f"A classification model needs at least two classes, got {n_classes}.")
    cls = MODELS[key]
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "in_channels", "n_classes"}
    unknown = set(cfg) - accepted
    if unknown:
        raise GeedlError(
            f"Model {key} has no option(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(sorted(accepted))}."
        )
    return cls(int(in_channels), int(n_classes), **cfg)


def model_spec(model: GeedlModel) -> dict[str, Any]:
    """Everything needed to rebuild ``model`` with :func:`rebuild_model` (stored in checkpoints
    and in the ONNX metadata's ``model_config``)."""
    return {
        "name": model.name,
        "in_channels": int(model.in_channels),
        "n_classes": int(model.n_classes),
        "config": dict(model.config),
    }


def rebuild_model(spec: dict[str, Any]) -> GeedlModel:
    try:
        return build_model(spec["name"], spec["in_channels"], spec["n_classes"], **spec.get("config", {}))
    except KeyError as exc:
        raise GeedlError(
            f"The model description lacks {exc}; the checkpoint is damaged or not from geedl."
        ) from exc


__all__ = [
    "GeedlModel",
    "SamePadding",
    "UNet",
    "PixelCNN",
    "TemporalCNN",
    "SegNet",
    "MODELS",
    "MODEL_NAMES",
    "build_model",
    "model_spec",
    "rebuild_model",
    "load_pretrained_encoder",
]
