"""Class mask -> label polygons (document 000's ``reduceToVectors`` at the mask's 10 m pixels).

Document 000 vectorises the crop mask, measures each polygon (``shape.area(1)``), prints the
area statistics and drops polygons under 3000 m². This does the same on a local mask:

1. ``gdal.Polygonize`` on the mask, with a selection band so only the chosen classes (all but
   the background by default) become polygons; 4-connected by default (valid polygons by
   construction), 8-connected (Earth Engine's ``eightConnected``) as an option.
2. The area of every polygon in m², in a projected CRS: the mask's own when it is projected,
   the local UTM zone when it is geographic (EPSG:4326 pixels are not equal-area). On a
   projected mask a polygon's area is read directly (one C call); the expensive steps (validity
   check, repair, simplification, writing) only run for the polygons that are kept, and the
   output is written in one transaction: that is what keeps this as fast as
   ``gdal_polygonize.py`` while doing more.
3. Statistics (count, min, mean, max, total; all polygons and kept ones, per class), printed,
   stored in the layer metadata and in ``<name>.stats.json`` beside the output.
4. Only valid geometries are written: 8-connected polygons whose ring touches itself at a pixel
   corner, and simplified ones, are checked and repaired (MakeValid's STRUCTURE method, else
   buffer(0)). Options: simplify (tolerance in
   metres), fill holes smaller than N m², bounding boxes instead of outlines (``bbox``, like
   ``geometryType: 'bb'``; their area is the box's).
5. GeoPackage (default) or shapefile with the label schema (:mod:`.schema`), QGIS style, and a
   backup of a label file that already exists.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr

from ..atomic import check_writable
from ..errors import CancelledError, GeedlError
from ..progress import Feedback, silent
from ..raster_io import crs_label, iter_windows, open_raster
from .geometry import envelope_polygon, fill_holes, is_valid, make_valid, metric_frame, to_multipolygon
from .legend import IGNORE, Legend, default_legend, read_legend
from .rules import read_rules
from .schema import (
    FIELD_NAMES,
    SOURCES,
    create_label_layer,
    create_vector,
    driver_for,
    label_output,
    layer_name_for,
    now_iso,
    write_gpkg_style,
    write_layer_metadata,
    write_sidecars,
)

gdal.UseExceptions()
ogr.UseExceptions()

GEOMETRIES = ("polygon", "bbox")
_MEM_LIMIT = 512 * 1024 * 1024  # selection band in memory up to this many pixels, else a temp file


@dataclass
class AreaStats:
    """Document 000's ``aggregate_stats('area')``, in m²."""

    count: int = 0
    min: float = 0.0
    mean: float = 0.0
    max: float = 0.0
    total: float = 0.0

    @classmethod
    def of(cls, areas: np.ndarray | list[float]) -> AreaStats:
        values = np.asarray(areas, dtype=np.float64)
        if values.size == 0:
            return cls()
        return cls(
            int(values.size),
            float(values.min()),
            float(values.mean()),
            float(values.max()),
            float(values.sum()),
        )

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def text(self) -> str:
        if not self.count:
            return "no polygons"
        return (
            f"count {self.count}, min {self.min:,.0f} m², mean {self.mean:,.0f} m², "
            f"max {self.max:,.0f} m², total {self.total / 1e4:,.2f} ha"
        )


@dataclass
class PolygonizeParams:
    """Mask -> polygons. ``classes`` None: every legend class but the background (or every value
    but 0 and 255 without a legend). ``connectedness`` 4 (default: valid polygons straight from
    GDAL) or 8 (Earth Engine's default: diagonal neighbours join; corner-touching rings are
    repaired, which costs time on huge polygons). ``simplify_m`` tolerance in m; ``fill_holes_m2``
    fills holes smaller than that. ``rule`` None: the rule stored in the mask. ``validate_all``
    checks 4-connected output with GEOS too (slow on polygons with thousands of holes)."""

    mask: str | Path
    out_vector: str | Path
    classes: list[int] | None = None
    min_area_m2: float = 3000.0
    geometry: str = "polygon"
    connectedness: int = 4
    simplify_m: float = 0.0
    fill_holes_m2: float = 0.0
    source: str = "auto"
    confidence: float | None = None
    rule: str | None = None
    layer_name: str | None = None
    validate_all: bool = False


