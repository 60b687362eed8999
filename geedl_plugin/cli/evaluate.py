"""``evaluate``: score a predicted class map against reference labels.

Example (the Brandenburg sample's OpenStreetMap polygons as truth)::

    python -m geedl_plugin evaluate --prediction prediction.tif --truth osm_landuse.gpkg \\
        --class-field fclass --out-errors errors.tif --json metrics.json --class-of-interest water

Prints per-class IoU, precision, recall and F1, overall accuracy and the confusion matrix;
writes a paletted error map (correct / false positive / false negative) and the metrics as JSON.
"""

from __future__ import annotations

import argparse

from . import add_progress_option, emit_result, feedback_from_args


def _pairs(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    from ..core.errors import GeedlError

    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise GeedlError(f"--class-map entry {item!r} must be truth=prediction (e.g. meadow=grass).")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a prediction against truth (IoU, precision, recall, F1, error map)",
        description="Compare a class map from 'geedl predict' with a truth class raster or label polygons.")
    parser.add_argument("--prediction", required=True, help="class GeoTIFF written by 'geedl predict'")
    parser.add_argument("--truth", required=True,
                        help="truth class raster (any grid) or polygons (.gpkg, .shp ...)")
    parser.add_argument("--class-field", default="class_id",
                        help="field of the truth polygons holding the class (default class_id; OSM: fclass)")
    parser.add_argument("--class-map", default=None, metavar="TRUTH=PRED,...",
                        help="truth class names mapped onto prediction class names, e.g. meadow=grass")
    parser.add_argument("--layer", default=None, help="layer of a multi-layer truth file")
    parser.add_argument("--class-of-interest", default=None,
                        help="class (name or id) whose false positives/negatives the error map shows")
    parser.add_argument("--out-errors", default=None, metavar="TIF", help="write the error map here")
    parser.add_argument("--json", default=None, metavar="JSON", help="write the metrics here")
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.inference.evaluate import EvaluateParams, evaluate, format_table

    params = EvaluateParams(prediction=args.prediction, truth=args.truth, class_field=args.class_field,
                            class_map=_pairs(args.class_map), out_errors=args.out_errors, json_path=args.json,
                            class_of_interest=args.class_of_interest, layer=args.layer)
    result = evaluate(params, feedback_from_args(args, "evaluate"))
    if getattr(args, "progress", "text") != "jsonl":
        print(format_table(result.metrics))
    emit_result(args, result.summary())
    return 0
