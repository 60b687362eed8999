"""``composite --source gee``: the Earth Engine half of the composite command.

Contract with ``geedl_plugin/cli/composite.py``:

* ``add_gee_arguments(parser_or_group)`` adds the Earth Engine options that the composite
  command does not define itself (it already has --start, --end, --collection, --max-cloud,
  --project, --dry-run). Importing this module never imports earthengine-api, so ``--help``
  works without it.
* ``run_gee_composite(args, feedback)`` runs the command and prints its result itself
  (``emit_result``); it returns the exit code (0). It reads from ``args``: region, bbox, bands,
  indices, index, reducer, percentile, scale, crs, dtype, out, progress, no_backup and the
  options added here.

Everything that can be checked without the network is checked first: recipe, dates,
collection and bands, cloud mask, region, output path, and whether the region is small enough
to download (else the message offers ``--export``).

``--dry-run`` needs no account and no network: it initialises earthengine-api offline, exactly
as the library's own unit tests do (``connection.offline_session``), builds the same graph a
real run sends and prints it with the scene query, the grid and the download plan as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import GeedlError
from ..progress import Feedback
from .catalog import CLOUD_MASKS, COLLECTIONS, DEFAULT_CS_THRESHOLD
from .query import SceneQuery, normalise_geometry, parse_time_step, time_windows
from .tiling import DEFAULT_TILE_SIZE, MAX_SIDE

DEFAULT_WORKERS = 4


def _has(container: Any, flag: str) -> bool:
    return flag in getattr(container, "_option_string_actions", {})


def add_gee_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Add the Earth Engine options (skipping any the caller already defines)."""

    def add(*flags: str, **kwargs: Any) -> None:
        if not any(_has(parser, flag) for flag in flags):
            parser.add_argument(*flags, **kwargs)

    collections = ", ".join(f"{key} ({spec.asset_id})" for key, spec in COLLECTIONS.items())
    if _has(parser, "--collection") and getattr(parser, "conflict_handler", "") == "resolve":
        parser.add_argument("--collection", default="S2", help=f"collection: {collections}; "
                            "Landsat bands are renamed B2,B3,B4,B8,B11,B12 (default S2)")
    add("--start", help="first date, YYYY-MM-DD")
    add("--end", help="end date (exclusive, as Earth Engine's filterDate), YYYY-MM-DD")
    add("--collection", default="S2", help=f"collection: {collections} (default S2)")
    add("--max-cloud", type=float, default=1.0,
        help="maximum scene cloud percentage (document 000: 1); negative = no filter")
    add("--project", default=None,
        help="Google Cloud project id for Earth Engine (or GEEDL_EE_PROJECT / EE_PROJECT)")
    add("--dry-run", action="store_true",
        help="print the scene query and the expression graph as JSON; no account or network needed")
    add("--cloud-mask", default="auto", choices=CLOUD_MASKS,
        help="per-pixel cloud mask: auto (Cloud Score+ for Sentinel-2, QA_PIXEL for Landsat), "
             "qa60, csplus, scl (S2_SR), qa_pixel (Landsat) or none")
    add("--cs-threshold", type=float, default=DEFAULT_CS_THRESHOLD,
        help="Cloud Score+ clear threshold (default 0.6)")
    add("--time-step", default=None, metavar="month|Nd",
        help="a time stack instead of one composite: one per month or per N days (bands B4_2024_01)")
    add("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
        help=f"download tile size in pixels (default {DEFAULT_TILE_SIZE}, as document 001)")
    add("--workers", type=int, default=DEFAULT_WORKERS, help="parallel download requests (default 4)")
    add("--tiles-dir", default=None, help="where tiles are kept while downloading (default beside --out)")
    add("--keep-tiles", action="store_true", help="keep the tile folder after stitching")
    add("--download-limit-gb", type=float, default=4.0,
        help="regions larger than this (uncompressed) must be exported (default 4)")
    add("--export", choices=("drive", "gcs", "asset"), default=None,
        help="start an Earth Engine batch export instead of downloading")
    add("--folder", default=None, help="Drive folder for --export drive")
    add("--bucket", default=None, help="Cloud Storage bucket for --export gcs")
    add("--asset-id", default=None, help="asset id for --export asset")
    add("--description", default=None, help="export task name (default: the output file name)")
    add("--no-wait", action="store_true", help="start the export and return without polling it")
    add("--sign-in", action="store_true",
        help="open the browser sign-in when no valid Earth Engine sign-in is stored")
    add("--auth-timeout", type=float, default=300.0, help="give up the browser sign-in after this (s)")