@dataclass
class PolygonizeResult:
    path: Path
    layer: str
    features: int
    stats: AreaStats
    stats_all: AreaStats
    per_class: dict[str, AreaStats]
    dropped_small: int
    repaired: int
    crs: str
    area_crs: str
    stats_path: Path
    style_path: Path
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "vector": str(self.path),
            "layer": self.layer,
            "features": self.features,
            "area_stats_m2": self.stats.to_dict(),
            "area_stats_all_m2": self.stats_all.to_dict(),
            "dropped_under_min_area": self.dropped_small,
            "repaired": self.repaired,
            "crs": self.crs,
            "areas_in": self.area_crs,
            "stats_json": str(self.stats_path),
            "style": str(self.style_path),
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }


def _check_params(params: PolygonizeParams) -> None:
    if params.geometry not in GEOMETRIES:
        raise GeedlError(f"Geometry {params.geometry!r} must be one of {', '.join(GEOMETRIES)}.")
    if int(params.connectedness) not in (4, 8):
        raise GeedlError(f"Connectedness {params.connectedness} must be 4 or 8.")
    for name in ("min_area_m2", "simplify_m", "fill_holes_m2"):
        value = float(getattr(params, name))
        if not math.isfinite(value) or value < 0:
            raise GeedlError(f"{name} = {value} must be a number >= 0.")
    if params.source not in SOURCES:
        raise GeedlError(f"source {params.source!r} must be one of {', '.join(SOURCES)}.")
    if params.confidence is not None and not 0.0 <= float(params.confidence) <= 1.0:
        raise GeedlError(f"confidence {params.confidence} must be between 0 and 1.")
    driver_for(params.out_vector)


def _class_values(band: gdal.Band) -> list[int]:
    """The class values present in a uint8 mask (exact histogram, computed by GDAL)."""
    hist = band.GetHistogram(-0.5, 255.5, 256, include_out_of_range=0, approx_ok=0)
    return [i for i, n in enumerate(hist) if n]


def _selection_dataset(
    mask: gdal.Dataset, classes: list[int], feedback: Feedback
) -> tuple[gdal.Dataset, str]:
    """A uint8 band, 1 where the mask holds one of ``classes``: gdal.Polygonize's mask band."""
    width, height = mask.RasterXSize, mask.RasterYSize
    path = ""
    if width * height <= _MEM_LIMIT:
        selection = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal.GDT_Byte)
    else:
        handle, path = tempfile.mkstemp(prefix="geedl-select-", suffix=".tif")
        os.close(handle)
        selection = gdal.GetDriverByName("GTiff").Create(
            path, width, height, 1, gdal.GDT_Byte, options=["TILED=YES", "COMPRESS=LZW", "SPARSE_OK=YES"]
        )
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[np.asarray(classes, dtype=np.int64)] = 1
    src, dst = mask.GetRasterBand(1), selection.GetRasterBand(1)
    windows = list(iter_windows(width, height, max(512, min(width, 4096)), 512))
    for number, window in enumerate(windows):
        feedback.check_cancelled()
        block = src.ReadAsArray(window.xoff, window.yoff, window.xsize, window.ysize)
        dst.WriteArray(lookup[block], window.xoff, window.yoff)
        feedback.progress(100.0 * (number + 1) / len(windows), "selecting classes")
    return selection, path


