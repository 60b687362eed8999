"""``train``: train (or resume, or fine-tune) a model and export it to ONNX with its metadata.

    python -m geedl_plugin train --model unet --image composite.tif --labels labels.gpkg \\
        --class-field fclass --classes water,farm,forest --other-class other --epochs 30 \\
        --out model.onnx [--progress jsonl]

Writes ``model.onnx``, ``model.ckpt`` (checkpoint, every epoch), ``model.metrics.json`` and
``model.comparison.png``. ``--progress jsonl`` prints one JSON object per line (what the QGIS
background task reads from this subprocess):

- ``{"type": "message", "message": ...}``;
- ``{"type": "progress", "phase": "train", "epoch", "epochs", "step", "steps", "batch",
  "batches", "loss", "percent", "eta_s", "message"}`` at most once a second, and after every
  epoch ``{"type": "progress", "phase": "epoch_end", ..., "val": {"overall_accuracy",
  "mean_iou", "mean_f1", "iou": {class: v}, "f1": {class: v}}, "val_loss", "best_epoch",
  "checkpoint"}`` (``step`` is the optimisation step counted over the whole run); a resumed
  run first repeats the ``epoch_end`` records of the epochs before it, marked ``"replayed": true``,
  so a plot of the run starts at epoch 1;
- at the end ``{"type": "result", "model", "checkpoint", "metrics_json", "comparison_png",
  "metrics", "epochs_run", "best_epoch", "stopped_early", "train_seconds", ...}``;
- or ``{"type": "error"|"cancelled", "message"}`` (exit status 2 or 3).

SIGTERM or SIGINT stops training between two steps (exit status 3); the last epoch's
checkpoint stays valid, so ``--resume model.ckpt`` continues from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import GeedlError
from ..core.training.settings import AUGMENTATIONS, BALANCE_MODES, KEEP_MODES, LOSSES, VAL_SPLITS
from . import add_progress_option, emit_result
from .training_io import training_io

MODEL_CHOICES = ("unet", "pixelcnn", "temporal", "segnet")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on an image and labels, export ONNX with metadata",
        description="Train a U-Net, pixel CNN, temporal CNN or SegNet on a composite and labels "
        "(polygons, a label raster or a chips manifest); export it to ONNX.",
    )
    parser.add_argument("--model", choices=MODEL_CHOICES, default="unet")
    parser.add_argument("--image", help="composite GeoTIFF (not needed with a chips manifest)")
    parser.add_argument(
        "--labels",
        required=True,
        help="label polygons (gpkg, shp, geojson), a label raster (tif) or chips_manifest.json",
    )
    parser.add_argument("--out", required=True, help="output model (.onnx)")
    parser.add_argument("--class-field", help="attribute holding the class of each polygon (e.g. fclass)")
    parser.add_argument(
        "--classes", help="comma-separated classes to keep, in order (e.g. water,farm,forest)"
    )
    parser.add_argument("--other-class", help="name of a class for every other labelled value (e.g. other)")
    parser.add_argument(
        "--inward-buffer",
        type=float,
        default=0.0,
        help="shrink polygons by this many metres before rasterizing (confident labels only)",
    )
    parser.add_argument("--time-steps", type=int, help="dates stacked in the image (temporal model)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--chip-size", type=int, help="training window in pixels (unet 64, pixelcnn 7)")
    parser.add_argument("--samples-per-epoch", type=int)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (1e-3; 3e-4 when fine-tuning)")
    parser.add_argument("--patience", type=int, default=6, help="epochs without improvement before stopping")
    parser.add_argument(
        "--keep",
        choices=KEEP_MODES,
        default="best",
        help="weights to keep: the epoch that scores best on the validation blocks (stopping early), or "
        "the last epoch (no early stopping; the validation scores are then an unbiased held-out estimate)",
    )
    parser.add_argument(
        "--loss",
        choices=LOSSES,
        default="auto",
        help="training loss: cross-entropy (ce), or cross-entropy plus the Lovász-softmax term that "
        "optimises IoU (ce+lovasz); auto = ce+lovasz for the U-Net, ce for the other models",
    )
    parser.add_argument(
        "--tune-threshold",
        metavar="CLASS",
        help="after training, choose on the training pixels the probability at which this class is "
        "called (e.g. water, where labels are drawn generously); stored in the model and applied by "
        "predict",
    )
    parser.add_argument("--val-split", choices=VAL_SPLITS, default="blocks")
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--block-size", type=int, default=128, help="validation block side in pixels")
    parser.add_argument(
        "--balance",
        choices=BALANCE_MODES,
        default="auto",
        help="class balancing: weighted loss, balanced chip sampling, both, none; auto = weights only "
        "when a class has under 2%% of the labels",
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="all",
        help="chip augmentation: all = quarter turns and mirrors; mirror = left-right mirrors only, so "
        "north stays up (when direction matters: shadows); none",
    )
    parser.add_argument("--no-augment", action="store_true", help="the same as --augment none")
    parser.add_argument("--depth", type=int, help="U-Net/SegNet levels")
    parser.add_argument("--width", type=int, help="U-Net/SegNet first-level channels; temporal width")
    parser.add_argument("--pooling", choices=("flatten", "attention", "mean"), help="temporal pooling")
    parser.add_argument("--tile-size", type=int, default=256, help="inference tile size stored in the model")
    parser.add_argument("--pretrained-encoder", help="checkpoint whose U-Net encoder to start from")
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--resume", help="checkpoint (.ckpt) to continue from")
    parser.add_argument("--checkpoint", help="checkpoint path (default: beside --out, .ckpt)")
    parser.add_argument(
        "--finetune-from", help="model (.onnx with its .ckpt beside it) or .ckpt to fine-tune"
    )
    parser.add_argument(
        "--head-only",
        action="store_true",
        help="with --finetune-from: retrain only the head on the corrected labels (seconds)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all available)")
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _class_spec(args: argparse.Namespace):
    from ..core.training import ClassSpec

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    return ClassSpec(
        class_field=args.class_field,
        classes=classes,
        other_class=args.other_class,
        inward_buffer_m=float(args.inward_buffer),
    )


def _finetune_defaults(args: argparse.Namespace, spec):
    """Fine-tuning keeps the model's class list: take it (and the class field) from its checkpoint."""
    from ..core.training.checkpoint import checkpoint_for, load_checkpoint

    state = load_checkpoint(checkpoint_for(args.finetune_from))
    source = state.get("source", {}) or {}
    if not spec.classes:
        other = source.get("other_class")
        spec.classes = [c for c in state["class_names"] if c != other]
        spec.other_class = other
    if not spec.class_field:
        spec.class_field = source.get("class_field")
    return state


