"""``regress``: train a U-Net on a continuous target raster (document 004's regression network).

Example (predict SWIR B12 from the visible and NIR bands)::

    python -m geedl_plugin regress --image inputs.tif --target b12.tif --out b12.onnx \\
        --target-nodata 65535 --epochs 15 --predict other_area.tif --predict-out b12_pred.tif

The model is an ONNX file with ``model_type`` regression and the target's scaling in its
metadata; ``--predict`` runs it over an image with the inference runner and styles the float
GeoTIFF with a colour ramp (``.qml`` beside it). Metrics (MAE, RMSE, R2, and the same for
predicting the training mean) are printed and saved in ``<out>.metrics.json``. A checkpoint
(``<out>.ckpt``) is written after every epoch; SIGTERM/SIGINT stops between two steps and
``--resume <out>.ckpt`` continues. ``--progress jsonl`` prints the same records as ``train``.
"""

from __future__ import annotations

import argparse

from ..core.errors import GeedlError
from . import add_progress_option, emit_result
from .training_io import training_io


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "regress",
        help="train a regression U-Net on a continuous target raster (values, not classes)",
        description="Train a U-Net that predicts a continuous value per pixel (canopy height, an index, "
        "another band) from a composite; nodata in the target is left out of loss and metrics.",
    )
    parser.add_argument("--image", required=True, help="composite GeoTIFF (band descriptions = band names)")
    parser.add_argument("--target", required=True, help="target raster (any grid/CRS: warped onto the image)")
    parser.add_argument("--out", required=True, help="output model (.onnx)")
    parser.add_argument("--target-band", type=int, default=1, help="band of the target raster (default 1)")
    parser.add_argument(
        "--target-nodata", type=float, help="target nodata value when the file does not declare it"
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chip-size", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3, help="U-Net levels")
    parser.add_argument("--width", type=int, default=16, help="U-Net first-level channels")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    parser.add_argument("--block-size", type=int, default=64, help="validation block side in pixels")
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--val-split", choices=("blocks", "none"), default="blocks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resume", help="checkpoint (.ckpt) of an interrupted run to continue from")
    parser.add_argument("--predict", metavar="IMAGE", help="after training, predict this image")
    parser.add_argument("--predict-out", metavar="TIF", help="where to write the prediction (float32)")
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.training.regression import RegressionSettings, train_regression

    if bool(args.predict) != bool(args.predict_out):
        raise GeedlError("--predict and --predict-out go together (the image and the output file).")
    feedback, records = training_io(args)
    settings = RegressionSettings(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        chip_size=args.chip_size,
        depth=args.depth,
        width=args.width,
        learning_rate=args.lr,
        block_size=args.block_size,
        val_fraction=args.val_fraction,
        val_split=args.val_split,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        target_nodata=args.target_nodata,
        target_band=args.target_band,
        resume=args.resume,
    )
    result = train_regression(args.image, args.target, args.out, settings, feedback, on_record=records)
    payload = result.summary()
    if args.predict:
        from ..core.inference import PredictParams, run_predict
        from ..core.ramp import write_ramp_style

        run_predict(
            PredictParams(model=args.out, image=args.predict, out=args.predict_out, threads=args.threads),
            feedback,
        )
        payload["prediction"] = {"path": args.predict_out, **write_ramp_style(args.predict_out)}
    emit_result(args, payload)
    return 0
