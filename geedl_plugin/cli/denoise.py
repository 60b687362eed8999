"""``denoise``: label-noise correction of a rule mask (document 001).

Example::

    python -m geedl_plugin denoise --composite composite.tif --mask water.tif \\
        --out-mask water_corrected.tif [--out-changes water_changes.tif] [--method mlp|cnn]

A model learns from balanced samples of the noisy mask using the bands the rule did not read,
and relabels pixels where it confidently disagrees (see ``geedl_plugin.core.labels.noise``).
"""

from __future__ import annotations

import argparse

from . import add_progress_option, emit_result, feedback_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "denoise",
        help="correct a noisy label mask with a pixel classifier (document 001)",
        description="Relabel pixels of a rule mask where a model trained on the mask confidently disagrees.",
    )
    parser.add_argument("--composite", required=True, help="composite the mask was made from")
    parser.add_argument("--mask", required=True, help="noisy class mask (e.g. from autolabel)")
    parser.add_argument("--out-mask", required=True, help="corrected mask GeoTIFF")
    parser.add_argument("--out-changes", default=None, help="change map (default <out-mask>_changes.tif)")
    parser.add_argument(
        "--method",
        choices=("mlp", "cnn"),
        default="mlp",
        help="mlp (centre pixel, default, measured better here) or cnn (document 001's 7x7 pixel CNN)",
    )
    parser.add_argument(
        "--features",
        default=None,
        help="bands the model sees, comma separated (default: those the rule did not read)",
    )
    parser.add_argument("--all-bands", action="store_true", help="let the model see the rule's bands too")
    parser.add_argument("--samples", type=int, default=2000, help="training samples per class (default 2000)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.6,
        help="relabel only where the model is at least this sure (default 0.6)",
    )
    parser.add_argument(
        "--no-prior-correction",
        action="store_true",
        help="decide with the balanced-training posteriors (inflates rare classes)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for prediction (1 or 2)")
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.labels.noise import DenoiseParams, run_denoise

    feedback = feedback_from_args(args, "denoise")
    features = [b.strip() for b in args.features.split(",") if b.strip()] if args.features else None
    params = DenoiseParams(
        composite=args.composite,
        mask=args.mask,
        out_mask=args.out_mask,
        out_changes=args.out_changes,
        method=args.method,
        features=features,
        exclude_rule_bands=not args.all_bands,
        samples_per_class=args.samples,
        epochs=args.epochs,
        confidence=args.confidence,
        prior_correction=not args.no_prior_correction,
        seed=args.seed,
        threads=args.threads,
    )
    result = run_denoise(params, feedback)
    emit_result(args, result.summary())
    return 0