def _polygonize(
    mask: gdal.Dataset, selection: gdal.Dataset, connectedness: int, feedback: Feedback
) -> tuple[ogr.DataSource, ogr.Layer]:
    memory = ogr.GetDriverByName("Memory").CreateDataSource("polygons")
    srs = mask.GetSpatialRef()
    layer = memory.CreateLayer("polygons", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    cancelled = []

    def callback(complete: float, _message: str, _data: Any) -> int:
        feedback.progress(100.0 * complete, "tracing polygons")
        if feedback.cancelled():
            cancelled.append(True)
            return 0
        return 1

    options = ["8CONNECTED=8"] if int(connectedness) == 8 else []
    try:
        gdal.Polygonize(
            mask.GetRasterBand(1), selection.GetRasterBand(1), layer, 0, options, callback=callback
        )
    except RuntimeError as exc:
        if cancelled:
            raise CancelledError() from exc
        raise GeedlError(f"Polygonize failed: {str(exc).strip()}") from exc
    return memory, layer


def _stats_by_class(classes: np.ndarray, areas: np.ndarray, legend: Legend) -> dict[str, AreaStats]:
    return {legend.name_of(int(c)): AreaStats.of(areas[classes == c]) for c in np.unique(classes)}


def run_polygonize(params: PolygonizeParams, feedback: Feedback | None = None) -> PolygonizeResult:
    """Write label polygons for the mask's classes; see the module docstring for the steps."""
    feedback = feedback or silent()
    started = time.monotonic()
    _check_params(params)
    mask = open_raster(params.mask)
    band = mask.GetRasterBand(1)
    if band.DataType != gdal.GDT_Byte:
        raise GeedlError(
            f"{params.mask} is not a class mask (8-bit class ids); polygonize a mask written by "
            "autolabel, rasterize or denoise."
        )
    srs = mask.GetSpatialRef()
    gt = mask.GetGeoTransform()
    extent = (gt[0], gt[0] + gt[1] * mask.RasterXSize, gt[3] + gt[5] * mask.RasterYSize, gt[3])
    frame = metric_frame(srs, extent, f"The mask {params.mask}")
    out = check_writable(params.out_vector)
    present = _class_values(band)
    legend = read_legend(mask) or default_legend([v for v in present if v != IGNORE] or [0, 1])
    if legend.background is None and 0 in legend.ids and read_legend(mask) is None:
        legend = Legend(legend.classes, 0)
    if params.classes:
        legend.check_ids(params.classes, "The class list")
        classes = sorted({int(c) for c in params.classes})
    else:
        classes = legend.foreground_ids
    rules = read_rules(mask)
    rule_text = params.rule if params.rule is not None else (rules.label() if rules else "")
    layer_name = params.layer_name or layer_name_for(out)
    warnings: list[str] = []
    if not set(classes) & set(present):
        warnings.append(
            f"The mask has no pixel of class {', '.join(legend.name_of(c) for c in classes)}; "
            "the label layer is empty."
        )

    feedback.info(
        f"Polygons of {', '.join(legend.name_of(c) for c in classes)} "
        f"({params.connectedness}-connected), areas in {frame.label}"
    )
    selection, temp_path = _selection_dataset(mask, classes, feedback.sub(0, 10))
    try:
        memory, layer = _polygonize(mask, selection, params.connectedness, feedback.sub(10, 70))
    finally:
        selection = None
        if temp_path:
            gdal.Unlink(temp_path)

    min_area = float(params.min_area_m2)
    kept_classes: list[int] = []
    kept_areas: list[float] = []
    repaired = 0
    created = now_iso()
    all_areas: list[float] = []
    classes_seen: list[int] = []
    sub = feedback.sub(70, 100)
    total = max(1, layer.GetFeatureCount())
    # GDAL (>= 3.3.2) traces 4-connected regions into valid polygons by construction (holes that
    # touch the shell become separate rings; OSGeo/gdal#1158, #7369); 8-connected regions whose
    # pixels meet at a corner give rings that touch themselves, which GEOS calls invalid. So raw
    # 8-connected polygons are checked and repaired, 4-connected ones only with validate_all.
    check_raw = int(params.connectedness) == 8 or params.validate_all
    with label_output(out) as tmp:
        dataset = create_vector(tmp, driver_for(out))
        out_layer = create_label_layer(dataset, layer_name, srs)
        defn = out_layer.GetLayerDefn()
        index = {name: defn.GetFieldIndex(name) for name in FIELD_NAMES}
        out_layer.StartTransaction()
        for number, feature in enumerate(layer):
            if number % 2048 == 0:
                feedback.check_cancelled()
                sub.progress(100.0 * number / total, "measuring and writing polygons")
            class_id = feature.GetFieldAsInteger(0)
            geom = feature.GetGeometryRef()
            # most polygons are small and dropped: measure them without copying when possible
            work = frame.metric(geom) if frame.reprojects else geom
            area = frame.area_m2(work)
            all_areas.append(area)
            classes_seen.append(class_id)
            if area < min_area:
                continue
            if work is geom:
                work = geom.Clone()
            if check_raw and not is_valid(work):
                work = make_valid(work)
                repaired += 1
                if work is None:
                    continue
            modified = False
            if params.fill_holes_m2 > 0:
                work = fill_holes(work, params.fill_holes_m2 / (frame.unit * frame.unit))
            if params.simplify_m > 0:
                work = work.SimplifyPreserveTopology(frame.metres_to_units(params.simplify_m))
                modified = True
            if modified and not is_valid(work):
                work = make_valid(work)
                repaired += 1
                if work is None:
                    continue
            if params.geometry == "bbox":
                box = envelope_polygon(frame.back(work.Clone()))
                area = frame.area_m2(frame.metric(box))
                final = box
            else:
                area = frame.area_m2(work)
                final = frame.back(work)
            new = ogr.Feature(defn)
            new.SetGeometryDirectly(to_multipolygon(final))
            new.SetField(index["class_id"], class_id)
            new.SetField(index["class_name"], legend.name_of(class_id))
            new.SetField(index["source"], params.source)
            if params.confidence is not None:
                new.SetField(index["confidence"], float(params.confidence))
            new.SetField(index["rule"], rule_text[:254])
            new.SetField(index["created"], created)
            new.SetField(index["area_m2"], round(area, 2))
            out_layer.CreateFeature(new)
            kept_classes.append(class_id)
            kept_areas.append(area)
        out_layer.CommitTransaction()
        all_areas_arr = np.asarray(all_areas, dtype=np.float64)
        kept_c = np.asarray(kept_classes, dtype=np.int32)
        kept_a = np.asarray(kept_areas, dtype=np.float64)
        stats = AreaStats.of(kept_a)
        stats_all = AreaStats.of(all_areas_arr)
        per_class = _stats_by_class(kept_c, kept_a, legend)
        dropped = int((all_areas_arr < min_area).sum())
        payload = {
            "mask": str(params.mask),
            "layer": layer_name,
            "rule": rule_text,
            "min_area_m2": min_area,
            "geometry": params.geometry,
            "connectedness": int(params.connectedness),
            "simplify_m": params.simplify_m,
            "fill_holes_m2": params.fill_holes_m2,
            "areas_computed_in": frame.label,
            "crs": crs_label(frame.srs),
            "area_stats_m2": stats.to_dict(),
            "area_stats_before_min_area_m2": stats_all.to_dict(),
            "area_stats_by_class_m2": {k: v.to_dict() for k, v in per_class.items()},
            "dropped_under_min_area": dropped,
            "repaired_geometries": repaired,
            "created": created,
        }
        write_layer_metadata(out_layer, legend, payload)
        if driver_for(out) == "GPKG":
            from .schema import style_qml

            write_gpkg_style(dataset, layer_name, style_qml(legend))
        out_layer = new = feature = defn = None
        dataset = None
    del layer, memory  # the GDAL objects go now, before the files are touched again
    style_path, stats_path = write_sidecars(out, legend, payload)
    if stats.count == 0 and not warnings:
        warnings.append(
            f"No polygon reaches the minimum area of {min_area:g} m² "
            f"({stats_all.count} smaller ones dropped); the label layer is empty."
        )
    feedback.info(f"Area statistics, all polygons: {stats_all.text()}")
    feedback.info(f"Area statistics, kept (>= {min_area:g} m²): {stats.text()}")
    for text in warnings:
        feedback.info("Warning: " + text)
    feedback.progress(100.0, "polygons written")
    return PolygonizeResult(
        Path(out),
        layer_name,
        stats.count,
        stats,
        stats_all,
        per_class,
        dropped,
        repaired,
        crs_label(frame.srs),
        frame.label,
        stats_path,
        style_path,
        time.monotonic() - started,
        warnings,
    )


def read_area_stats(vector: str | Path) -> dict[str, Any] | None:
    """The statistics stored beside a label layer by :func:`run_polygonize`."""
    from .schema import sidecar_json

    side = sidecar_json(vector)
    if not side.exists():
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return None
