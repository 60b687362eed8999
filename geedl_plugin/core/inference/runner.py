"""Run an ONNX model over a raster of any size: the engine behind ``geedl predict``.

Flow, and why:

1. *Check everything first* (:func:`plan_predict`): the model loads and carries its metadata,
   the raster has every band the model names, the region overlaps it, the outputs can be
   written. A mistake costs a second, not an hour of tiles.
2. *Stream*: the raster is walked in column bands (``tiling.py``), each top to bottom one tile
   row at a time. A reader thread reads and normalises the next tile row while onnxruntime runs
   the current one; the blended probabilities of a tile row are kept only until they are final,
   then converted to bytes and written in whole 512-row blocks. Memory is the tile row of one
   column band plus a thin column of overlap: it does not grow with the raster.
3. *Blend*: overlapping tiles are weighted so they sum to one and edge pixels (which saw
   padding) weigh nothing: no seams, and with enough overlap the result equals a whole-image
   pass (tested).
4. *Atomic outputs*: everything is written to temporary files renamed at the very end; a
   failure or a cancel leaves nothing under the output names.

Normalisation ``(x - mean) / std`` comes from the model metadata; nodata inputs (NaN or the
band's nodata value) are fed as the band mean (0 after normalisation) and the output is nodata
wherever any input channel was nodata.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from ..atomic import atomic_path, check_writable
from ..class_decision import describe_thresholds
from ..errors import GeedlError
from ..model_metadata import ModelMetadata
from ..progress import Feedback, silent
from ..raster_io import capped_gdal_cache
from ..region import Region, RegionMask
from .session import LoadedModel, load_model
from .source import Grid, PreparedSource, prepare_source
from .tiling import BLOCK, TileGrid, plan_grid
from .writer import PredictionWriter, restyle

gdal.UseExceptions()


@dataclass
class PredictParams:
    """What to predict: the model, the image, where to write, how to tile."""

    model: str | Path
    image: str | Path
    out: str | Path
    probabilities: str | Path | None = None
    #: ``uint8`` (0-254 = 0-1, 255 nodata) or ``float32`` (0-1, NaN nodata)
    probabilities_dtype: str = "uint8"
    region: Region | None = None
    #: tile size and overlap in pixels; None: the model's metadata values
    tile: int | None = None
    overlap: int | None = None
    batch: int = 8
    #: ``auto`` (CUDA when available), ``cpu`` or ``cuda``
    device: str = "auto"
    threads: int | None = None
    #: ``auto`` resamples geographic / other-resolution rasters to the model grid, ``never`` does not
    resample: str = "auto"
    #: cap on GDAL's block cache during the run (MB); None: enough for two tile rows of input
    gdal_cache_mb: int | None = None
    #: copy an existing output to name.bak-<time>.tif before replacing it
    backup_existing: bool = True
    #: width of the column bands the raster is walked in (pixels); None: automatic (~4096)
    band_width: int | None = None


@dataclass
class PredictResult:
    out: Path | None
    probabilities: Path | None
    width: int
    height: int
    tiles: int
    seconds: float
    model_seconds: float
    provider: str
    tile: int
    overlap: int
    exact_blend: bool
    resampled: bool
    class_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def megapixels_per_second(self) -> float:
        return self.width * self.height / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out) if self.out else None,
            "probabilities": str(self.probabilities) if self.probabilities else None,
            "size": f"{self.width} x {self.height}",
            "tiles": self.tiles,
            "seconds": round(self.seconds, 2),
            "model_seconds": round(self.model_seconds, 2),
            "mpx_per_s": round(self.megapixels_per_second, 3),
            "provider": self.provider,
            "tile": self.tile,
            "overlap": self.overlap,
            "exact_blend": self.exact_blend,
            "resampled": self.resampled,
            "classes": ",".join(self.class_names),
        }


@dataclass
class PredictPlan:
    """Everything checked and opened, nothing computed."""

    params: PredictParams
    model: LoadedModel
    source: PreparedSource
    grid: TileGrid
    batch: int
    mean: np.ndarray
    std: np.ndarray

    @property
    def metadata(self) -> ModelMetadata:
        return self.model.metadata


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:  # pragma: no cover
        return False


def probe_writable(path: str | Path) -> None:
    """Create and delete a file beside ``path``: the only check that also holds for root, read-only
    mounts and special filesystems, where permission bits (``check_writable``) say yes."""
    target = check_writable(path)
    probe = target.with_name(f".geedl-probe-{uuid.uuid4().hex[:8]}")
    try:
        with open(probe, "wb") as handle:
            handle.write(b"0")
    except OSError as exc:
        raise GeedlError(
            f"Cannot write {target}: {exc.strerror or exc}. Choose an output folder you can write to."
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def plan_predict(params: PredictParams, model: LoadedModel | None = None) -> PredictPlan:
    """All pre-flight checks; raises GeedlError before any tile is computed."""
    if params.batch < 1:
        raise GeedlError(f"Batch size must be at least 1 (got {params.batch}).")
    if params.probabilities_dtype not in ("uint8", "float32"):
        raise GeedlError("Probabilities are written as uint8 or float32.")
    if not Path(params.image).exists() and not str(params.image).startswith("/vsi"):
        raise GeedlError(f"Image {params.image} does not exist. Give the composite GeoTIFF to predict on.")
    outputs = [p for p in (params.out, params.probabilities) if p is not None]
    if not outputs:
        raise GeedlError("Give an output file (--out) or a probabilities file (--probabilities).")
    for path in outputs:
        if _same_file(path, params.image):
            raise GeedlError(f"The output {path} is the input image; choose another output name.")
        probe_writable(path)
    if (
        params.out is not None
        and params.probabilities is not None
        and _same_file(params.out, params.probabilities)
    ):
        raise GeedlError("--out and --probabilities name the same file; give two names.")
    loaded = model or load_model(params.model, params.device, params.threads)
    metadata = loaded.metadata
    if params.probabilities is not None and metadata.model_type == "regression":
        raise GeedlError("A regression model has no class probabilities; drop --probabilities.")
    if params.out is None and metadata.model_type == "regression":
        raise GeedlError("Give --out for the regression values.")
    source = prepare_source(str(params.image), metadata, params.region, params.resample)
    tile = int(params.tile or metadata.tile_size)
    overlap = int(params.overlap if params.overlap is not None else metadata.tile_overlap)
    grid = plan_grid(
        source.work.width,
        source.work.height,
        tile,
        overlap,
        metadata.receptive_field,
        align=loaded.alignment,
        fixed_size=loaded.fixed_size,
        band_width=params.band_width,
    )
    batch = loaded.fixed_batch or params.batch
    mean = np.asarray(metadata.norm_mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(metadata.norm_std, dtype=np.float32).reshape(-1, 1, 1)
    if np.any(std <= 0) or not np.all(np.isfinite(std)):
        raise GeedlError("The model's normalisation has a zero, negative or missing std; retrain or fix it.")
    return PredictPlan(params, loaded, source, grid, batch, mean, std)


# -- reading ---------------------------------------------------------------------------------


@dataclass
class _Strip:
    """One tile row of one column band: its tiles as model batches, and the nodata mask."""

    band: int
    row: int
    #: tile columns of each batch, and the batches (N x channels x tile x tile, normalised)
    columns: list[list[int]]
    batches: list[np.ndarray]
    nodata: np.ndarray | None  # tile x band_width bool, True = nodata


def _reflect_fill(data: np.ndarray, rows: int, cols: int) -> None:
    """Fill ``data[..., rows:, :]`` and ``data[..., :, cols:]`` by mirroring the valid part
    (numpy's ``reflect``: the edge pixel is not repeated), the border rule of geedl models."""
    total_rows, total_cols = data.shape[-2:]
    for axis, valid, total in ((-1, cols, total_cols), (-2, rows, total_rows)):
        if valid >= total:
            continue
        if valid == 1:
            index = np.zeros(total - valid, dtype=np.intp)
        else:
            period = 2 * (valid - 1)
            k = np.arange(valid, total) % period
            index = np.where(k < valid, k, period - k)
        src = np.take(data[..., :rows, :] if axis == -1 else data, index, axis=axis)
        if axis == -1:
            data[..., :rows, valid:] = src
        else:
            data[..., valid:, :] = src


class _Reader:
    """Reads, normalises and cuts tile batches ahead of the model.

    A background thread (at lower priority) reads up to ``depth`` strips ahead; when the model
    is waiting for a strip nobody has started, the consuming thread reads it itself at its own
    priority (work stealing), so a starved background thread never stalls the run. Strips are
    handed out in order whoever read them.
    """

    def __init__(self, plan: PredictPlan, depth: int = 2) -> None:
        self.plan = plan
        self.depth = depth
        self.keys = list(self.strips())
        self.condition = threading.Condition()
        self.claimed = 0  # strips [0, claimed) are taken by a reader
        self.consumed = 0  # strips [0, consumed) were handed to the consumer
        self.done: dict[int, _Strip | BaseException] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="geedl-predict-reader", daemon=True)
        self.stolen = 0

    def strips(self) -> Iterator[tuple[int, int]]:
        grid = self.plan.grid
        for band in range(grid.n_bands):
            for row in range(grid.ny):
                yield band, row

    def read(self, band: int, row: int) -> _Strip:
        plan, grid = self.plan, self.plan.grid
        tiles = grid.band_tiles(band)
        x0 = tiles.start * grid.stride
        width = (len(tiles) - 1) * grid.stride + grid.tile
        y0 = row * grid.stride
        xsize = min(width, grid.width - x0)
        ysize = min(grid.tile, grid.height - y0)
        channels = len(plan.source.band_list)
        data = np.empty((channels, grid.tile, width), np.float32)
        if xsize == width and ysize == grid.tile:
            plan.source.read_into(x0, y0, data)
        else:
            data[:, :ysize, :xsize] = plan.source.read(x0, y0, xsize, ysize)
        valid = data[:, :ysize, :xsize]
        for channel, value in enumerate(plan.source.nodata):
            if value is not None:
                hit = valid[channel] == value
                if hit.any():
                    valid[channel][hit] = np.nan
        valid -= plan.mean
        valid /= plan.std
        invalid = None
        bad = np.isnan(valid)
        if bad.any():
            invalid = np.zeros((grid.tile, width), bool)
            invalid[:ysize, :xsize] = bad.any(axis=0)
            valid[bad] = 0.0
        _reflect_fill(data, ysize, xsize)
        columns = list(tiles)
        groups = [columns[i : i + plan.batch] for i in range(0, len(columns), plan.batch)]
        batches = []
        for group in groups:
            batch = np.empty((len(group), channels, grid.tile, grid.tile), np.float32)
            for n, j in enumerate(group):
                x = (j - tiles.start) * grid.stride
                batch[n] = data[:, :, x : x + grid.tile]
            batches.append(batch)
        return _Strip(band, row, groups, batches, invalid)

    def _read_safely(self, number: int) -> _Strip | BaseException:
        try:
            return self.read(*self.keys[number])
        except BaseException as exc:  # handed to the consumer, which raises it
            return exc

    def _run(self) -> None:
        first = True
        while not self.stop.is_set():
            with self.condition:
                while self.claimed - self.consumed >= self.depth and not self.stop.is_set():
                    self.condition.wait(0.2)
                if self.stop.is_set() or self.claimed >= len(self.keys):
                    return
                number = self.claimed
                self.claimed += 1
            item = self._read_safely(number)
            if first:  # the model waits for the first strip: it is read at full priority
                _lower_priority()
                first = False
            with self.condition:
                self.done[number] = item
                self.condition.notify_all()

    def __iter__(self) -> Iterator[_Strip]:
        self.thread.start()
        for number in range(len(self.keys)):
            with self.condition:
                while number not in self.done:
                    if self.claimed == number:  # nobody reads it yet: read it here
                        self.claimed += 1
                        self.stolen += 1
                        self.condition.release()
                        try:
                            item = self._read_safely(number)
                        finally:
                            self.condition.acquire()
                        self.done[number] = item
                        break
                    self.condition.wait(0.2)
                item = self.done.pop(number)
                self.consumed = number + 1
                self.condition.notify_all()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        with self.condition:
            self.condition.notify_all()
            self.done.clear()
        if self.thread.is_alive():
            self.thread.join(timeout=30)


