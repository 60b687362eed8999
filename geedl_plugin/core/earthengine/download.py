"""Tiled, parallel, resumable downloads of an image, stitched into one GeoTIFF (or a VRT).

The plan (``tiling.plan_tiles``) gives requests within Earth Engine's computePixels limits. A
pluggable *fetch* function turns one request into GeoTIFF bytes: ``ee_fetcher`` calls
``ee.data.computePixels``; ``http_fetcher`` posts the same request body to a URL (what the
tests' local server answers). Around it this module adds what large downloads need:

* worker threads (Earth Engine answers requests in parallel; each tile is seconds of latency);
* retries with exponential backoff and jitter on 429, 5xx, timeouts and broken responses
  (``Retry-After`` honoured), failing fast on errors a retry cannot fix;
* every tile validated (size, bands, georeferencing, all pixels decodable) and written
  atomically to a tile folder beside the output, so a rerun after a crash, a cancel or a lost
  connection fetches only the missing tiles; a plan fingerprint keeps tiles of another recipe
  or grid from being reused;
* cancellation noticed within ~0.1 s: the main thread never waits on a request; worker
  threads are daemons that drop their result once cancelled;
* the tiles stitched window by window (never the whole raster in memory) into a tiled, deflated
  GeoTIFF with band names, nodata and the recipe in its metadata, written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import random
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, osr

from ..atomic import atomic_path, check_writable
from ..errors import CancelledError, GeedlError
from ..progress import Feedback
from .tiling import TilePlan, TileRequest

gdal.UseExceptions()

FetchFn = Callable[[TileRequest, dict[str, Any]], bytes]

_GDAL_TYPES = {"uint8": gdal.GDT_Byte, "int16": gdal.GDT_Int16, "uint16": gdal.GDT_UInt16,
               "int32": gdal.GDT_Int32, "uint32": gdal.GDT_UInt32, "float32": gdal.GDT_Float32,
               "float64": gdal.GDT_Float64}
_TILE_OPTIONS = ["COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]
PLAN_FILE = "plan.json"


class FetchError(Exception):
    """A failed tile request; ``retryable`` says whether trying again may succeed."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    """Exponential backoff: base * factor**(attempt-1), capped, with +-jitter."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 60.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        delay = min(self.max_delay_s, self.base_delay_s * self.factor ** max(0, attempt - 1))
        delay *= 1.0 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self.max_delay_s))
        return max(0.0, delay)


@dataclass
class DownloadResult:
    path: Path
    tiles_total: int
    tiles_fetched: int
    tiles_reused: int
    requests: int
    retries: int
    seconds: float
    fetched_bytes: int
    band_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "tiles_total": self.tiles_total,
                "tiles_fetched": self.tiles_fetched, "tiles_reused": self.tiles_reused,
                "requests": self.requests, "retries": self.retries,
                "seconds": round(self.seconds, 2), "fetched_bytes": self.fetched_bytes,
                "bands": self.band_names}


# -- request bodies and fetchers ----------------------------------------------------------------

def computepixels_body(plan: TilePlan, tile: TileRequest) -> dict[str, Any]:
    """The computePixels request (without the expression) for one tile of the plan."""
    return {
        "fileFormat": "GEO_TIFF",
        "bandIds": plan.bands_of(tile),
        "grid": {
            "dimensions": {"width": tile.width, "height": tile.height},
            "affineTransform": tile.affine(plan.grid),
            "crsCode": plan.grid.crs,
        },
    }


def http_fetcher(url: str, timeout_s: float = 60.0, headers: dict[str, str] | None = None) -> FetchFn:
    """POST the computePixels body as JSON to ``url``; GeoTIFF bytes back.

    HTTP 429 and 5xx, timeouts, resets and short bodies raise retryable :class:`FetchError`;
    other 4xx are not retryable.
    """

    def fetch(tile: TileRequest, body: dict[str, Any]) -> bytes:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                data = response.read()
                expected = response.headers.get("Content-Length")
        except urllib.error.HTTPError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            retryable = exc.code == 429 or exc.code >= 500 or exc.code == 408
            raise FetchError(f"HTTP {exc.code} {exc.reason}", exc.code, retryable,
                             float(retry_after) if retry_after and retry_after.isdigit() else None
                             ) from None
        except (TimeoutError, OSError, HTTPException) as exc:  # timeouts, resets, IncompleteRead
            raise FetchError(f"{type(exc).__name__}: {exc}") from None
        if expected is not None and expected.isdigit() and len(data) != int(expected):
            raise FetchError(f"short response: {len(data)} of {expected} bytes")
        return data

    return fetch


