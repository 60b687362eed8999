"""What a training run leaves for the analyst: a metrics JSON and a comparison picture.

The picture follows document 002's visual comparison: composite (false colour B11/B8/B3 as in
document 000 when those bands exist), labels and prediction side by side, with the validation
blocks outlined in every panel so held-out areas are easy to find, and a legend of class
colours. Pillow draws it (matplotlib is not a dependency); unlabelled pixels are dark grey.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path
from ..model_metadata import IGNORE_INDEX
from ..preview import stretch

FALSE_COLOUR = (("B11", "B8", "B3"), ("B8", "B4", "B3"), ("B4", "B3", "B2"))
UNLABELLED = (40, 40, 40)
OUTLINE = (255, 255, 255)


def write_metrics_json(path: str | Path, payload: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    return Path(path)


def _hex(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def false_colour(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """H x W x 3 uint8 from the first band triple the image has (first three bands otherwise)."""
    for triple in FALSE_COLOUR:
        if all(b in band_names for b in triple):
            index = [list(band_names).index(b) for b in triple]
            break
    else:
        index = [0, 1, 2] if image.shape[0] >= 3 else [0, 0, 0]
    return np.stack([stretch(image[i]) for i in index], axis=-1)


def colourize(classes: np.ndarray, colors: Sequence[str]) -> np.ndarray:
    palette = np.array([UNLABELLED] * 256, dtype=np.uint8)
    for k, color in enumerate(colors):
        palette[k] = _hex(color)
    palette[IGNORE_INDEX] = UNLABELLED
    return palette[classes]


def _outline(mask: np.ndarray) -> np.ndarray:
    edge = np.zeros_like(mask)
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    return edge


def write_comparison_png(
    path: str | Path,
    image: np.ndarray,
    band_names: Sequence[str],
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    colors: Sequence[str],
    val_mask: np.ndarray | None = None,
    max_width: int = 900,
    title: str = "",
) -> Path:
    """Composite | labels | prediction, one row, with a legend line; written atomically."""
    step = max(1, int(np.ceil(image.shape[2] / max_width)))
    rgb = false_colour(image[:, ::step, ::step], band_names)
    panels = [rgb, colourize(labels[::step, ::step], colors), colourize(predicted[::step, ::step], colors)]
    if val_mask is not None and val_mask.any():
        edge = _outline(val_mask[::step, ::step])
        for panel in panels:
            panel[edge] = OUTLINE
    height, width = panels[0].shape[:2]
    gap, header, legend = 6, 18, 22
    canvas = Image.new("RGB", (3 * width + 2 * gap, header + height + legend), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    captions = [
        "composite (false colour)",
        "labels",
        "prediction" + (" (validation blocks outlined)" if val_mask is not None else ""),
    ]
    for i, (panel, caption) in enumerate(zip(panels, captions)):
        left = i * (width + gap)
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel)), (left, header))
        draw.text((left + 2, 3), caption, fill=(0, 0, 0), font=font)
    x = 4
    y = header + height + 5
    for name, color in zip(class_names, colors):
        draw.rectangle([x, y, x + 12, y + 12], fill=_hex(color), outline=(0, 0, 0))
        draw.text((x + 16, y), name, fill=(0, 0, 0), font=font)
        x += 24 + 7 * len(name)
    draw.rectangle([x, y, x + 12, y + 12], fill=UNLABELLED, outline=(0, 0, 0))
    draw.text((x + 16, y), "unlabelled", fill=(0, 0, 0), font=font)
    if title:
        draw.text((x + 110, y), title, fill=(0, 0, 0), font=font)
    with atomic_path(path) as tmp:
        canvas.save(str(tmp), format="PNG")
    return Path(path)
