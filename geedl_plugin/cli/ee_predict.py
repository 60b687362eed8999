"""``ee-predict``: run a pixel CNN inside Earth Engine and export the map (document 001).

Example::

    python -m geedl_plugin ee-predict --model pixelcnn.onnx --bbox 12.90,52.36,13.10,52.44,EPSG:4326 \\
        --start 2024-06-01 --end 2024-09-01 --export asset --asset-id projects/P/assets/water_2024

The model is compiled into Earth Engine image operations (convolutions, concatenations, slices,
argmax), applied to the composite its metadata's recipe describes (bands and indices; the
command's --collection, dates, cloud options choose the scenes), and the class map is exported
on the composite's grid as a batch task. ``--dry-run`` builds and prints everything offline.
"""

from __future__ import annotations

import argparse
import json

from . import add_progress_option, emit_result, feedback_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..core.earthengine.cli_support import add_gee_arguments

    parser = subparsers.add_parser(
        "ee-predict", help="run a pixel CNN inside Earth Engine and export the map (document 001)",
        description="Compile an ONNX pixel CNN into Earth Engine operations, apply it to a composite of "
                    "the model's bands in Earth Engine and export the class map as a batch task.")
    parser.add_argument("--model", required=True,
                        help="ONNX pixel CNN written by 'geedl train --model pixelcnn'")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", metavar="FILE", help="polygons (any CRS) of the area to map")
    where.add_argument("--bbox", metavar="W,S,E,N,EPSG:code", help="bounding box of the area to map")
    parser.add_argument("--probabilities", action="store_true", help="export class probabilities too")
    parser.add_argument("--mode", choices=("taps", "pairs"), default="taps",
                        help="convolutions as shifted copies + one matrix product per layer (taps, default) "
                             "or one ee.Kernel per channel pair as in document 001 (pairs)")
    add_gee_arguments(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _recipe(metadata) -> object:
    """The recipe stored with the model, else one made of its band names (bands + indices)."""
    from ..core.indices import resolve_index
    from ..core.recipe import CompositeRecipe
    from ..core.scenes import S2_BANDS

    if metadata.recipe:
        recipe = CompositeRecipe.from_dict(dict(metadata.recipe))
        recipe.scale = float(metadata.resolution)
        return recipe
    bands = [b for b in metadata.bands if b in S2_BANDS]
    indices = []
    for name in metadata.bands:
        if name not in S2_BANDS:
            resolve_index(name)  # raises a clear error for names that are neither bands nor indices
            indices.append(name)
    return CompositeRecipe(bands=bands or ["B2"], indices=indices, scale=float(metadata.resolution))


def run(args: argparse.Namespace) -> int:
    from ..core.earthengine.cli_support import export_target_from_args, query_from_args, region_from_args
    from ..core.earthengine.connection import initialize, offline_session, resolve_project, sign_in
    from ..core.earthengine.export import ExportTarget
    from ..core.errors import GeedlError
    from ..core.inference.ee_deploy import DeployParams, deploy_model
    from ..core.model_metadata import read_metadata

    feedback = feedback_from_args(args, "ee-predict")
    metadata = read_metadata(args.model)
    recipe = _recipe(metadata)
    query = query_from_args(args, region_from_args(args))
    target = export_target_from_args(args)
    if target is None:
        if not args.dry_run:
            raise GeedlError("Say where the map goes: --export asset --asset-id ID, --export drive [--folder "
                             "F] or --export gcs --bucket B (or --dry-run to only build the graph).")
        target = ExportTarget("drive")
    params = DeployParams(model=args.model, recipe=recipe, query=query, target=target,
                          description=args.description or "", probabilities=args.probabilities,
                          mode=args.mode, start=not args.dry_run)
    if args.dry_run:
        with offline_session():
            result = deploy_model(params, feedback)
            graph = json.loads(result.image.serialize(for_cloud_api=True))
        payload = {**result.as_dict(), "dry_run": True, "graph_values": len(graph["values"]),
                   "program": json.loads(result.program.to_json())}
    else:
        project = resolve_project(args.project)
        if args.sign_in:
            sign_in(project, feedback, timeout_s=args.auth_timeout)
        else:
            initialize(project)
        result = deploy_model(params, feedback)
        payload = result.as_dict()
    emit_result(args, payload)
    return 0
