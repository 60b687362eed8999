"""``chips``: georeferenced GeoTIFF training chips (image + label) with a manifest.

Example::

    python -m geedl_plugin chips --image composite.tif --labels mask.tif --out-dir chips \\
        --size 256 --overlap 32 --min-labelled 0.05 --val-fraction 0.2

``--labels`` is a class raster on the image's grid or a label layer (rasterized first with
``--class-field`` / ``--class-map``). The manifest format is documented in
``geedl_plugin.core.labels.chips``.
"""

from __future__ import annotations

import argparse

from . import add_progress_option, emit_result, feedback_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chips",
        help="export image + label GeoTIFF chips with a manifest (train/val by spatial blocks)",
        description="Cut an image and its labels into georeferenced chips for training.",
    )
    parser.add_argument("--image", required=True, help="image (composite) GeoTIFF, any band count and type")
    parser.add_argument("--labels", required=True, help="class raster on the image grid, or a label layer")
    parser.add_argument("--out-dir", required=True, help="output folder (must be new or empty)")
    parser.add_argument("--size", type=int, default=256, help="chip size in pixels (default 256)")
    parser.add_argument(
        "--overlap", type=int, default=32, help="overlap between chips in pixels (default 32)"
    )
    parser.add_argument(
        "--min-labelled",
        type=float,
        default=0.05,
        help="skip chips with a smaller share of labelled pixels (default 0.05)",
    )
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of chips for validation")
    parser.add_argument(
        "--block-size", type=int, default=None, help="spatial split block in pixels (default 4 chips)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the block split")
    parser.add_argument("--class-field", default="class_id", help="class field when --labels is a layer")
    parser.add_argument("--class-map", default=None, help="value=id pairs when --labels is a layer")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --out-dir (the old one is kept as a .bak folder)",
    )
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.labels.chips import ChipsParams, run_chips
    from .rasterize import parse_class_map

    feedback = feedback_from_args(args, "chips")
    params = ChipsParams(
        image=args.image,
        labels=args.labels,
        out_dir=args.out_dir,
        chip_size=args.size,
        overlap=args.overlap,
        min_labelled_fraction=args.min_labelled,
        val_fraction=args.val_fraction,
        block_size=args.block_size,
        seed=args.seed,
        class_field=args.class_field,
        class_map=parse_class_map(args.class_map),
        overwrite=args.overwrite,
    )
    result = run_chips(params, feedback)
    emit_result(args, result.summary())
    return 0