# -- from arguments to objects ------------------------------------------------------------------

def _arg(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    value = getattr(args, name, default)
    return default if value is None else value


def recipe_from_args(args: argparse.Namespace) -> Any:
    from ...cli.composite import build_recipe  # the composite command's shared recipe builder

    return build_recipe(args)


def region_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The region as GeoJSON in EPSG:4326 from --region FILE or --bbox ...,EPSG:code."""
    from ..raster_io import srs_from_user
    from ..region import region_from_args as core_region

    region = core_region(getattr(args, "region", None), getattr(args, "bbox", None))
    if region is None:
        raise GeedlError("--source gee needs an area: --region FILE (polygons, any CRS) or --bbox "
                         "WEST,SOUTH,EAST,NORTH,EPSG:4326.")
    if region.srs is None:
        raise GeedlError("With --source gee there are no scenes to take the bbox's CRS from: write it "
                         "out, e.g. --bbox 12.55,52.47,12.65,52.51,EPSG:4326.")
    geometry = region.in_crs(srs_from_user("EPSG:4326"))
    return normalise_geometry(json.loads(geometry.ExportToJson()))


def query_from_args(args: argparse.Namespace, region: dict[str, Any]) -> SceneQuery:
    if not getattr(args, "start", None) or not getattr(args, "end", None):
        raise GeedlError("--source gee needs --start and --end dates (YYYY-MM-DD; the end is "
                         "exclusive), e.g. --start 2024-01-01 --end 2024-01-30.")
    max_cloud = getattr(args, "max_cloud", 1.0)
    return SceneQuery(region=region, start=args.start, end=args.end,
                      collection=_arg(args, "collection", "S2"),
                      max_cloud=None if max_cloud is None or max_cloud < 0 else max_cloud,
                      cloud_mask=_arg(args, "cloud_mask", "auto"),
                      cs_threshold=_arg(args, "cs_threshold", DEFAULT_CS_THRESHOLD))


def export_target_from_args(args: argparse.Namespace) -> Any:
    if not getattr(args, "export", None):
        return None
    from .export import ExportTarget

    return ExportTarget(args.export, folder=getattr(args, "folder", None),
                        bucket=getattr(args, "bucket", None), asset_id=getattr(args, "asset_id", None),
                        file_prefix=Path(args.out).stem if getattr(args, "out", None) else None)


def _print_json(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    if getattr(args, "progress", "text") == "jsonl":
        print(json.dumps({"type": "result", **payload}, default=str), flush=True)
    else:
        json.dump(payload, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        sys.stdout.flush()


# -- the command --------------------------------------------------------------------------------

def run_gee_composite(args: argparse.Namespace, feedback: Feedback) -> int:
    """Composite in Earth Engine: dry run, download (tiled) or batch export. Prints the result."""
    from ..atomic import check_writable
    from .export import DOWNLOAD_LIMIT_BYTES, decide_download_or_export, too_large_error

    recipe = recipe_from_args(args)
    region = region_from_args(args)
    query = query_from_args(args, region)
    query.spec.check_bands(recipe.required_bands)
    step = parse_time_step(getattr(args, "time_step", None))
    names = recipe.output_names
    if step is not None:
        labels = [label for _, _, label in time_windows(query.start_date, query.end_date, step)]
        names = [f"{name}_{label}" for label in labels for name in names]
    tile_size = int(_arg(args, "tile_size", DEFAULT_TILE_SIZE))
    if not 1 <= tile_size <= MAX_SIDE:
        raise GeedlError(f"--tile-size {tile_size} must be between 1 and {MAX_SIDE} pixels.")
    workers = int(_arg(args, "workers", DEFAULT_WORKERS))
    if not 1 <= workers <= 64:
        raise GeedlError(f"--workers {workers} must be between 1 and 64.")
    limit = _arg(args, "download_limit_gb", None)
    limit_bytes = int(limit * 1024 ** 3) if limit else DOWNLOAD_LIMIT_BYTES
    decision = decide_download_or_export(region, recipe, n_bands=len(names), tile_size=tile_size,
                                         limit_bytes=limit_bytes)
    target = export_target_from_args(args)
    if getattr(args, "dry_run", False):
        return _dry_run(args, recipe, query, step, decision, tile_size)
    if target is None:
        check_writable(args.out)
        if decision.mode == "export":
            raise too_large_error(decision)
    return _run_online(args, recipe, query, step, decision, target, tile_size, workers, feedback)


def _compile(recipe: Any, query: SceneQuery, step: str | int | None) -> Any:
    from .compile import compile_recipe, compile_time_stack

    return compile_recipe(recipe, query) if step is None else compile_time_stack(recipe, query, step)


def _dry_run(args: argparse.Namespace, recipe: Any, query: SceneQuery, step: str | int | None,
             decision: Any, tile_size: int) -> int:
    from .connection import offline_session
    from .tiling import plan_tiles

    with offline_session():
        from .collections import filtered_collection

        compiled = _compile(recipe, query, step)
        scene_graph = json.loads(filtered_collection(query).serialize(for_cloud_api=True))
        expression = json.loads(compiled.serialize())
        band_names = compiled.band_names
    plan = plan_tiles(decision.grid, band_names, recipe.dtype, tile_size)
    payload = {
        "dry_run": True,
        "note": "built offline (no account, no network): nothing was computed or downloaded",
        "query": query.describe(),
        "recipe": recipe.to_dict(),
        "time_step": step,
        "bands": band_names,
        "grid": decision.grid.to_dict(),
        "decision": decision.to_dict(),
        "plan": {"tiles": len(plan.tiles), "tile_size": plan.tile_size, "band_group": plan.band_group},
        "export": getattr(args, "export", None),
        "scene_query": scene_graph,
        "expression": expression,
    }
    _print_json(args, payload)
    return 0


def _run_online(args: argparse.Namespace, recipe: Any, query: SceneQuery, step: str | int | None,
                decision: Any, target: Any, tile_size: int, workers: int, feedback: Feedback) -> int:
    from ...cli import emit_result
    from ..atomic import backup
    from .collections import scene_summary
    from .compile import DOWNLOAD_FILL
    from .connection import initialize, resolve_project, sign_in
    from .download import download, ee_fetcher
    from .export import export_image, poll_task
    from .tiling import plan_tiles

    project = resolve_project(getattr(args, "project", None))
    feedback.progress(0, "connecting to Earth Engine")
    if getattr(args, "sign_in", False):
        sign_in(project, feedback, timeout_s=float(_arg(args, "auth_timeout", 300.0)))
    else:
        initialize(project)
    feedback.check_cancelled()
    summary = scene_summary(query)
    shown = ", ".join(summary["dates"][:12]) + (" ..." if len(summary["dates"]) > 12 else "")
    feedback.info(f"{summary['count']} {query.spec.key} scenes: {shown}")
    compiled = _compile(recipe, query, step)
    grid = decision.grid
    payload: dict[str, Any] = {"source": "gee", "project": project, "scenes": summary["count"],
                               "dates": summary["dates"], "bands": compiled.band_names,
                               "grid": grid.to_dict(), "decision": decision.reason}
    if target is not None:
        description = getattr(args, "description", None) or Path(args.out).stem
        task = export_image(compiled.image, grid, description, target, recipe.dtype)
        feedback.info(f"Export task {task.task_id} started ({target.destination}).")
        payload["export"] = task.to_dict()
        if not getattr(args, "no_wait", False):
            payload["status"] = poll_task(task.task_id, feedback)
        emit_result(args, payload)
        return 0
    plan = plan_tiles(grid, compiled.band_names, recipe.dtype, tile_size)
    out = Path(args.out)
    if out.exists() and not getattr(args, "no_backup", False):
        payload["backup"] = str(backup(out))
    source_id = hashlib.sha256(compiled.serialize().encode("utf-8")).hexdigest()
    metadata = compiled.metadata()
    metadata["GEEDL_SCENES"] = json.dumps([{"name": name, "date": date} for name, date in
                                           zip(summary["ids"], summary["scene_dates"])])
    result = download(plan, ee_fetcher(compiled.download_image()), out, metadata=metadata,
                      workers=workers, feedback=feedback, tiles_dir=getattr(args, "tiles_dir", None),
                      keep_tiles=bool(getattr(args, "keep_tiles", False)),
                      fill_value=DOWNLOAD_FILL[recipe.dtype], source_id=source_id)
    payload.update(result.to_dict())
    emit_result(args, payload)
    return 0
