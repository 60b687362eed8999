"""ONNX export that is checked before it is kept.

Opset 17 with torch's TorchScript exporter (``dynamo=False``): onnxruntime 1.23 (the pinned
runtime) runs it, and the exporter needs no extra packages. Batch, height and width are dynamic
axes, so the runner may choose any tile size. Padding-free models (the pixel CNN) are wrapped
in :class:`..models.SamePadding` so every exported model maps ``N x C x H x W`` to ``N x K x H x
W``. The metadata (:mod:`..model_metadata`) goes into the file, then onnxruntime runs it next to
the torch model on real normalised pixels at two sizes and batch sizes; a max abs difference
above ``tolerance`` (1e-4) is an error and nothing is written.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import GeedlError
from ..model_metadata import ModelMetadata, write_metadata
from ..models.base import GeedlModel, SamePadding

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
TOLERANCE = 1e-4


def _export_module(model: GeedlModel) -> torch.nn.Module:
    return SamePadding(model) if model.margin else model


def _verification_inputs(sample: np.ndarray) -> list[np.ndarray]:
    """Two real crops (odd sizes, batch 1 and 2) of a normalised ``C x H x W`` sample."""
    _, height, width = sample.shape
    h1, w1 = min(height, 61), min(width, 75)
    h2, w2 = min(height, 40), min(width, 33)
    first = sample[None, :, :h1, :w1]
    second = np.stack([sample[:, height - h2 :, width - w2 :], sample[:, :h2, width - w2 :]])
    return [np.ascontiguousarray(first, dtype=np.float32), np.ascontiguousarray(second, dtype=np.float32)]


def verify_onnx(
    onnx_bytes_or_path: bytes | str | Path,
    model: GeedlModel,
    sample: np.ndarray,
    tolerance: float = TOLERANCE,
) -> float:
    """Max abs difference between onnxruntime and torch on real crops; GeedlError above tolerance."""
    import onnxruntime as ort

    source = onnx_bytes_or_path if isinstance(onnx_bytes_or_path, bytes) else str(onnx_bytes_or_path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    module = _export_module(model).eval()
    worst = 0.0
    for batch in _verification_inputs(sample):
        with torch.no_grad():
            expected = module(torch.from_numpy(batch)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        if got.shape != expected.shape:
            raise GeedlError(
                f"The exported model returns shape {got.shape}, torch {expected.shape}; export failed."
            )
        worst = max(worst, float(np.max(np.abs(got - expected))))
    if not worst <= tolerance:
        raise GeedlError(
            f"The ONNX export differs from the torch model by {worst:.2e} (allowed {tolerance:.0e}); "
            "the model file was not written. Please report this with the model type and options."
        )
    return worst


def export_onnx(
    model: GeedlModel,
    out_path: str | Path,
    metadata: ModelMetadata,
    sample: np.ndarray,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Export ``model`` (on CPU, eval mode) to ``out_path`` atomically; returns what was checked."""
    model = model.to("cpu").eval()
    module = _export_module(model)
    channels = sample.shape[0]
    dummy = torch.zeros(1, channels, 64, 64)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic are expected
        torch.onnx.export(
            module,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            },
        )
    with atomic_path(out_path) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
        write_metadata(tmp, metadata)
        difference = verify_onnx(tmp, model, sample, tolerance)
    return {
        "opset": OPSET,
        "max_abs_diff": difference,
        "tolerance": tolerance,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    }
