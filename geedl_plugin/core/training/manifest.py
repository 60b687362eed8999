"""Training data from a chips manifest (the labels step's export of image/label chip pairs).

A manifest is JSON with a list of chips (``chips``, or ``items``), each naming a GeoTIFF image
chip and its label chip (keys ``image``/``image_path`` and ``label``/``label_path``/``mask``),
relative to the manifest's folder or absolute, plus the legend (``legend``: the labels step's
``{"classes": [{"id", "name", "color"}]}``, or ``classes``: a list of names). Every chip becomes
one :class:`~.data.Scene` with its own georeference. When the manifest records a train/val
``split`` per chip (the labels step splits by spatial blocks and drops chips that straddle two
blocks), that split is used; otherwise the trainer's block split groups chips by where they lie
on the map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeedlError
from ..model_metadata import IGNORE_INDEX
from ..progress import Feedback, silent
from .data import ClassSpec, Scene, TrainingData, image_info, map_label_ids, read_image, read_label_raster

IMAGE_KEYS = ("image", "image_path", "img")
LABEL_KEYS = ("label", "label_path", "labels", "mask", "target")


def _entry_path(entry: dict[str, Any], keys: tuple[str, ...], folder: Path, what: str, index: int) -> Path:
    for key in keys:
        if entry.get(key):
            path = Path(str(entry[key]))
            return path if path.is_absolute() else folder / path
    raise GeedlError(
        f"Chip {index + 1} of the manifest names no {what} file (expected one of {', '.join(keys)})."
    )


def _legend(data: dict[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    legend = data.get("legend")
    if isinstance(legend, dict) and isinstance(legend.get("classes"), list):
        names = {int(c["id"]): str(c["name"]) for c in legend["classes"]}
        colors = {int(c["id"]): str(c.get("color", "")) for c in legend["classes"] if c.get("color")}
        return names, colors
    classes = data.get("classes")
    if isinstance(classes, list):
        names = {}
        for i, item in enumerate(classes):
            if isinstance(item, dict):
                names[int(item.get("id", i))] = str(item.get("name", i))
            else:
                names[i] = str(item)
        return names, {}
    if isinstance(classes, dict):
        return {int(k): str(v) for k, v in classes.items()}, {}
    return {}, {}


def load_manifest(
    path: str | Path,
    spec: ClassSpec | None = None,
    time_steps: int | None = None,
    image: str | Path | None = None,
    feedback: Feedback | None = None,
) -> TrainingData:
    """Read every chip pair of a manifest into one :class:`TrainingData`."""
    feedback = feedback or silent()
    spec = spec or ClassSpec()
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GeedlError(f"Cannot read the chips manifest {path.name}: {exc}") from exc
    entries = data.get("chips") or data.get("items") or []
    if not entries:
        raise GeedlError(f"The chips manifest {path.name} lists no chip; export chips from the labels first.")
    if image is not None:
        feedback.info("The chips carry their own image windows; --image is not used with a manifest.")
    names, colors = _legend(data)
    folder = path.parent
    scenes: list[Scene] = []
    raw_labels: list[np.ndarray] = []
    first = None
    for index, entry in enumerate(entries):
        image_path = _entry_path(entry, IMAGE_KEYS, folder, "image", index)
        label_path = _entry_path(entry, LABEL_KEYS, folder, "label", index)
        info = image_info(image_path, time_steps)
        if first is None:
            first = info
        elif info.band_names != first.band_names or info.time_steps != first.time_steps:
            raise GeedlError(
                f"Chip {image_path.name} has bands {', '.join(info.band_names)}, the first chip "
                f"{', '.join(first.band_names)}; all chips must come from the same composite recipe."
            )
        values, chip_names, chip_colors = read_label_raster(label_path, info)
        for key, value in chip_names.items():
            names.setdefault(key, value)
        for key, value in chip_colors.items():
            colors.setdefault(key, value)
        pixels = read_image(image_path)
        nodata = ~np.all(np.isfinite(pixels), axis=0)
        values = values.copy()
        values[nodata] = IGNORE_INDEX
        raw_labels.append(values)
        scenes.append(Scene(pixels, values, info.geotransform, info.crs_wkt, image_path.stem))
        feedback.progress(100.0 * (index + 1) / len(entries), f"read chip {index + 1}/{len(entries)}")
    assert first is not None
    # one mapping for all chips, built from every value that occurs in any of them
    stacked = np.concatenate([v.ravel() for v in raw_labels])
    classes = map_label_ids(stacked, names, colors, spec)
    offset = 0
    for scene, values in zip(scenes, raw_labels):
        scene.label = classes.label[offset : offset + values.size].reshape(values.shape)
        offset += values.size
    splits = [str(entry.get("split", "")).lower() for entry in entries]
    preset = None
    if all(s in ("train", "val") for s in splits) and "train" in splits and "val" in splits:
        preset = [s == "val" for s in splits]
    recipe = data.get("recipe") if isinstance(data.get("recipe"), dict) else first.recipe
    if recipe is None and data.get("image") and Path(str(data["image"])).is_file():
        from ..raster_io import read_recipe

        try:
            recipe = read_recipe(data["image"])
        except GeedlError:
            recipe = None
    result = TrainingData(
        scenes=scenes,
        class_names=classes.names,
        class_ids=classes.ids,
        class_colors=classes.colors,
        band_names=first.band_names,
        time_steps=first.time_steps,
        resolution=first.resolution,
        recipe=recipe,
        preset_val=preset,
        source={
            "labels": str(path),
            "labels_kind": "manifest",
            "chips": len(scenes),
            "classes": classes.names,
            "class_field": spec.class_field,
            "other_class": spec.other_class,
        },
    )
    feedback.info(f"{len(scenes)} chips, classes {', '.join(classes.names)}")
    return result
