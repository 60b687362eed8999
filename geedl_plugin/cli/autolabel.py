"""``autolabel`` and ``polygonize``: rule-based label masks and label polygons.

Examples (document 000's crop rule, a water rule, any expression)::

    python -m geedl_plugin autolabel --composite composite.tif --rule crop --out-mask crop.tif \\
        --out-vector crop.gpkg --min-area 3000
    python -m geedl_plugin autolabel --composite composite.tif --rule water --threshold 0.1 \\
        --threshold method=ndwi --out-mask water.tif --out-vector water.shp
    python -m geedl_plugin autolabel --composite composite.tif --rule "NDVI > 0.3 && B11 < 2000" \\
        --out-mask veg.tif
    python -m geedl_plugin polygonize --mask crop.tif --out-vector crop.gpkg --geometry bbox

``--rule`` is ``crop``, ``soil``, ``crop+soil``, ``water``, a rule-set JSON file, or an Earth
Engine expression. ``--threshold`` sets the rule's main threshold (a bare number: NDVI for crop,
the index threshold for water) or a named one (``hue=-0.1``, ``ndvi=0.2``, ``method=ndwi``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import GeedlError
from . import add_progress_option, emit_result, feedback_from_args


def parse_thresholds(values: list[str]) -> dict[str, Any]:
    """``["0.2", "hue=-0.1", "method=ndwi"]`` -> ``{"threshold": 0.2, "hue": -0.1, "method": "ndwi"}``."""
    out: dict[str, Any] = {}
    for text in values or []:
        key, sep, value = text.partition("=")
        if not sep:
            key, value = "threshold", text
        key, value = key.strip(), value.strip()
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def add_polygon_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--out-vector",
        required=required,
        metavar="labels.gpkg|labels.shp",
        help="label polygons: GeoPackage (default format) or shapefile",
    )
    parser.add_argument(
        "--min-area",
        type=float,
        default=3000.0,
        help="drop polygons smaller than this many m² (default 3000, document 000)",
    )
    parser.add_argument(
        "--geometry",
        choices=("polygon", "bbox"),
        default="polygon",
        help="outlines (default) or bounding boxes",
    )
    parser.add_argument(
        "--connectedness",
        type=int,
        choices=(4, 8),
        default=4,
        help="4 (default) or 8 (diagonal pixels join, like Earth Engine)",
    )
    parser.add_argument(
        "--simplify",
        type=float,
        default=0.0,
        metavar="M",
        help="simplify outlines with this tolerance in metres",
    )
    parser.add_argument(
        "--fill-holes", type=float, default=0.0, metavar="M2", help="fill holes smaller than this many m²"
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="class ids to vectorise, comma separated (default: all but the background)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "autolabel",
        help="rule-based label mask (crop, water, expression) and optional polygons",
        description="Apply a labelling rule to a composite: a uint8 mask (255 = ignore) with legend, "
        "and optionally label polygons with area statistics.",
    )
    parser.add_argument("--composite", required=True, help="composite GeoTIFF (band names as descriptions)")
    parser.add_argument(
        "--rule",
        default="crop",
        help="crop | soil | crop+soil | water | rules.json | an expression such as "
        '"NDVI > 0.3 && B11 < 2000" (default crop)',
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[NAME=]VALUE",
        help="rule threshold; repeatable: 0.1, hue=-0.1, ndvi=0.2, method=ndwi",
    )
    parser.add_argument("--name", default=None, help="class name for an expression rule (default positive)")
    parser.add_argument("--out-mask", required=True, help="output mask GeoTIFF")
    parser.add_argument("--block-size", type=int, default=1024, help="processing window in pixels")
    add_polygon_options(parser, required=False)
    add_progress_option(parser)
    parser.set_defaults(func=run_autolabel_cli)

    poly = subparsers.add_parser(
        "polygonize",
        help="class mask -> label polygons (areas in m², statistics, QGIS style)",
        description="Vectorise a class mask into label polygons with the geedl label schema.",
    )
    poly.add_argument("--mask", required=True, help="class mask GeoTIFF (autolabel, rasterize or denoise)")
    add_polygon_options(poly, required=True)
    poly.add_argument(
        "--source",
        default="auto",
        choices=("auto", "manual", "corrected", "model"),
        help="value of the 'source' field (default auto)",
    )
    add_progress_option(poly)
    poly.set_defaults(func=run_polygonize_cli)


def _classes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise GeedlError(f"--classes {text!r} must be class ids such as 1,2") from exc


def _polygon_params(args: argparse.Namespace, mask: str, source: str = "auto"):
    from ..core.labels.polygons import PolygonizeParams

    return PolygonizeParams(
        mask=mask,
        out_vector=args.out_vector,
        classes=_classes(args.classes),
        min_area_m2=args.min_area,
        geometry=args.geometry,
        connectedness=args.connectedness,
        simplify_m=args.simplify,
        fill_holes_m2=args.fill_holes,
        source=source,
    )


def run_autolabel_cli(args: argparse.Namespace) -> int:
    from ..core.atomic import check_writable
    from ..core.labels.polygons import run_polygonize
    from ..core.labels.rules import AutolabelParams, run_autolabel

    feedback = feedback_from_args(args, "autolabel")
    params = parse_thresholds(args.threshold)
    if args.name:
        params["name"] = args.name
    if args.out_vector:
        from ..core.labels.schema import driver_for

        driver_for(args.out_vector)
        check_writable(args.out_vector)
    mask = run_autolabel(
        AutolabelParams(args.composite, args.out_mask, args.rule, params, args.block_size),
        feedback.sub(0, 50) if args.out_vector else feedback,
    )
    payload = mask.summary()
    if args.out_vector:
        result = run_polygonize(_polygon_params(args, str(mask.path)), feedback.sub(50, 100))
        payload.update(result.summary())
    emit_result(args, payload)
    return 0


def run_polygonize_cli(args: argparse.Namespace) -> int:
    from ..core.labels.polygons import run_polygonize

    feedback = feedback_from_args(args, "polygonize")
    result = run_polygonize(_polygon_params(args, args.mask, args.source), feedback)
    emit_result(args, result.summary())
    return 0