#: nice increment of the reader and writer threads (Linux): they fill onnxruntime's idle moments
#: instead of preempting its worker threads, whose parallel loops all wait for the slowest one
BACKGROUND_NICE = 4


def _lower_priority() -> None:
    """Lower the calling thread's scheduling priority (a no-op where threads cannot be niced)."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except OSError:  # pragma: no cover - not permitted, or not Linux
        pass


def _trim_heap() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Tiles, strips and onnxruntime's activations are tens of megabytes each and freed at once;
    glibc keeps such memory in its per-thread arenas (fragmented by three threads allocating in
    turn), so without a trim the resident size drifts up with the run instead of staying at
    what is live."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_LIBC: list[Any] = []
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024


def _libc() -> Any:
    if not _LIBC:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.append(libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None)
        except OSError:  # pragma: no cover - not glibc
            _LIBC.append(None)
    return _LIBC[0]


def _malloc_trim() -> Any:
    libc = _libc()
    return None if libc is None else libc.malloc_trim


def _large_blocks_by_mmap() -> None:
    """Serve allocations of 4 MB and more with mmap (glibc ``mallopt``), so freed tiles go back to
    the system at once. glibc's default raises this threshold to the largest block freed (up to
    32 MB), after which our tile-sized arrays come from the heap and fragment it."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _put(target: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            target.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _drain(source: queue.Queue) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            source.get_nowait()


