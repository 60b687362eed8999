"""``rasterize``: label polygons (hand-corrected, OSM, ...) -> a class raster on a composite's grid.

Examples::

    python -m geedl_plugin rasterize --labels labels.gpkg --reference composite.tif --out labels.tif
    python -m geedl_plugin rasterize --labels osm.gpkg --class-field fclass \\
        --class-map water=1,farm=2 --inward-buffer 10 --reference composite.tif --out osm.tif

Pixels outside every polygon are 255 (ignore). A text field without ``--class-map`` is numbered
0, 1, ... in sorted order; values missing from a class map are ignored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import GeedlError
from . import add_progress_option, emit_result, feedback_from_args


def parse_class_map(text: str | None) -> dict[str, int] | None:
    """``water=1,farm=2``, a JSON object, or a JSON file -> ``{"water": 1, "farm": 2}``."""
    if not text:
        return None
    text = text.strip()
    try:
        if text.startswith("{"):
            data = json.loads(text)
        elif text.lower().endswith(".json"):
            data = json.loads(Path(text).expanduser().read_text())
        else:
            data = {}
            for part in text.split(","):
                key, sep, value = part.partition("=")
                if not sep:
                    raise ValueError(f"{part!r} has no '='")
                data[key.strip()] = int(value)
        return {str(k): int(v) for k, v in data.items()}
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise GeedlError(
            f"--class-map {text!r}: write it as value=id pairs (water=1,farm=2), a JSON object "
            f"or a .json file ({exc})."
        ) from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rasterize",
        help="label polygons -> class raster on a composite's exact grid (255 = ignore)",
        description="Burn a label layer into a uint8 class raster on the grid of a reference raster.",
    )
    parser.add_argument("--labels", required=True, help="label layer (GeoPackage, shapefile, ...; any CRS)")
    parser.add_argument("--layer", default=None, help="layer name inside the file (default: the first)")
    parser.add_argument("--reference", required=True, help="raster whose grid the output copies (composite)")
    parser.add_argument("--out", required=True, help="output class GeoTIFF")
    parser.add_argument(
        "--class-field", default="class_id", help="field holding the class (default class_id)"
    )
    parser.add_argument(
        "--class-map",
        default=None,
        metavar="VALUE=ID,...",
        help="map field values to class ids, e.g. water=1,farm=2 (or JSON)",
    )
    parser.add_argument(
        "--inward-buffer",
        type=float,
        default=0.0,
        metavar="M",
        help="shrink polygons by this many metres first (label confident interiors)",
    )
    parser.add_argument(
        "--overlap",
        choices=("ignore", "last"),
        default="ignore",
        help="pixels claimed by different classes: ignore (default) or the later feature",
    )
    parser.add_argument(
        "--no-backup", action="store_true", help="replace an existing output without a backup"
    )
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.labels.rasterize import RasterizeParams, run_rasterize

    feedback = feedback_from_args(args, "rasterize")
    params = RasterizeParams(
        vector=args.labels,
        reference=args.reference,
        out=args.out,
        class_field=args.class_field,
        class_map=parse_class_map(args.class_map),
        inward_buffer_m=args.inward_buffer,
        layer=args.layer,
        overlap=args.overlap,
        backup_existing=not args.no_backup,
    )
    result = run_rasterize(params, feedback)
    emit_result(args, result.summary())
    return 0
