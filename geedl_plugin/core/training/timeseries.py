"""Temporal training data from a time series of images with per-date labels.

When labels belong to dates (a cloud/shadow/snow mask such as Landsat's Fmask, or any per-date
map), each training example is a window of ``window`` consecutive dates around a centre date,
stacked time-major into ``window * C`` channels, and its label is the centre date's label. The
temporal model (document 003) then classifies each pixel of a date from its own history and
future, which is how multi-temporal cloud masking works: a cloud is bright *relative to the
same pixel's clear dates*. Every window is one :class:`Scene` on the same grid, so the spatial
block split holds the same pixels out of every date.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import GeedlError
from ..model_metadata import IGNORE_INDEX
from .data import Scene, TrainingData


def window_scenes(
    series: np.ndarray,
    labels: np.ndarray,
    window: int,
    value_map: Mapping[int, int],
    geotransform: tuple[float, ...],
    crs_wkt: str,
    names: list[str] | None = None,
    step: int = 1,
) -> list[Scene]:
    """Scenes for every centre date with a full window.

    ``series``: ``T x C x H x W`` float (NaN nodata); ``labels``: ``T x H x W`` raw per-date
    values, turned into class ids by ``value_map`` (unlisted values -> 255 ignored).
    """
    if series.ndim != 4 or labels.ndim != 3 or series.shape[0] != labels.shape[0]:
        raise GeedlError("A time series needs T x C x H x W images and T x H x W labels with the same T.")
    if window < 1 or window % 2 == 0:
        raise GeedlError(f"The time window must be an odd number of dates, got {window}.")
    dates = series.shape[0]
    if dates < window:
        raise GeedlError(f"The series has {dates} dates, fewer than the {window}-date window.")
    lookup = np.full(max(256, int(labels.max()) + 1), IGNORE_INDEX, dtype=np.uint8)
    for raw, cls in value_map.items():
        lookup[int(raw)] = int(cls)
    half = window // 2
    scenes = []
    for centre in range(half, dates - half, max(1, step)):
        stack = series[centre - half : centre + half + 1]
        image = stack.reshape(-1, *stack.shape[2:]).astype(np.float32)  # time-major channels
        label = lookup[labels[centre].astype(np.int64)]
        label = np.where(np.all(np.isfinite(stack[half]), axis=0), label, IGNORE_INDEX).astype(np.uint8)
        name = names[centre] if names else f"date_{centre}"
        scenes.append(Scene(image, label, tuple(geotransform), crs_wkt, name))
    return scenes


def time_series_data(
    series: np.ndarray,
    labels: np.ndarray,
    window: int,
    class_names: list[str],
    value_map: Mapping[int, int],
    band_names: list[str],
    geotransform: tuple[float, ...],
    crs_wkt: str,
    names: list[str] | None = None,
    step: int = 1,
) -> TrainingData:
    scenes = window_scenes(series, labels, window, value_map, geotransform, crs_wkt, names, step)
    data = TrainingData(
        scenes=scenes,
        class_names=list(class_names),
        band_names=list(band_names),
        time_steps=window,
        resolution=float(abs(geotransform[1])),
        source={"kind": "time series", "window": window, "dates": len(scenes)},
    )
    data.check()
    return data
