"""Predictions -> editable label polygons, closing the loop: correct the model's map, retrain.

The class map is polygonized by the labels step's own :func:`..labels.polygons.run_polygonize`
(same schema, style, area statistics, minimum area and simplification as rule labels), with
``source = "model"`` and ``rule`` = the model that made the map. ``confidence`` is then the mean
probability of the polygon's class over its pixels, read from the probabilities raster the
runner wrote: low-confidence polygons are where the analyst should look first.

The mean is computed in one streamed pass: the polygons are burnt (by feature id) window by
window onto the probabilities grid and each pixel's probability of its polygon's class is summed
per polygon, so memory stays a few windows whatever the raster size. The polygons are written
to a hidden folder beside the output, completed there and moved into place at the end (an
existing label file is backed up first: it may hold hand edits).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr

from ..atomic import atomic_path, check_writable
from ..errors import GeedlError
from ..progress import Feedback, silent
from ..raster_io import iter_windows, open_raster

gdal.UseExceptions()
ogr.UseExceptions()

WINDOW_ROWS = 1024


@dataclass
class VectorizeParams:
    """Class map (from ``geedl predict``) -> label-layer polygons."""

    prediction: str | Path
    out_vector: str | Path
    #: the probabilities raster of the same run, for ``confidence``; None leaves it empty
    probabilities: str | Path | None = None
    #: class ids to polygonize; None: every class of the model
    classes: list[int] | None = None
    min_area_m2: float = 0.0
    simplify_m: float = 0.0
    connectedness: int = 4
    #: text for the ``rule`` field; None: the model file named in the prediction's metadata
    rule: str | None = None


@dataclass
class VectorizeResult:
    path: Path
    features: int
    mean_confidence: float | None
    per_class: dict[str, int] = field(default_factory=dict)
    polygonize: Any = None

    def summary(self) -> dict[str, Any]:
        return {
            "vector": str(self.path),
            "features": self.features,
            "mean_confidence": None if self.mean_confidence is None else round(self.mean_confidence, 4),
            "per_class": self.per_class,
        }


def _parts(folder: Path, stem: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(stem + "."))


def _check_grids(prediction: gdal.Dataset, probabilities: gdal.Dataset, path: str | Path) -> None:
    same = (
        prediction.RasterXSize == probabilities.RasterXSize
        and prediction.RasterYSize == probabilities.RasterYSize
        and np.allclose(prediction.GetGeoTransform(), probabilities.GetGeoTransform())
    )
    if not same:
        raise GeedlError(
            f"{path} is not on the class map's grid; give the probabilities written by the same "
            "'geedl predict' run."
        )


def _class_bands(probabilities: gdal.Dataset, legend: Any) -> dict[int, int]:
    """Class id -> 1-based probability band, matched by the band descriptions (class names)."""
    names = [probabilities.GetRasterBand(i + 1).GetDescription() for i in range(probabilities.RasterCount)]
    bands: dict[int, int] = {}
    for item in legend.classes:
        if item.name in names:
            bands[item.id] = names.index(item.name) + 1
    if not bands and len(names) == len(legend.classes):  # unnamed bands: model order
        bands = {item.id: i + 1 for i, item in enumerate(legend.classes)}
    return bands


def mean_class_probability(
    vector: Path,
    layer_name: str,
    probabilities: str | Path,
    prediction: gdal.Dataset,
    legend: Any,
    feedback: Feedback,
) -> dict[int, float]:
    """Feature id -> mean probability of the feature's class over its pixels (pixel centres)."""
    probs = open_raster(probabilities)
    _check_grids(prediction, probs, probabilities)
    band_of = _class_bands(probs, legend)
    dataset = ogr.Open(str(vector))
    layer = dataset.GetLayerByName(layer_name)
    memory = ogr.GetDriverByName("Memory").CreateDataSource("")
    burn = memory.CreateLayer("burn", layer.GetSpatialRef(), ogr.wkbMultiPolygon)
    burn.CreateField(ogr.FieldDefn("key", ogr.OFTInteger))
    fids: list[int] = []
    classes: list[int] = []
    for feature in layer:
        copy = ogr.Feature(burn.GetLayerDefn())
        copy.SetGeometry(feature.GetGeometryRef())
        copy.SetField("key", len(fids) + 1)
        burn.CreateFeature(copy)
        fids.append(feature.GetFID())
        classes.append(feature.GetFieldAsInteger("class_id"))
    dataset = layer = None
    n = len(fids)
    if n == 0:
        return {}
    class_of = np.asarray([0] + classes, dtype=np.int64)
    sums = np.zeros(n + 1, np.float64)
    counts = np.zeros(n + 1, np.float64)
    uint8 = probs.GetRasterBand(1).DataType == gdal.GDT_Byte
    scale = probs.GetRasterBand(1).GetScale() or (1.0 / 254.0 if uint8 else 1.0)
    x0, dx, rx, y0, ry, dy = probs.GetGeoTransform()
    mem = gdal.GetDriverByName("MEM")
    windows = list(iter_windows(probs.RasterXSize, probs.RasterYSize, probs.RasterXSize, WINDOW_ROWS))
    for number, window in enumerate(windows):
        feedback.check_cancelled()
        feedback.progress(100.0 * number / len(windows), "mean probability per polygon")
        target = mem.Create("", window.xsize, window.ysize, 1, gdal.GDT_Int32)
        target.SetGeoTransform(window.geotransform((x0, dx, rx, y0, ry, dy)))
        target.SetProjection(probs.GetProjection())
        gdal.RasterizeLayer(target, [1], burn, options=["ATTRIBUTE=key"])
        keys = target.ReadAsArray()
        inside = keys > 0
        if not inside.any():
            continue
        wanted = class_of[keys]
        values = np.full(keys.shape, np.nan)
        for class_id, band in band_of.items():
            hit = inside & (wanted == class_id)
            if hit.any():
                data = probs.GetRasterBand(band).ReadAsArray(
                    window.xoff, window.yoff, window.xsize, window.ysize
                )
                data = data.astype(np.float64)
                if uint8:
                    data[data == 255] = np.nan
                values[hit] = data[hit] * scale
        valid = inside & np.isfinite(values)
        sums += np.bincount(keys[valid], weights=values[valid], minlength=n + 1)
        counts += np.bincount(keys[valid], minlength=n + 1)
    return {fids[i - 1]: float(sums[i] / counts[i]) for i in range(1, n + 1) if counts[i] > 0}


