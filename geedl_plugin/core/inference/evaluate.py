"""A predicted class map against reference labels: per-class scores and an error map.

Document 002 scores its crop maps with IoU (Jaccard), precision and recall; the numbers come
from the training step's confusion matrix code (:mod:`..training.metrics`, one implementation
for validation and evaluation). Truth is a class raster (any grid: warped onto the prediction's
with nearest neighbour) or label polygons (rasterized onto the prediction's grid with the labels
step's :func:`..labels.rasterize.rasterize_to_array`, from ``class_id`` or any field, e.g. OSM's
``fclass``).

Classes are matched by *name* when both sides have names (the prediction's legend vs the truth's
legend or field values; case-insensitive), by id otherwise; ``class_map`` maps other truth names
onto prediction classes (``{"farm": "crop", "meadow": "crop"}``). Truth classes with no
counterpart are left out and reported, never silently merged. Pixels that are nodata (255) on
either side are not scored.

The error map (uint8, paletted, 255 where not scored) says where the model is wrong: with a
``class_of_interest`` 0 = correct, 1 = false positive (predicted that class, truth another),
2 = false negative (truth that class, predicted another), 3 = wrong between two other classes;
without one 0 = correct, 1 = wrong. Rasters are streamed window by window.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from ..atomic import atomic_path, check_writable
from ..errors import GeedlError
from ..progress import Feedback, silent
from ..raster_io import create_geotiff, iter_windows, open_raster
from ..vector_io import open_vector_layer

gdal.UseExceptions()

IGNORE = 255
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml", ".sqlite")


@dataclass
class EvaluateParams:
    prediction: str | Path
    truth: str | Path
    #: field of a vector truth holding the class (``class_id`` for geedl label layers)
    class_field: str = "class_id"
    #: truth class name -> prediction class name, for names that differ
    class_map: dict[str, str] | None = None
    out_errors: str | Path | None = None
    json_path: str | Path | None = None
    #: prediction class (id or name) whose false positives / negatives the error map shows
    class_of_interest: int | str | None = None
    layer: str | None = None


@dataclass
class EvaluateResult:
    metrics: dict[str, Any]
    errors: Path | None
    json_path: Path | None
    matched: dict[str, str] = field(default_factory=dict)
    unmatched_truth: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "overall_accuracy": _round(m.get("overall_accuracy")),
            "mean_iou": _round(m.get("mean_iou")),
            "mean_f1": _round(m.get("mean_f1")),
            "pixels": m.get("pixels"),
            "errors": str(self.errors) if self.errors else None,
            "json": str(self.json_path) if self.json_path else None,
            "unmatched_truth_classes": ",".join(self.unmatched_truth),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def format_table(metrics: dict[str, Any]) -> str:
    """Per-class IoU / precision / recall / F1, overall accuracy and the confusion matrix as text."""
    names = metrics["class_names"]
    width = max(8, *(len(n) for n in names))

    def cell(value: float | None) -> str:
        return "     -" if value is None else f"{value:6.3f}"

    lines = [f"{'class':<{width}}    IoU  prec.  recall    F1   pixels"]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(
            f"{name:<{width}} {cell(row['iou'])} {cell(row['precision'])} {cell(row['recall'])} "
            f"{cell(row['f1'])} {row['support']:8d}"
        )
    lines.append(
        f"overall accuracy {cell(metrics['overall_accuracy']).strip()}, mean IoU "
        f"{cell(metrics['mean_iou']).strip()}, mean F1 {cell(metrics['mean_f1']).strip()}, "
        f"{metrics['pixels']} pixels"
    )
    lines.append("confusion matrix (rows: truth, columns: prediction)")
    lines.append(" " * (width + 1) + " ".join(f"{n[:8]:>8}" for n in names))
    for name, row in zip(names, metrics["confusion_matrix"]):
        lines.append(f"{name:<{width}} " + " ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)


def _prediction_legend(dataset: gdal.Dataset, path: str | Path) -> Any:
    from ..labels.legend import read_legend

    legend = read_legend(dataset)
    if legend is None:
        raise GeedlError(f"{path} carries no class legend; evaluate a class map written by 'geedl predict'.")
    return legend


def _match(
    pred_legend: Any, truth_names: dict[int, str], class_map: dict[str, str] | None, by_name: bool
) -> tuple[np.ndarray, dict[str, str], list[str]]:
    """Lookup truth id -> prediction index (K = no counterpart), matched names, unmatched names."""
    pred_names = {c.name.lower(): i for i, c in enumerate(pred_legend.classes)}
    k = len(pred_legend.classes)
    lookup = np.full(256, k + 1, dtype=np.int64)  # k + 1: not scored
    mapping = {str(a).lower(): str(b).lower() for a, b in (class_map or {}).items()}
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    for truth_id, truth_name in truth_names.items():
        if by_name:
            target = mapping.get(truth_name.lower(), truth_name.lower())
            index = pred_names.get(target)
        else:
            index = next((i for i, c in enumerate(pred_legend.classes) if c.id == truth_id), None)
        if index is None:
            unmatched.append(truth_name)
        else:
            lookup[truth_id] = index
            matched[truth_name] = pred_legend.classes[index].name
    return lookup, matched, unmatched


def _truth_source(
    params: EvaluateParams, prediction: gdal.Dataset, pred_legend: Any, feedback: Feedback
) -> tuple[Any, dict[int, str], bool, list[str], list[str]]:
    """(reader of truth windows, truth id -> name, match by name?, unmatched truth names,
    temporary files)."""
    from ..labels.legend import read_legend

    truth = Path(params.truth)
    if not truth.exists():
        raise GeedlError(f"Truth file {truth} does not exist; give a class raster or label polygons.")
    if truth.suffix.lower() in VECTOR_SUFFIXES:
        from ..labels.rasterize import rasterize_to_array

        text_field, values = _field_values(truth, params)
        if text_field:  # class names (e.g. OSM fclass): mapped straight onto the prediction's ids
            class_map, unmatched = _vector_class_map(truth, params, pred_legend, values)
            array, _ = rasterize_to_array(
                truth,
                params.prediction,
                class_field=params.class_field,
                class_map=class_map,
                layer=params.layer,
                feedback=feedback.sub(0, 30),
            )
            names = {c.id: c.name for c in pred_legend.classes}
            return _array_reader(array), names, False, unmatched, []
        array, legend = rasterize_to_array(
            truth,
            params.prediction,
            class_field=params.class_field,
            layer=params.layer,
            feedback=feedback.sub(0, 30),
        )
        return _array_reader(array), {c.id: c.name for c in legend.classes}, True, [], []
    dataset = open_raster(truth)
    same = (
        dataset.RasterXSize == prediction.RasterXSize
        and dataset.RasterYSize == prediction.RasterYSize
        and np.allclose(dataset.GetGeoTransform(), prediction.GetGeoTransform())
        and dataset.GetSpatialRef() is not None
        and prediction.GetSpatialRef() is not None
        and dataset.GetSpatialRef().IsSame(prediction.GetSpatialRef())
    )
    temporaries: list[str] = []
    if not same:
        vrt = f"/vsimem/geedl_truth_{uuid.uuid4().hex[:8]}.vrt"
        x0, dx, _, y0, _, dy = prediction.GetGeoTransform()
        bounds = (x0, y0 + dy * prediction.RasterYSize, x0 + dx * prediction.RasterXSize, y0)
        nodata = dataset.GetRasterBand(1).GetNoDataValue()
        dataset = gdal.Warp(
            vrt,
            dataset,
            format="VRT",
            dstSRS=prediction.GetProjection(),
            outputBounds=bounds,
            width=prediction.RasterXSize,
            height=prediction.RasterYSize,
            resampleAlg="near",
            srcNodata=nodata,
            dstNodata=IGNORE,
        )
        temporaries.append(vrt)
        feedback.info(f"{truth.name} is on another grid; warped onto the prediction's (nearest neighbour).")
    legend = read_legend(dataset)
    if legend is not None:
        names, by_name = {c.id: c.name for c in legend.classes}, True
    else:
        names, by_name = {v: f"class {v}" for v in range(IGNORE)}, False
    band = dataset.GetRasterBand(1)

    def read(window: Any) -> np.ndarray:
        return band.ReadAsArray(window.xoff, window.yoff, window.xsize, window.ysize).astype(np.int64)

    read.dataset = dataset  # type: ignore[attr-defined]  # keep the dataset alive with its band
    return read, names, by_name, [], temporaries


def _array_reader(array: np.ndarray) -> Any:
    return lambda w: array[w.yoff : w.yoff + w.ysize, w.xoff : w.xoff + w.xsize].astype(np.int64)


def _field_values(truth: Path, params: EvaluateParams) -> tuple[bool, set[str]]:
    """(is the class field text?, its distinct values)."""
    from osgeo import ogr

    dataset, layer = open_vector_layer(truth, params.layer)
    defn = layer.GetLayerDefn()
    index = defn.GetFieldIndex(params.class_field)
    if index < 0:
        fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
        raise GeedlError(
            f"{truth.name} has no field {params.class_field!r}; it has {', '.join(fields)}. "
            "Give the field that holds the class with --class-field."
        )
    text = defn.GetFieldDefn(index).GetType() == ogr.OFTString
    values = {str(f.GetField(index)) for f in layer if f.IsFieldSetAndNotNull(index)}
    return text, values


def _vector_class_map(
    truth: Path, params: EvaluateParams, pred_legend: Any, values: set[str]
) -> tuple[dict[str, int], list[str]]:
    """Field value -> prediction class id for named truth classes, and the values left out."""
    pred_names = {c.name.lower(): c.id for c in pred_legend.classes}
    wanted = {str(k).lower(): str(v).lower() for k, v in (params.class_map or {}).items()}
    mapping: dict[str, int] = {}
    for value in sorted(values):
        target = wanted.get(value.lower(), value.lower())
        if target in pred_names:
            mapping[value] = pred_names[target]
    if not mapping:
        raise GeedlError(
            f"No value of {params.class_field!r} in {truth.name} ({', '.join(sorted(values)[:12])}) "
            f"names a class of the prediction ({', '.join(sorted(pred_names))}); map them with "
            "--class-map truth=prediction,..."
        )
    return mapping, sorted(values - set(mapping))


def evaluate(params: EvaluateParams, feedback: Feedback | None = None) -> EvaluateResult:
    """Score a class map against truth; optionally write the error map and the metrics JSON."""
    from ..labels.legend import Legend, LegendClass, write_legend
    from ..training.metrics import scores

    feedback = feedback or silent()
    for path in (params.out_errors, params.json_path):
        if path is not None:
            check_writable(path)
    prediction = open_raster(params.prediction)
    pred_legend = _prediction_legend(prediction, params.prediction)
    k = len(pred_legend.classes)
    pred_lookup = np.full(256, k + 1, dtype=np.int64)
    for i, item in enumerate(pred_legend.classes):
        pred_lookup[item.id] = i
    interest: int | None = None
    if params.class_of_interest is not None:
        key = str(params.class_of_interest).lower()
        found = [i for i, c in enumerate(pred_legend.classes) if c.name.lower() == key or str(c.id) == key]
        if not found:
            raise GeedlError(
                f"Class {params.class_of_interest!r} is not in the prediction's legend "
                f"({', '.join(c.name for c in pred_legend.classes)})."
            )
        interest = found[0]
    read_truth, truth_names, by_name, left_out, temporaries = _truth_source(
        params, prediction, pred_legend, feedback
    )
    pred_names = {c.name.lower() for c in pred_legend.classes}
    mapped = {str(v).lower() for v in (params.class_map or {})}
    by_name = by_name and any(n.lower() in pred_names | mapped for n in truth_names.values())
    truth_lookup, matched, unmatched = _match(pred_legend, truth_names, params.class_map, by_name)
    unmatched = left_out + (unmatched if by_name else [])
    if not matched:
        raise GeedlError("The truth's classes match none of the prediction's, by name or by id.")

    matrix = np.zeros((k, k), np.int64)
    errors_ds = None
    result_errors = Path(params.out_errors) if params.out_errors is not None else None
    if interest is not None:
        name = pred_legend.classes[interest].name
        error_legend = Legend(
            [
                LegendClass(0, "correct", "#d9d9d9"),
                LegendClass(1, f"false positive ({name})", "#e31a1c"),
                LegendClass(2, f"false negative ({name})", "#1f78b4"),
                LegendClass(3, "wrong (other classes)", "#ff7f00"),
            ]
        )
    else:
        error_legend = Legend([LegendClass(0, "correct", "#d9d9d9"), LegendClass(1, "wrong", "#e31a1c")])
    windows = list(iter_windows(prediction.RasterXSize, prediction.RasterYSize, 2048, 512))
    try:
        with atomic_path(result_errors) if result_errors is not None else contextlib.nullcontext() as tmp:
            if tmp is not None:
                errors_ds = create_geotiff(
                    tmp,
                    prediction.RasterXSize,
                    prediction.RasterYSize,
                    1,
                    "uint8",
                    prediction.GetGeoTransform(),
                    prediction.GetProjection(),
                    ["errors"],
                    {
                        "GEEDL_PREDICTION": Path(params.prediction).name,
                        "GEEDL_TRUTH": Path(params.truth).name,
                    },
                    IGNORE,
                    zlevel=1,
                )
                write_legend(errors_ds, error_legend)
            band = prediction.GetRasterBand(1)
            for number, window in enumerate(windows):
                feedback.check_cancelled()
                feedback.progress(30 + 65 * number / len(windows), "comparing")
                pred = pred_lookup[band.ReadAsArray(window.xoff, window.yoff, window.xsize, window.ysize)]
                truth = truth_lookup[np.clip(read_truth(window), 0, 255)]
                scored = (pred < k) & (truth < k)
                matrix += np.bincount(truth[scored] * k + pred[scored], minlength=k * k).reshape(k, k)
                if errors_ds is not None:
                    out = np.full(pred.shape, IGNORE, np.uint8)
                    wrong = scored & (pred != truth)
                    out[scored] = 0
                    if interest is None:
                        out[wrong] = 1
                    else:
                        out[wrong] = 3
                        out[wrong & (pred == interest)] = 1
                        out[wrong & (truth == interest)] = 2
                    errors_ds.GetRasterBand(1).WriteArray(out, window.xoff, window.yoff)
            if errors_ds is not None:
                errors_ds.FlushCache()
                errors_ds = None
    finally:
        errors_ds = None
        for path in temporaries:
            gdal.Unlink(path)
    if matrix.sum() == 0:
        raise GeedlError(
            "No pixel has both a prediction and a truth class; do the files overlap, and do their "
            f"classes match? Truth classes: {', '.join(truth_names.values())}."
        )
    metrics = scores(matrix, [c.name for c in pred_legend.classes])
    metrics["matched_truth_classes"] = matched
    metrics["unmatched_truth_classes"] = unmatched
    metrics["prediction"] = str(params.prediction)
    metrics["truth"] = str(params.truth)
    json_path = Path(params.json_path) if params.json_path is not None else None
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            Path(tmp).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if unmatched:
        feedback.info(f"Truth classes without a prediction class (not scored): {', '.join(unmatched)}.")
    feedback.progress(100, "evaluated")
    return EvaluateResult(metrics, result_errors, json_path, matched, unmatched)
