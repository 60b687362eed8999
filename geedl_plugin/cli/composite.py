"""``composite``: a Sentinel-2 composite from scenes on disk (``--source local``) or Earth Engine.

Example (document 000's recipe on the Brandenburg sample)::

    python -m geedl_plugin composite --scenes <IMG_DATA folder> \\
        --bbox 12.55,52.47,12.65,52.51,EPSG:4326 --bands B2,B3,B4,B8,B11,B12 \\
        --indices NDVI,HUE --reducer max --out composite.tif --preview composite.png

A ``--bbox`` without ``,EPSG:code`` is in the scenes' CRS (nothing is guessed from the numbers).
"""

from __future__ import annotations

import argparse

from ..core.errors import GeedlError
from . import add_progress_option, emit_result, feedback_from_args


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "composite", help="build a multi-band composite (bands + indices, reduced over scenes)",
        description="Build a composite GeoTIFF (float32, band names as descriptions, NaN = no data) "
                    "from Sentinel-2 scenes on disk or from Earth Engine.",
        conflict_handler="resolve")
    parser.add_argument("--source", choices=("local", "gee"), default="local",
                        help="local scenes (default) or Google Earth Engine")
    parser.add_argument("--scenes", nargs="+", metavar="PATH", default=[],
                        help="SAFE folders, folders of band files (*_B02.jp2) or multi-band GeoTIFFs "
                             "with band descriptions; several scenes of one area make a stack")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", metavar="FILE",
                       help="polygons (GeoPackage, shapefile, GeoJSON; any CRS; all features unioned)")
    where.add_argument("--bbox", metavar="XMIN,YMIN,XMAX,YMAX[,EPSG:code]",
                       help="bounding box; without ',EPSG:code' it is in the scenes' CRS")
    parser.add_argument("--bands", default="B2,B3,B4,B8,B11,B12",
                        help="output bands (default: document 000's B2,B3,B4,B8,B11,B12)")
    parser.add_argument("--indices", default="",
                        help="indices: NDVI, HUE, NDWI, MNDWI, NBR or NAME=expression "
                             "(Earth Engine syntax), comma separated")
    parser.add_argument("--index", action="append", default=[], metavar="NAME=EXPR",
                        help="a user index whose expression contains commas, e.g. "
                             "'R=max(B4, B3)'; repeatable")
    parser.add_argument("--reducer", default="max",
                        choices=("max", "median", "mean", "min", "first", "percentile"),
                        help="how scenes are combined per pixel (default max, as in document 000)")
    parser.add_argument("--percentile", type=float, default=50.0, help="for --reducer percentile")
    parser.add_argument("--scale", type=float, default=10.0, help="pixel size in CRS units (default 10 m)")
    parser.add_argument("--crs", default=None, help="output CRS, e.g. EPSG:32633 (default: the scenes')")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64", "int16", "uint16"),
                        help="output data type (default float32)")
    parser.add_argument("--resampling", default="nearest",
                        choices=("nearest", "bilinear", "cubic", "average", "mode"),
                        help="for 20/60 m bands and reprojection (default nearest)")
    parser.add_argument("--block-size", type=int, default=1024, help="processing window in pixels")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: all CPUs)")
    parser.add_argument("--no-backup", action="store_true",
                        help="replace an existing output without keeping a .bak copy")
    parser.add_argument("--out", required=True, help="output GeoTIFF")
    parser.add_argument("--preview", default=None, metavar="PNG",
                        help="also write a false-colour B11/B8/B3 PNG preview")
    gee = parser.add_argument_group("Earth Engine (--source gee)")
    gee.add_argument("--start", help="first date, YYYY-MM-DD")
    gee.add_argument("--end", help="end date (exclusive), YYYY-MM-DD")
    gee.add_argument("--collection", default="S2", help="image collection (e.g. S2, S2_SR, LANDSAT)")
    gee.add_argument("--max-cloud", type=float, default=1.0,
                     help="maximum scene cloud percentage (document 000: 1)")
    gee.add_argument("--project", default=None, help="Google Cloud project for Earth Engine")
    gee.add_argument("--dry-run", action="store_true",
                     help="print the scene query and the expression graph as JSON, fetch nothing")
    _extend_for_gee(gee)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _extend_for_gee(group: argparse._ArgumentGroup) -> None:
    """Let the Earth Engine module add its own options, without importing earthengine-api."""
    try:
        from ..core.earthengine import cli_support
    except ImportError:
        return
    extend = getattr(cli_support, "add_gee_arguments", None)
    if extend is not None:
        extend(group)


def build_recipe(args: argparse.Namespace):
    """The engine-neutral recipe from the command line (shared with the Earth Engine source)."""
    from ..core.recipe import CompositeRecipe
    from ..core.scenes import normalize_band_name

    bands = [normalize_band_name(b) or b for b in _split(args.bands)]
    indices = _split(args.indices) + [i.strip() for i in args.index if i.strip()]
    return CompositeRecipe(bands=bands, indices=indices, reducer=args.reducer,
                           percentile=args.percentile, scale=args.scale, crs=args.crs, dtype=args.dtype)


def run(args: argparse.Namespace) -> int:
    feedback = feedback_from_args(args, "composite")
    if args.source == "gee":
        try:
            from ..core.earthengine.cli_support import run_gee_composite
        except ImportError as exc:
            raise GeedlError("Earth Engine support is not installed (geedl_plugin.core.earthengine or "
                             f"earthengine-api is missing: {exc}). Install earthengine-api "
                             "(make deps) or use --source local.") from exc
        return int(run_gee_composite(args, feedback) or 0)

    from ..core.composite import CompositeParams, build_composite
    from ..core.region import region_from_args

    if not args.scenes:
        raise GeedlError("--source local needs --scenes: SAFE folders, folders of band files or GeoTIFFs "
                         "(`python -m geedl_plugin samples` lists the sample scenes).")
    recipe = build_recipe(args)
    region = region_from_args(args.region, args.bbox)
    params = CompositeParams(scenes=list(args.scenes), recipe=recipe, out=args.out, region=region,
                             crs=args.crs, block_size=args.block_size, threads=args.threads,
                             resampling=args.resampling, backup_existing=not args.no_backup)
    if args.preview:
        from ..core.atomic import check_writable

        check_writable(args.preview)
    result = build_composite(params, feedback.sub(0, 95) if args.preview else feedback)
    payload = result.summary()
    if result.backup:
        payload["backup"] = str(result.backup)
    if args.preview:
        from ..core.preview import write_preview

        write_preview(result.path, args.preview, feedback=feedback)
        feedback.progress(100, "preview written")
        payload["preview"] = str(args.preview)
    emit_result(args, payload)
    return 0