def vectorize_prediction(params: VectorizeParams, feedback: Feedback | None = None) -> VectorizeResult:
    """Polygons of a predicted class map in the label-layer schema (source = model)."""
    from ..labels.legend import read_legend
    from ..labels.polygons import PolygonizeParams, run_polygonize

    feedback = feedback or silent()
    out = check_writable(params.out_vector)
    prediction = open_raster(params.prediction)
    legend = read_legend(prediction)
    if legend is None:
        raise GeedlError(
            f"{params.prediction} carries no class legend; give a class map written by 'geedl predict'."
        )
    if params.probabilities is not None:
        _check_grids(prediction, open_raster(params.probabilities), params.probabilities)
    rule = (
        params.rule if params.rule is not None else f"model {prediction.GetMetadataItem('GEEDL_MODEL') or ''}"
    )
    work = out.parent / f".geedl-vectorize-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        staged = work / out.name
        result = run_polygonize(
            PolygonizeParams(
                mask=params.prediction,
                out_vector=staged,
                classes=params.classes or legend.ids,
                min_area_m2=params.min_area_m2,
                simplify_m=params.simplify_m,
                connectedness=params.connectedness,
                source="model",
                rule=rule.strip(),
                layer_name=out.stem,
            ),
            feedback.sub(0, 60),
        )
        confidence: dict[int, float] = {}
        if params.probabilities is not None and result.features:
            confidence = mean_class_probability(
                staged, out.stem, params.probabilities, prediction, legend, feedback.sub(60, 95)
            )
            dataset = ogr.Open(str(staged), update=1)
            layer = dataset.GetLayerByName(out.stem)
            layer.StartTransaction()
            for feature in layer:
                value = confidence.get(feature.GetFID())
                if value is not None:
                    feature.SetField("confidence", round(value, 4))
                    layer.SetFeature(feature)
            layer.CommitTransaction()
            layer = dataset = None
        per_class: dict[str, int] = {}
        dataset = ogr.Open(str(staged))
        for feature in dataset.GetLayerByName(out.stem):
            name = feature.GetField("class_name")
            per_class[name] = per_class.get(name, 0) + 1
        dataset = None
        with atomic_path(out, keep_backup=True) as tmp:
            for part in _parts(work, out.stem):
                suffix = part.name[len(out.stem) :]
                if part.suffix.lower() in (".qml", ".json") or suffix.endswith((".qml", ".stats.json")):
                    os.replace(part, out.parent / part.name)  # style and statistics sidecars
                else:
                    os.replace(part, tmp.with_name(tmp.stem + suffix))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    feedback.progress(100, "polygons written")
    values = list(confidence.values())
    return VectorizeResult(
        out, result.features, float(np.mean(values)) if values else None, per_class, result
    )
