"""Batch exports for areas too big to download, and the decision between the two.

A download fetches every pixel through this computer, tile by tile; beyond a few gigabytes it
takes hours and Earth Engine's batch system (which scales out) is the right engine. The
decision is made from the grid size before anything is sent and the reason is said in words.
Exports use the same exact grid as a download (``crs`` + ``crsTransform`` + ``dimensions``),
so an exported composite lines up pixel for pixel with a downloaded one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CancelledError, GeedlError
from ..progress import Feedback
from ..recipe import CompositeRecipe
from .query import check_crs_code, normalise_geometry, projected_bounds, utm_crs_for
from .tiling import DEFAULT_TILE_SIZE, Grid, dtype_bytes, grid_for_bounds, plan_tiles

DOWNLOAD_LIMIT_BYTES = 4 * 1024 ** 3  # uncompressed pixels; above this, export
DOWNLOAD_LIMIT_TILES = 4000
DESTINATIONS = ("drive", "gcs", "asset")
TABLE_FORMATS = ("GeoJSON", "SHP", "KML", "KMZ", "CSV")
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
EXPORT_FILL = -3.0e38  # masked pixels of float exports (GeoTIFF noData; NaN is not valid JSON)


@dataclass(frozen=True)
class Decision:
    mode: str  # "download" or "export"
    reason: str
    total_bytes: int
    tiles: int
    grid: Grid

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reason": self.reason, "total_bytes": self.total_bytes,
                "tiles": self.tiles, "grid": self.grid.to_dict()}


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return f"{n:.1f} TB"  # pragma: no cover


def decide_download_or_export(region: Any, recipe: CompositeRecipe, n_bands: int | None = None,
                              crs: str | None = None, tile_size: int = DEFAULT_TILE_SIZE,
                              limit_bytes: int = DOWNLOAD_LIMIT_BYTES,
                              limit_tiles: int = DOWNLOAD_LIMIT_TILES) -> Decision:
    """Download when the grid is small enough to fetch tile by tile, else export; says why."""
    region = normalise_geometry(region)
    crs = crs or (check_crs_code(recipe.crs) if recipe.crs else utm_crs_for(region))
    grid = grid_for_bounds(projected_bounds(region, crs), float(recipe.scale), crs)
    bands = n_bands if n_bands is not None else len(recipe.output_names)
    total = grid.pixels * bands * dtype_bytes(recipe.dtype)
    n_tiles = len(plan_tiles(grid, [f"b{i}" for i in range(bands)], recipe.dtype, tile_size).tiles) \
        if total <= limit_bytes else -1
    what = (f"{grid.width} x {grid.height} px x {bands} bands at {recipe.scale:g} m = "
            f"{_size(total)} uncompressed")
    if total > limit_bytes:
        return Decision("export", f"{what}, over the download limit of {_size(limit_bytes)}",
                        total, n_tiles, grid)
    if n_tiles > limit_tiles:
        return Decision("export", f"{what} in {n_tiles} requests, over {limit_tiles} requests",
                        total, n_tiles, grid)
    return Decision("download", f"{what} in {n_tiles} requests", total, n_tiles, grid)


# the composite the region step's size advice assumes: document 000's bands and indices at 10 m
ADVICE_RECIPE = CompositeRecipe(indices=["NDVI", "HUE"])


def region_size_advice(region_path: str | Path) -> dict[str, str]:
    """Download or Earth Engine export for the region file, in words (no network, no ``ee``):
    what the region step shows as soon as a region exists."""
    from ..region import region_geojson

    decision = decide_download_or_export(region_geojson(region_path), ADVICE_RECIPE)
    return {"mode": decision.mode, "reason": decision.reason}


def too_large_error(decision: Decision) -> GeedlError:
    return GeedlError(
        f"The region is too large to download: {decision.reason}. Export it with Earth Engine "
        "instead (add --export drive, --export gcs --bucket NAME or --export asset --asset-id "
        "ID), or use a coarser --scale, fewer bands or a smaller region.")


# -- exports ------------------------------------------------------------------------------------

@dataclass
class ExportTarget:
    """Where a batch export goes: Drive folder, Cloud Storage bucket or an Earth Engine asset."""

    destination: str = "drive"
    folder: str | None = None
    bucket: str | None = None
    asset_id: str | None = None
    file_prefix: str | None = None

    def __post_init__(self) -> None:
        self.destination = (self.destination or "").strip().lower()
        if self.destination not in DESTINATIONS:
            raise GeedlError(f"Export destination {self.destination!r}: use drive, gcs or asset.")
        if self.destination == "gcs" and not self.bucket:
            raise GeedlError("Exporting to Cloud Storage needs a bucket: add --bucket NAME.")
        if self.destination == "asset" and not self.asset_id:
            raise GeedlError("Exporting to an asset needs its id: add --asset-id "
                             "projects/YOUR-PROJECT/assets/NAME.")


@dataclass
class ExportTask:
    task_id: str
    description: str
    destination: str
    kind: str  # "image" or "table"

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "description": self.description,
                "destination": self.destination, "kind": self.kind}


def task_description(text: str) -> str:
    """Earth Engine task descriptions: at most 100 characters of a safe set."""
    clean = re.sub(r"[^A-Za-z0-9_.,:;-]+", "_", text or "geedl_export").strip("_")
    return (clean or "geedl_export")[:100]


def _ee() -> Any:
    from .connection import load_ee

    return load_ee()


def _start(task: Any, description: str, destination: str, kind: str) -> ExportTask:
    from .connection import translate_error

    try:
        task.start()
    except Exception as exc:  # noqa: BLE001
        raise translate_error(exc) from exc
    return ExportTask(task.id, description, destination, kind)


def export_image(image: Any, grid: Grid, description: str, target: ExportTarget,
                 dtype: str = "float32", max_pixels: float = 1e13) -> ExportTask:
    """Start an image export on ``grid`` (exactly the download grid) as a cloud-optimised GeoTIFF."""
    ee = _ee()
    description = task_description(description)
    common: dict[str, Any] = {
        "image": image, "description": description, "crs": grid.crs,
        "crsTransform": [grid.scale, 0, grid.x0, 0, -grid.scale, grid.y0],
        "dimensions": f"{grid.width}x{grid.height}", "maxPixels": int(max_pixels),
    }
    if target.destination == "asset":
        task = ee.batch.Export.image.toAsset(assetId=target.asset_id, **common)
    else:
        options: dict[str, Any] = {"cloudOptimized": True}
        if dtype.startswith("float"):
            options["noData"] = EXPORT_FILL
        files = {"fileNamePrefix": target.file_prefix or description, "fileFormat": "GeoTIFF",
                 "formatOptions": options}
        if target.destination == "drive":
            task = ee.batch.Export.image.toDrive(folder=target.folder, **files, **common)
        else:
            task = ee.batch.Export.image.toCloudStorage(bucket=target.bucket, **files, **common)
    return _start(task, description, target.destination, "image")


def export_table(polygons: Any, description: str, target: ExportTarget,
                 file_format: str = "GeoJSON") -> ExportTask:
    """Export label polygons (document 000's ``Export.table.toDrive``)."""
    ee = _ee()
    description = task_description(description)
    formats = {f.lower(): f for f in TABLE_FORMATS}
    if file_format.lower() not in formats:
        raise GeedlError(f"Table format {file_format!r}: use one of {', '.join(TABLE_FORMATS)}.")
    file_format = formats[file_format.lower()]
    prefix = target.file_prefix or description
    if target.destination == "drive":
        task = ee.batch.Export.table.toDrive(collection=polygons, description=description,
                                             folder=target.folder, fileNamePrefix=prefix,
                                             fileFormat=file_format)
    elif target.destination == "gcs":
        task = ee.batch.Export.table.toCloudStorage(collection=polygons, description=description,
                                                    bucket=target.bucket, fileNamePrefix=prefix,
                                                    fileFormat=file_format)
    else:
        task = ee.batch.Export.table.toAsset(collection=polygons, description=description,
                                             assetId=target.asset_id)
    return _start(task, description, target.destination, "table")


# -- task status --------------------------------------------------------------------------------

def task_status(task_id: str) -> dict[str, Any]:
    """State (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED...), progress 0-1, error, outputs."""
    ee = _ee()
    from .connection import translate_error

    project = ee.data._get_state().cloud_api_user_project
    name = task_id if task_id.startswith("projects/") else f"projects/{project}/operations/{task_id}"
    try:
        operation = ee.data.getOperation(name)
    except Exception as exc:  # noqa: BLE001
        raise translate_error(exc) from exc
    metadata = operation.get("metadata", {})
    state = metadata.get("state", "UNKNOWN")
    if operation.get("done") and state not in TERMINAL_STATES:
        state = "FAILED" if "error" in operation else "SUCCEEDED"
    return {"state": state, "progress": float(metadata.get("progress", 0.0) or 0.0),
            "error": operation.get("error", {}).get("message"),
            "destination_uris": metadata.get("destinationUris", []),
            "description": metadata.get("description")}


def poll_task(task_id: str, feedback: Feedback | None = None, interval_s: float = 10.0,
              timeout_s: float | None = None,
              status_fn: Callable[[str], dict[str, Any]] = task_status,
              sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Follow a task until it ends; progress goes to ``feedback``.

    A user cancel stops the watching, not the task (it keeps running in Earth Engine); a failed
    or cancelled task raises GeedlError with Earth Engine's reason.
    """
    feedback = feedback or Feedback()
    started = time.monotonic()
    while True:
        status = status_fn(task_id)
        state = status["state"]
        feedback.progress(100.0 * status["progress"], f"export {state.lower()}")
        if state == "SUCCEEDED":
            return status
        if state in ("FAILED", "CANCELLED"):
            raise GeedlError(f"Earth Engine export {task_id} {state.lower()}: "
                             f"{status.get('error') or 'no reason given'}.")
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            return status
        waited = 0.0
        while waited < interval_s:
            if feedback.cancelled():
                raise CancelledError(f"Stopped watching export {task_id}; it keeps running in "
                                     "Earth Engine (see https://code.earthengine.google.com/tasks).")
            step = min(0.5, interval_s - waited)
            sleep(step)
            waited += step


def cancel_task(task_id: str) -> None:
    ee = _ee()
    project = ee.data._get_state().cloud_api_user_project
    name = task_id if task_id.startswith("projects/") else f"projects/{project}/operations/{task_id}"
    ee.data.cancelOperation(name)
