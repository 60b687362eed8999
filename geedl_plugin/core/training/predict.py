"""Tiled torch prediction over a normalised scene (validation, comparison image, fine-tuning).

The deployed path is the ONNX model in the inference runner; this is the same tiling in torch,
used while training. Tiles overlap by the model's ``tile_overlap`` so only the centre of each
tile, which saw enough context, is kept. Tiles whose centre holds no pixel of ``needed`` are
skipped, so validating on held-out blocks costs only those blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..models.base import GeedlModel, SamePadding


def iter_tiles(height: int, width: int, tile: int, overlap: int):
    """(core window, read window) pairs: ``(y0, y1, x0, x1)`` each."""
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(height, y0 + tile), min(width, x0 + tile)
            ry0, rx0 = max(0, y0 - overlap), max(0, x0 - overlap)
            ry1, rx1 = min(height, y1 + overlap), min(width, x1 + overlap)
            yield (y0, y1, x0, x1), (ry0, ry1, rx0, rx1)


@torch.no_grad()
def predict_map(
    model: GeedlModel,
    image: np.ndarray,
    tile: int = 256,
    overlap: int | None = None,
    needed: np.ndarray | None = None,
    device: str = "cpu",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Per-pixel output of ``model`` (``K x H x W`` float32 logits, or what ``transform`` makes of
    them) over a normalised ``C x H x W`` image; pixels in skipped tiles are NaN."""
    was_training = model.training
    model.eval()
    runner = SamePadding(model) if model.margin else model
    overlap = model.tile_overlap if overlap is None else overlap
    channels, height, width = image.shape
    out: np.ndarray | None = None
    try:
        for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in iter_tiles(height, width, tile, overlap):
            if needed is not None and not needed[y0:y1, x0:x1].any():
                continue
            window = np.ascontiguousarray(image[:, ry0:ry1, rx0:rx1])
            if min(window.shape[1:]) <= model.margin:  # reflect padding needs a few pixels
                window = np.pad(
                    window,
                    (
                        (0, 0),
                        (0, max(0, model.margin + 1 - window.shape[1])),
                        (0, max(0, model.margin + 1 - window.shape[2])),
                    ),
                    mode="edge",
                )
            result = runner(torch.from_numpy(window)[None].to(device))
            if transform is not None:
                result = transform(result)
            result = result[0].float().cpu().numpy()
            if out is None:
                out = np.full((result.shape[0], height, width), np.nan, dtype=np.float32)
            out[:, y0:y1, x0:x1] = result[:, y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
    finally:
        model.train(was_training)
    if out is None:
        out = np.full((int(model.n_classes), height, width), np.nan, dtype=np.float32)
    return out


def predict_classes(
    model: GeedlModel,
    image: np.ndarray,
    tile: int = 256,
    needed: np.ndarray | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Arg-max class per pixel (uint8); 255 where the tile was skipped."""
    logits = predict_map(model, image, tile=tile, needed=needed, device=device)
    classes = np.full(logits.shape[1:], 255, dtype=np.uint8)
    done = np.isfinite(logits[0])
    classes[done] = np.argmax(logits[:, done], axis=0).astype(np.uint8)
    return classes
