"""``predict``: run a trained ONNX model over a composite of any size.

Example::

    python -m geedl_plugin predict --model model.onnx --image composite.tif --out prediction.tif \\
        --probabilities probabilities.tif --tile 512 --overlap 64 --batch 8

The model's metadata names its bands, normalisation, tile size and classes; the image's bands are
matched by name. Outputs are a paletted uint8 class GeoTIFF (255 = nodata) and, optionally, one
uint8 probability band per class (0-254 = 0-1).
"""

from __future__ import annotations

import argparse

from . import add_progress_option, emit_result, feedback_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="run an ONNX model over a composite (tiled, streamed, seamless)",
        description="Predict a class map (or regression values) from a composite GeoTIFF with a geedl "
        "ONNX model. Bands are matched by name; tiles overlap and are blended.",
    )
    parser.add_argument("--model", required=True, help="ONNX model written by 'geedl train'")
    parser.add_argument("--image", required=True, help="composite GeoTIFF with band descriptions")
    parser.add_argument("--out", required=True, help="output class GeoTIFF (regression: float32 values)")
    parser.add_argument(
        "--probabilities",
        default=None,
        metavar="TIF",
        help="also write per-class probabilities (uint8, 0-254 = 0-1, 255 nodata)",
    )
    parser.add_argument(
        "--probabilities-dtype",
        choices=("uint8", "float32"),
        default="uint8",
        help="probabilities as uint8 (default, small) or float32 (0-1, exact)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--region",
        metavar="FILE",
        help="predict only inside these polygons (GeoPackage, shapefile, GeoJSON; any CRS)",
    )
    where.add_argument(
        "--bbox",
        metavar="XMIN,YMIN,XMAX,YMAX[,EPSG:code]",
        help="predict only inside this box; without ',EPSG:code' it is in the image's CRS",
    )
    parser.add_argument("--tile", type=int, default=None, help="tile size in pixels (default: the model's)")
    parser.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="tile overlap in pixels (default: the model's); >= its receptive field "
        "makes tiled = whole-image prediction",
    )
    parser.add_argument("--batch", type=int, default=8, help="tiles per onnxruntime call (default 8)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA when onnxruntime has it, else CPU",
    )
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all CPUs)")
    parser.add_argument(
        "--resample",
        choices=("auto", "never"),
        default="auto",
        help="auto: read geographic or other-resolution rasters at the model's resolution "
        "in a projected CRS and write back on the input grid",
    )
    parser.add_argument(
        "--gdal-cache-mb",
        type=int,
        default=None,
        help="cap on GDAL's block cache during the run (default: what the tiles need)",
    )
    parser.add_argument(
        "--polygons",
        default=None,
        metavar="GPKG",
        help="also write the prediction as label polygons (source=model, confidence from the "
        "probabilities) for correction and retraining",
    )
    parser.add_argument(
        "--min-area", type=float, default=0.0, help="with --polygons: drop polygons smaller than this (m2)"
    )
    parser.add_argument(
        "--no-backup", action="store_true", help="replace existing outputs without keeping a .bak copy"
    )
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.inference import PredictParams, run_predict
    from ..core.region import region_from_args

    region = region_from_args(args.region, args.bbox)
    params = PredictParams(
        model=args.model,
        image=args.image,
        out=args.out,
        probabilities=args.probabilities,
        probabilities_dtype=args.probabilities_dtype,
        region=region,
        tile=args.tile,
        overlap=args.overlap,
        batch=args.batch,
        device=args.device,
        threads=args.threads,
        resample=args.resample,
        gdal_cache_mb=args.gdal_cache_mb,
        backup_existing=not args.no_backup,
    )
    feedback = feedback_from_args(args, "predict")
    result = run_predict(params, feedback)
    payload = result.as_dict()
    if args.polygons:
        from ..core.inference.vectorize import VectorizeParams, vectorize_prediction

        options = VectorizeParams(prediction=args.out, out_vector=args.polygons,
                                  probabilities=args.probabilities, min_area_m2=args.min_area)
        summary = vectorize_prediction(options, feedback).summary()
        payload.update({"polygons" if k == "vector" else f"polygons_{k}": v for k, v in summary.items()})
    emit_result(args, payload)
    return 0