_RETRYABLE_EE = ("too many requests", "rate limit", "quota exceeded", "429", "500", "502", "503",
                 "504", "internal error", "backend error", "service unavailable", "deadline",
                 "timed out", "timeout", "temporarily", "connection", "try again")


def ee_fetcher(image: Any) -> FetchFn:
    """Fetch a tile with ``ee.data.computePixels`` (fileFormat GEO_TIFF, the plan's grid)."""
    from .connection import load_ee

    ee = load_ee()

    def fetch(tile: TileRequest, body: dict[str, Any]) -> bytes:
        try:
            return ee.data.computePixels({"expression": image, **body})
        except ee.EEException as exc:
            text = str(exc)
            retryable = any(marker in text.lower() for marker in _RETRYABLE_EE)
            raise FetchError(text, retryable=retryable) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None

    return fetch


# -- tiles on disk ------------------------------------------------------------------------------

def _srs_wkt(crs: str) -> str:
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    return srs.ExportToWkt()


def nodata_value(dtype: str) -> float:
    """NaN for float outputs (the composite contract); the local engine's values for integers."""
    return float("nan") if dtype.startswith("float") else {"int16": -32768.0}.get(dtype, 0.0)


def decode_tile(data: bytes, plan: TilePlan, tile: TileRequest, fill_value: float | None) -> np.ndarray:
    """The tile's pixels (bands, rows, cols) in the plan's dtype, fill value -> nodata.

    Raises a retryable FetchError when the bytes are not a complete GeoTIFF of the requested
    window (truncated or corrupted in transit), so the tile is fetched again.
    """
    path = f"/vsimem/geedl_tile_{uuid.uuid4().hex}.tif"
    gdal.FileFromMemBuffer(path, data)
    try:
        try:
            ds = gdal.Open(path)
            if ds is None:
                raise RuntimeError("not a raster")
            if (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) != (tile.width, tile.height,
                                                                    tile.band_count):
                raise FetchError(
                    f"tile {tile.key} came back {ds.RasterXSize}x{ds.RasterYSize}x{ds.RasterCount}, "
                    f"expected {tile.width}x{tile.height}x{tile.band_count}", retryable=False)
            expected = tile.affine(plan.grid)
            gt = ds.GetGeoTransform()
            tolerance = plan.grid.scale * 1e-3
            if abs(gt[0] - expected["translateX"]) > tolerance or \
                    abs(gt[3] - expected["translateY"]) > tolerance or \
                    abs(gt[1] - plan.grid.scale) > tolerance * 1e-2:
                raise FetchError(f"tile {tile.key} came back at {gt[0]}, {gt[3]} (pixel {gt[1]}), "
                                 f"expected {expected['translateX']}, {expected['translateY']}",
                                 retryable=False)
            array = ds.ReadAsArray()
            ds = None
        except RuntimeError as exc:
            raise FetchError(f"tile {tile.key} is not a complete GeoTIFF ({exc})") from None
    finally:
        gdal.Unlink(path)
    array = np.asarray(array).reshape(tile.band_count, tile.height, tile.width)
    array = array.astype(plan.dtype, copy=False)
    if fill_value is not None and plan.dtype.startswith("float"):
        array = np.where(array == np.asarray(fill_value, dtype=plan.dtype), np.nan, array)
    return array.astype(plan.dtype, copy=False)