# -- blending ---------------------------------------------------------------------------------


class _BandBuffer:
    """Final rows of one column band, written to the outputs in whole 512-row blocks."""

    def __init__(self, writer: PredictionWriter, xoff: int) -> None:
        self.writer = writer
        self.xoff = xoff
        self.start = 0
        self.values: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        self.rows = 0

    def add(self, values: np.ndarray, nodata: np.ndarray | None) -> None:
        self.values.append(values)
        self.masks.append(nodata)
        self.rows += values.shape[1]
        if self.rows >= BLOCK:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        if not self.rows:
            return
        values = np.concatenate(self.values, axis=1) if len(self.values) > 1 else self.values[0]
        if all(m is None for m in self.masks):
            mask = None
        else:
            mask = np.concatenate(
                [np.zeros(v.shape[1:], bool) if m is None else m for v, m in zip(self.values, self.masks)],
                axis=0,
            )
        take = self.rows if final else (self.rows // BLOCK) * BLOCK
        self.writer.write(self.xoff, self.start, values[:, :take], None if mask is None else mask[:take])
        self.start += take
        rest = self.rows - take
        self.values = [values[:, take:]] if rest else []
        self.masks = [None if mask is None else mask[take:]] if rest else []
        self.rows = rest


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 of N x K x H x W, in place."""
    top = logits.max(axis=1, keepdims=True)
    logits -= top
    np.exp(logits, out=logits)
    np.sum(logits, axis=1, keepdims=True, out=top)
    logits /= top
    return logits


def _weigh(tile_out: np.ndarray, wy: np.ndarray, wx: np.ndarray, overlap: int) -> None:
    """Multiply K x T x T by outer(wy, wx) in place, touching only the rows/columns below 1."""
    if overlap == 0:
        return
    size = tile_out.shape[-1]
    for part in (slice(0, overlap), slice(size - overlap, size)):
        if np.any(wy[part] != 1.0):
            tile_out[:, part, :] *= wy[part, None]
        if np.any(wx[part] != 1.0):
            tile_out[:, :, part] *= wx[part]


class _Blender:
    """Accumulates weighted tile outputs and hands final rows to the writer (its own thread)."""

    def __init__(self, plan: PredictPlan, writer: PredictionWriter, region_mask: RegionMask | None) -> None:
        self.plan, self.grid, self.writer = plan, plan.grid, writer
        self.region_mask = region_mask
        self.k = plan.model.n_outputs
        self.regression = plan.metadata.model_type == "regression"
        grid = self.grid
        self.carry = (
            np.zeros((self.k, grid.ny * grid.stride + grid.overlap, grid.overlap), np.float32)
            if grid.n_bands > 1 and grid.overlap
            else None
        )
        self.acc: np.ndarray | None = None
        self.buffer: _BandBuffer | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="geedl-predict-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, strip: _Strip, outputs: list[np.ndarray]) -> None:
        if self.error is not None:
            raise self.error
        _put(self.queue, (strip, outputs), self.stop)

    def finish(self) -> None:
        """Wait until every submitted strip is written; re-raise the writer thread's error."""
        _put(self.queue, None, self.stop)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.stop.set()
        _drain(self.queue)
        if self.thread.is_alive():
            self.thread.join(timeout=60)

    def _run(self) -> None:
        _lower_priority()
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    if self.buffer is not None:
                        self.buffer.flush()
                    return
                self.blend(*item)
                del item
                _trim_heap()
        except BaseException as exc:
            self.error = exc
            self.stop.set()

    def blend(self, strip: _Strip, outputs: list[np.ndarray]) -> None:
        grid = self.grid
        band, row = strip.band, strip.row
        tile, stride, overlap = grid.tile, grid.stride, grid.overlap
        tiles = grid.band_tiles(band)
        col0, col1 = grid.band_columns(band)
        own = col1 - col0
        if row == 0:
            if self.buffer is not None:
                self.buffer.flush()
            self.acc = np.zeros((self.k, tile, (len(tiles) - 1) * stride + tile), np.float32)
            self.buffer = _BandBuffer(self.writer, col0)
        acc = self.acc
        wy = grid.weights_1d(row, grid.ny)
        for group, out in zip(strip.columns, outputs):
            if not self.regression:
                _softmax(out)
            for n, j in enumerate(group):
                _weigh(out[n], wy, grid.weights_1d(j, grid.nx), overlap)
                x = (j - tiles.start) * stride
                acc[:, :, x : x + tile] += out[n]
        # rows [row * stride, row * stride + final) are now complete for this band
        y0 = row * stride
        final = min(tile if row == grid.ny - 1 else stride, grid.height - y0)
        if self.carry is not None and band > 0:
            acc[:, :final, :overlap] += self.carry[:, y0 : y0 + final]
        if self.carry is not None and band < grid.n_bands - 1:
            self.carry[:, y0 : y0 + final] = acc[:, :final, own : own + overlap]
        values = acc[:, :final, :own].copy()
        nodata = None if strip.nodata is None else strip.nodata[:final, :own].copy()
        if self.region_mask is not None:
            x_0, dx, rx, y_0, ry, dy = self.plan.source.work.geotransform
            inside = self.region_mask.window((x_0 + col0 * dx, dx, rx, y_0 + y0 * dy, ry, dy), own, final)
            if inside is not None:
                nodata = ~inside if nodata is None else (nodata | ~inside)
        self.buffer.add(values, nodata)
        if overlap:
            acc[:, :overlap] = acc[:, stride:]
        acc[:, overlap:] = 0.0


def _execute(
    plan: PredictPlan, writer: PredictionWriter, feedback: Feedback, region_mask: RegionMask | None
) -> tuple[int, float]:
    """Three stages in three threads: read (reader), onnxruntime (here), blend + write (blender).

    Returns (tiles computed, seconds inside onnxruntime)."""
    grid, model = plan.grid, plan.model
    done = 0
    model_seconds = 0.0
    reader = _Reader(plan)
    blender = _Blender(plan, writer, region_mask)
    blender.start()
    finished = False
    try:
        for strip in reader:
            outputs = []
            for batch in strip.batches:
                feedback.check_cancelled()
                started = time.perf_counter()
                out = model.run(batch)
                model_seconds += time.perf_counter() - started
                if out.shape[1] != model.n_outputs or out.shape[2:] != batch.shape[2:]:
                    raise GeedlError(
                        f"The model returned {tuple(out.shape)} for a {tuple(batch.shape)} batch; expected "
                        f"{model.n_outputs} x {grid.tile} x {grid.tile} per tile. Is it a fully "
                        "convolutional geedl export?"
                    )
                outputs.append(out)
                done += len(batch)
                feedback.progress(100.0 * done / grid.n_tiles, f"tile {done}/{grid.n_tiles}")
            strip.batches = []  # the inputs are no longer needed
            blender.submit(strip, outputs)
        blender.finish()
        finished = True
    finally:
        reader.close()
        if not finished:
            blender.abort()
    return done, model_seconds


def _cache_bytes(plan: PredictPlan) -> int:
    if plan.params.gdal_cache_mb:
        return int(plan.params.gdal_cache_mb) * 1024 * 1024
    grid = plan.grid
    band_width = (grid.tiles_per_band - 1) * grid.stride + grid.tile + BLOCK
    channels = len(plan.source.band_list)
    # two block rows of input for every channel, plus room for output blocks
    need = 2 * (BLOCK + grid.tile) * band_width * channels * 4 + 64 * 1024 * 1024
    return max(128 * 1024 * 1024, need)


def execute_plan(plan: PredictPlan, feedback: Feedback | None = None) -> PredictResult:
    """Run a checked plan and write its outputs atomically."""
    feedback = feedback or silent()
    params, metadata, source = plan.params, plan.metadata, plan.source
    started = time.monotonic()
    _large_blocks_by_mmap()
    for note in source.notes:
        feedback.info(note)
    if not plan.grid.exact and metadata.receptive_field:
        feedback.info(
            f"Overlap {plan.grid.overlap} px is below the model's receptive field "
            f"({metadata.receptive_field} px): tiles are blended with a ramp (no visible seam) "
            "but are not identical to a whole-image pass."
        )
    region_mask = RegionMask(source.region_geometry) if source.region_geometry is not None else None
    extra = {"GEEDL_MODEL": Path(params.model).name, "GEEDL_IMAGE": Path(str(params.image)).name}
    out = Path(params.out) if params.out is not None else None
    probs = Path(params.probabilities) if params.probabilities is not None else None
    with contextlib.ExitStack() as stack:
        keep = params.backup_existing
        final_out = stack.enter_context(atomic_path(out, keep_backup=keep)) if out is not None else None
        final_probs = stack.enter_context(atomic_path(probs, keep_backup=keep)) if probs is not None else None
        if source.resampled:  # predict on the work grid, then warp back onto the input grid
            token = uuid.uuid4().hex[:8]
            folder = (out or probs).parent
            work_out = folder / f".geedl-work-{token}-class.tif" if out is not None else None
            work_probs = folder / f".geedl-work-{token}-prob.tif" if probs is not None else None
            stack.callback(_remove, [work_out, work_probs])
        else:
            work_out, work_probs = final_out, final_probs
        writer = PredictionWriter(
            source.work, metadata, work_out, work_probs, params.probabilities_dtype, extra
        )
        try:
            with capped_gdal_cache(_cache_bytes(plan)):
                tiles, model_seconds = _execute(
                    plan, writer, feedback.sub(0, 95 if source.resampled else 99), region_mask
                )
        finally:
            writer.close()
        if source.resampled:
            feedback.progress(96, "writing the prediction back on the input grid")
            if work_out is not None:
                _warp_back(work_out, final_out, source.output, metadata, "class")
            if work_probs is not None:
                _warp_back(work_probs, final_probs, source.output, metadata, "probabilities")
    source.close()
    feedback.progress(100, "prediction written")
    grid = plan.grid
    return PredictResult(
        out=out,
        probabilities=probs,
        width=source.output.width,
        height=source.output.height,
        tiles=tiles,
        seconds=time.monotonic() - started,
        model_seconds=model_seconds,
        provider=plan.model.provider,
        tile=grid.tile,
        overlap=grid.overlap,
        exact_blend=grid.exact,
        resampled=source.resampled,
        class_names=metadata.class_names,
        notes=list(source.notes) + _decision_notes(metadata),
    )


def _decision_notes(metadata: ModelMetadata) -> list[str]:
    """Say so when the class map is not the plain arg-max (the model carries class thresholds)."""
    rule = describe_thresholds(metadata.class_thresholds)
    return [f"The model {rule}."] if rule else []


def _remove(paths: list[Path | None]) -> None:
    for path in paths:
        if path is None:
            continue
        for candidate in (path, path.with_name(path.name + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


def _warp_back(src: Path, dst: Path, grid: Grid, metadata: ModelMetadata, kind: str) -> None:
    from ..raster_io import creation_options

    regression = metadata.model_type == "regression"
    dataset = gdal.Open(str(src))
    dtype = "float32" if regression or dataset.GetRasterBand(1).DataType == gdal.GDT_Float32 else "uint8"
    nodata = float("nan") if dtype == "float32" else 255
    dataset = None
    xmin, ymin, xmax, ymax = grid.bounds
    gdal.Warp(
        str(dst),
        str(src),
        format="GTiff",
        dstSRS=grid.projection,
        outputBounds=(xmin, ymin, xmax, ymax),
        width=grid.width,
        height=grid.height,
        resampleAlg="near" if kind == "class" and not regression else "bilinear",
        srcNodata=nodata,
        dstNodata=nodata,
        creationOptions=creation_options(dtype),
        multithread=True,
    )
    restyle(dst, metadata, "value" if regression else kind)


def run_predict(params: PredictParams, feedback: Feedback | None = None) -> PredictResult:
    """Check, then predict: the one call the CLI, the QgsTask and Processing make."""
    feedback = feedback or silent()
    feedback.progress(0, "checking the model and the image")
    plan = plan_predict(params)
    feedback.info(
        f"Model {Path(params.model).name}: {plan.metadata.architecture}, "
        f"{len(plan.metadata.classes) or 1} outputs, bands {', '.join(plan.metadata.bands)}; "
        f"{plan.grid.n_tiles} tiles of {plan.grid.tile} px (overlap {plan.grid.overlap}) on "
        f"{plan.model.provider} with {plan.model.threads} threads."
    )
    try:
        return execute_plan(plan, feedback)
    finally:
        plan.source.close()
