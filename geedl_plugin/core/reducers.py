"""Per-pixel reducers over a stack of scenes, with NaN meaning "no data".

Earth Engine reduces each band of an image collection over the images that have a valid pixel
there; these do the same on numpy arrays so both engines agree. A pixel with no valid value in
any scene stays NaN. max / min / mean / first stream (one scene at a time, constant memory);
median and percentile need the whole stack of a window and sort it along the scene axis, which
is much faster than ``np.nanpercentile`` (that one loops in Python over pixels).

Percentiles interpolate linearly between the sorted valid values (numpy's default ``linear``
method); Earth Engine's ``ee.Reducer.percentile`` picks the nearest rank instead, so the two may
differ by a fraction of the gap between neighbouring values.
"""

from __future__ import annotations

import numpy as np

from .errors import GeedlError
from .recipe import REDUCERS


def _check(reducer: str, percentile: float) -> str:
    name = reducer.strip().lower()
    if name not in REDUCERS:
        raise GeedlError(f"Unknown reducer {reducer!r}; use one of {', '.join(REDUCERS)}.")
    if name == "percentile" and not 0.0 <= float(percentile) <= 100.0:
        raise GeedlError(f"Percentile {percentile} must be between 0 and 100.")
    return name


def nan_percentile(stack: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """``np.nanpercentile(stack, q, axis)`` (linear), vectorised: sort, then interpolate per pixel."""
    data = np.moveaxis(np.asarray(stack), axis, 0)
    if data.shape[0] == 0:
        raise GeedlError("Cannot reduce an empty stack.")
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    ordered = np.sort(data, axis=0)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(ordered), axis=0)
    position = (np.maximum(count, 1) - 1) * (float(q) / 100.0)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    fraction = (position - low).astype(data.dtype)
    below = np.take_along_axis(ordered, low[np.newaxis], axis=0)[0]
    above = np.take_along_axis(ordered, high[np.newaxis], axis=0)[0]
    result = below + (above - below) * fraction
    # where below == above the product above is 0 even for inf; keep exact values there
    result = np.where(below == above, below, result)
    result[count == 0] = np.nan
    return result.astype(data.dtype, copy=False)


def reduce_stack(stack: np.ndarray, reducer: str, axis: int = 0, percentile: float = 50.0) -> np.ndarray:
    """Reduce ``stack`` along ``axis`` ignoring NaN; all-NaN pixels give NaN (no warnings)."""
    name = _check(reducer, percentile)
    data = np.moveaxis(np.asarray(stack), axis, 0)
    if data.shape[0] == 0:
        raise GeedlError("Cannot reduce an empty stack: no scene covers the area.")
    accumulator = Accumulator(name, percentile)
    for layer in data:
        accumulator.add(layer)
    return accumulator.result()


class Accumulator:
    """Adds scenes one at a time; :meth:`result` gives the reduced array (NaN where no data).

    The first array added is kept and updated in place (no copy) for max/min/first, so give it
    an array you do not need afterwards.
    """

    def __init__(self, reducer: str, percentile: float = 50.0) -> None:
        self.reducer = _check(reducer, percentile)
        self.percentile = 50.0 if self.reducer == "median" else float(percentile)
        self.count = 0
        self._value: np.ndarray | None = None
        self._valid: np.ndarray | None = None
        self._layers: list[np.ndarray] = []

    def add(self, array: np.ndarray) -> None:
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        self.count += 1
        name = self.reducer
        if name in ("median", "percentile"):
            self._layers.append(array)
            return
        if self._value is None:
            if name == "mean":
                valid = ~np.isnan(array)
                self._valid = valid.astype(np.uint16)
                self._value = np.where(valid, array, 0).astype(np.float64 if array.dtype == np.float64
                                                               else np.float32)
            else:
                self._value = array
            return
        if name == "max":
            np.fmax(self._value, array, out=self._value)
        elif name == "min":
            np.fmin(self._value, array, out=self._value)
        elif name == "first":
            holes = np.isnan(self._value)
            self._value[holes] = array[holes]
        else:  # mean
            valid = ~np.isnan(array)
            self._valid += valid
            self._value += np.where(valid, array, 0)

    def result(self) -> np.ndarray:
        if self.count == 0:
            raise GeedlError("Cannot reduce an empty stack: no scene covers the area.")
        if self.reducer in ("median", "percentile"):
            if len(self._layers) == 1:
                return self._layers[0]
            return nan_percentile(np.stack(self._layers), self.percentile, axis=0)
        assert self._value is not None
        if self.reducer == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = self._value / self._valid
            return mean.astype(self._value.dtype, copy=False)
        return self._value