def run(args: argparse.Namespace) -> int:
    from ..core.atomic import check_writable
    from ..core.training import TrainSettings, load_training_data

    feedback, records = training_io(args)
    spec = _class_spec(args)
    model = args.model
    if args.finetune_from:
        state = _finetune_defaults(args, spec)
        model = state["model_spec"]["name"]
    options = {}
    if args.depth is not None:
        options["depth"] = args.depth
    if args.width is not None:
        options["width"] = args.width
    if args.pooling is not None:
        options["pooling"] = args.pooling
    if model not in ("unet", "segnet"):
        options.pop("depth", None)
        if model == "pixelcnn":
            options.pop("width", None)
    learning_rate = (
        args.lr if args.lr is not None else (3e-4 if args.finetune_from and not args.head_only else 1e-3)
    )
    settings = TrainSettings(
        model=model,
        model_options=options,
        epochs=args.epochs,
        batch_size=args.batch_size,
        chip_size=args.chip_size,
        samples_per_epoch=args.samples_per_epoch,
        learning_rate=learning_rate,
        patience=args.patience,
        keep=args.keep,
        loss=args.loss,
        tune_threshold=args.tune_threshold,
        val_split=args.val_split,
        val_fraction=args.val_fraction,
        block_size=args.block_size,
        balance=args.balance,
        augment="none" if args.no_augment else args.augment,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        tile_size=args.tile_size,
        pretrained_encoder=args.pretrained_encoder,
        freeze_encoder=args.freeze_encoder,
        resume=args.resume,
        checkpoint=args.checkpoint,
        finetune_from=args.finetune_from,
        head_only=args.head_only,
    )
    if Path(args.out).suffix.lower() != ".onnx":
        raise GeedlError(f"The model output {Path(args.out).name} should end in .onnx.")
    check_writable(args.out)
    if args.image is None and not str(args.labels).lower().endswith(".json"):
        raise GeedlError("Give the image the labels belong to with --image composite.tif.")
    data = load_training_data(args.image, args.labels, spec, time_steps=args.time_steps, feedback=feedback)
    from ..core.training.trainer import train_on_data  # torch loads here, after the inputs passed

    result = train_on_data(data, settings, Path(args.out), feedback=feedback, on_record=records)
    emit_result(args, result.summary())
    return 0