def write_tile(path: Path, array: np.ndarray, plan: TilePlan, tile: TileRequest) -> None:
    """Write a validated tile atomically (a partial file never has the final name)."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:6]}.partial.tif")
    try:
        ds = gdal.GetDriverByName("GTiff").Create(
            str(tmp), tile.width, tile.height, tile.band_count, _GDAL_TYPES[plan.dtype], _TILE_OPTIONS)
        a = tile.affine(plan.grid)
        ds.SetGeoTransform((a["translateX"], a["scaleX"], 0.0, a["translateY"], 0.0, a["scaleY"]))
        ds.SetProjection(_srs_wkt(plan.grid.crs))
        for i, name in enumerate(plan.bands_of(tile)):
            band = ds.GetRasterBand(i + 1)
            band.SetDescription(name)
            band.SetNoDataValue(nodata_value(plan.dtype))
            band.WriteArray(array[i])
        ds.FlushCache()
        ds = None
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def tile_is_complete(path: Path, plan: TilePlan, tile: TileRequest) -> bool:
    if not path.is_file():
        return False
    try:
        ds = gdal.Open(str(path))
        ok = (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (tile.width, tile.height,
                                                                 tile.band_count)
        if ok:  # the last row of the last band decodes: the file is whole
            ds.GetRasterBand(tile.band_count).ReadAsArray(0, tile.height - 1, tile.width, 1)
        ds = None
        return ok
    except RuntimeError:
        return False


def plan_fingerprint(plan: TilePlan, source_id: str) -> str:
    payload = json.dumps({"grid": plan.grid.to_dict(), "bands": list(plan.band_names),
                          "dtype": plan.dtype, "tile": plan.tile_size, "group": plan.band_group,
                          "source": source_id}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def prepare_tiles_dir(tiles_dir: Path, plan: TilePlan, source_id: str) -> None:
    """Create the tile folder; drop tiles of another plan (other recipe, grid or tiling)."""
    tiles_dir.mkdir(parents=True, exist_ok=True)
    manifest = tiles_dir / PLAN_FILE
    fingerprint = plan_fingerprint(plan, source_id)
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            previous = None
        if previous == fingerprint:
            return
        for stale in tiles_dir.glob("r*_c*_b*.tif"):
            stale.unlink()
    manifest.write_text(json.dumps({"fingerprint": fingerprint, "grid": plan.grid.to_dict(),
                                    "bands": list(plan.band_names)}), encoding="utf-8")


def default_tiles_dir(out: Path, as_vrt: bool = False) -> Path:
    return out.with_name(f"{out.stem}_tiles") if as_vrt else out.with_name(f".{out.name}.tiles")


# -- the download -------------------------------------------------------------------------------

def fetch_tiles(plan: TilePlan, fetch: FetchFn, tiles_dir: Path, *, workers: int = 4,
                retry: RetryPolicy | None = None, feedback: Feedback | None = None,
                fill_value: float | None = None, source_id: str = "") -> dict[str, int]:
    """Fetch every tile of ``plan`` missing from ``tiles_dir``; returns counts.

    Raises CancelledError within about 0.1 s of a cancel, GeedlError when a tile fails for good.
    """
    retry = retry or RetryPolicy()
    feedback = feedback or Feedback()
    prepare_tiles_dir(tiles_dir, plan, source_id)
    paths = {tile: tiles_dir / f"{tile.key}.tif" for tile in plan.tiles}
    todo = [tile for tile in plan.tiles if not tile_is_complete(paths[tile], plan, tile)]
    reused = len(plan.tiles) - len(todo)
    counts = {"total": len(plan.tiles), "reused": reused, "fetched": 0, "requests": 0,
              "retries": 0, "bytes": 0}
    if reused:
        feedback.info(f"Resuming: {reused} of {len(plan.tiles)} tiles are already on disk.")
    if not todo:
        return counts
    pending: queue.Queue[TileRequest] = queue.Queue()
    for tile in todo:
        pending.put(tile)
    results: queue.Queue[tuple[str, TileRequest, Any]] = queue.Queue()
    stop = threading.Event()
    lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            try:
                tile = pending.get_nowait()
            except queue.Empty:
                return
            attempt = 0
            while not stop.is_set():
                attempt += 1
                with lock:
                    counts["requests"] += 1
                    counts["retries"] += int(attempt > 1)
                try:
                    data = fetch(tile, computepixels_body(plan, tile))
                    array = decode_tile(data, plan, tile, fill_value)
                    if stop.is_set():
                        return
                    write_tile(paths[tile], array, plan, tile)
                    results.put(("ok", tile, len(data)))
                    break
                except FetchError as exc:
                    if not exc.retryable or attempt >= retry.max_attempts:
                        results.put(("error", tile, exc))
                        return
                    stop.wait(retry.delay(attempt, exc.retry_after))
                except Exception as exc:  # noqa: BLE001 - reported by the main thread
                    results.put(("error", tile, exc))
                    return

    threads = [threading.Thread(target=work, name=f"geedl-tile-{i}", daemon=True)
               for i in range(max(1, min(int(workers), len(todo))))]
    for thread in threads:
        thread.start()
    done = 0
    try:
        while done < len(todo):
            if feedback.cancelled():
                raise CancelledError("Download cancelled; the tiles fetched so far are kept and "
                                     "a rerun continues from them. No output was written.")
            try:
                kind, tile, payload = results.get(timeout=0.1)
            except queue.Empty:
                if not any(thread.is_alive() for thread in threads) and results.empty():
                    raise GeedlError("Internal error: the download workers stopped early.") from None
                continue
            if kind == "error":
                raise _tile_failure(tile, payload, retry)
            done += 1
            counts["fetched"] += 1
            counts["bytes"] += int(payload)
            feedback.progress(100.0 * (reused + done) / len(plan.tiles),
                              f"tile {reused + done}/{len(plan.tiles)}")
    finally:
        stop.set()
    return counts


def _tile_failure(tile: TileRequest, exc: BaseException, retry: RetryPolicy) -> GeedlError:
    if isinstance(exc, GeedlError):
        return exc
    if isinstance(exc, FetchError):
        if exc.retryable:
            return GeedlError(
                f"Tile {tile.key} failed {retry.max_attempts} times ({exc}). Earth Engine may be "
                "busy or rate limiting: rerun the same command later to continue (finished tiles "
                "are kept), or use fewer --workers.")
        if "must be less than or equal to" in str(exc) or "request size" in str(exc).lower():
            return GeedlError(f"Earth Engine refused tile {tile.key} as too large ({exc}); use a "
                              "smaller --tile-size.")
        from .connection import translate_error

        return translate_error(exc)
    return GeedlError(f"Tile {tile.key} could not be saved: {type(exc).__name__}: {exc}")


def stitch(plan: TilePlan, tiles_dir: Path, out: Path, metadata: dict[str, str] | None = None,
           feedback: Feedback | None = None) -> Path:
    """Write the tiles into one tiled, deflated GeoTIFF, atomically, window by window."""
    feedback = feedback or Feedback()
    grid = plan.grid
    options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER",
               f"PREDICTOR={3 if plan.dtype.startswith('float') else 2}"]
    with atomic_path(out) as tmp:
        ds = gdal.GetDriverByName("GTiff").Create(str(tmp), grid.width, grid.height,
                                                  len(plan.band_names), _GDAL_TYPES[plan.dtype], options)
        ds.SetGeoTransform(grid.geotransform)
        ds.SetProjection(_srs_wkt(grid.crs))
        for i, name in enumerate(plan.band_names):
            band = ds.GetRasterBand(i + 1)
            band.SetDescription(name)
            band.SetNoDataValue(nodata_value(plan.dtype))
        if metadata:
            ds.SetMetadata({key: str(value) for key, value in metadata.items()})
        for n, tile in enumerate(plan.tiles):
            feedback.check_cancelled()
            src = gdal.Open(str(tiles_dir / f"{tile.key}.tif"))
            for b in range(tile.band_count):
                data = src.GetRasterBand(b + 1).ReadAsArray()
                ds.GetRasterBand(tile.band_start + b + 1).WriteArray(data, tile.col_off, tile.row_off)
            src = None
            feedback.progress(100.0 * (n + 1) / len(plan.tiles), "stitching")
        ds.FlushCache()
        ds = None
    return out


def check_vrt_possible(plan: TilePlan) -> None:
    if plan.band_group < len(plan.band_names):
        raise GeedlError(f"A VRT needs all {len(plan.band_names)} bands in each tile; write a .tif "
                         "output instead, or use a smaller --tile-size.")


def build_vrt(plan: TilePlan, tiles_dir: Path, out: Path, metadata: dict[str, str] | None = None) -> Path:
    """A VRT over the tiles (kept in ``tiles_dir``): instant, but the tiles must stay."""
    check_vrt_possible(plan)
    paths = [str(tiles_dir / f"{tile.key}.tif") for tile in plan.tiles]
    with atomic_path(out) as tmp:
        vrt = gdal.BuildVRT(str(tmp), paths)
        for i, name in enumerate(plan.band_names):
            vrt.GetRasterBand(i + 1).SetDescription(name)
        if metadata:
            vrt.SetMetadata({key: str(value) for key, value in metadata.items()})
        vrt.FlushCache()
        vrt = None
    return out


def download(plan: TilePlan, fetch: FetchFn, out: str | Path, *, metadata: dict[str, str] | None = None,
             workers: int = 4, retry: RetryPolicy | None = None, feedback: Feedback | None = None,
             tiles_dir: str | Path | None = None, keep_tiles: bool = False,
             fill_value: float | None = None, source_id: str = "") -> DownloadResult:
    """Fetch the plan's tiles (resuming) and stitch them into ``out`` (.tif, or .vrt of tiles)."""
    feedback = feedback or Feedback()
    out = check_writable(out)
    as_vrt = out.suffix.lower() == ".vrt"
    if as_vrt:
        check_vrt_possible(plan)  # before any request
    folder = Path(tiles_dir) if tiles_dir else default_tiles_dir(out, as_vrt)
    started = time.monotonic()
    counts = fetch_tiles(plan, fetch, folder, workers=workers, retry=retry,
                         feedback=feedback.sub(0, 90), fill_value=fill_value, source_id=source_id)
    if as_vrt:
        build_vrt(plan, folder, out, metadata)
    else:
        stitch(plan, folder, out, metadata, feedback.sub(90, 100))
        if not keep_tiles:
            shutil.rmtree(folder, ignore_errors=True)
    feedback.progress(100.0, "done")
    return DownloadResult(out, counts["total"], counts["fetched"], counts["reused"],
                          counts["requests"], counts["retries"], time.monotonic() - started,
                          counts["bytes"], list(plan.band_names))
