"""Label polygons -> a class raster on the exact grid of a composite (for training and scoring).

After hand correction in QGIS the polygons go back to pixels: same size, geotransform and CRS
as the composite, so image and labels line up pixel for pixel. Pixels outside every polygon
are 255 (*ignore*), never "background": an analyst labels what they are sure of.

* The layer may be in any CRS; it is reprojected to the grid's CRS.
* The class comes from any field: ``class_id`` by default; a text field such as OSM's
  ``fclass`` maps through ``class_map`` (``{"water": 1, "farm": 2}``; unmapped values are
  ignored) or, without a map, its distinct values are numbered 0, 1, ... in sorted order.
* ``inward_buffer_m`` shrinks each polygon by N metres first (document 003: label only the
  confident interior); a polygon that vanishes is counted, not an error.
* Invalid geometries are repaired (MakeValid, else buffer(0)) and counted; ones that cannot be
  repaired are reported. Pixels where polygons of *different* classes overlap become ignore.
* Class ids outside the legend (the one stored with a geedl label layer, or the one given) and
  ids outside 0..254 are a clear error before any pixel is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

from ..atomic import atomic_path, check_writable
from ..errors import GeedlError
from ..progress import Feedback, silent
from ..raster_io import create_geotiff, crs_label, iter_windows, open_raster, same_crs
from ..vector_io import open_vector_layer
from .geometry import POLYGONAL, gis_srs, is_valid, make_valid, metric_frame
from .legend import IGNORE, Legend, LegendClass, write_legend
from .schema import read_layer_legend

gdal.UseExceptions()
ogr.UseExceptions()

_INTEGER_TYPES = (ogr.OFTInteger, ogr.OFTInteger64)


@dataclass
class RasterizeReport:
    """What happened to the features, so nothing is dropped silently."""

    features: int = 0
    used: int = 0
    unmapped: int = 0
    empty: int = 0
    not_polygons: int = 0
    repaired: int = 0
    unrepairable: int = 0
    vanished_by_buffer: int = 0
    conflict_pixels: int = 0
    unmapped_values: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        out = []
        if self.unmapped:
            out.append(
                f"{self.unmapped} feature(s) with class values not in the class map were ignored "
                f"({', '.join(self.unmapped_values[:10])})."
            )
        if self.repaired:
            out.append(f"{self.repaired} invalid geometry(ies) were repaired before rasterizing.")
        if self.unrepairable:
            out.append(f"{self.unrepairable} invalid geometry(ies) could not be repaired and were skipped.")
        if self.not_polygons:
            out.append(f"{self.not_polygons} feature(s) are not polygons and were skipped.")
        if self.vanished_by_buffer:
            out.append(f"{self.vanished_by_buffer} polygon(s) vanished under the inward buffer.")
        if self.conflict_pixels:
            out.append(
                f"{self.conflict_pixels} pixel(s) where polygons of different classes overlap were "
                "set to ignore."
            )
        return out


@dataclass
class _Prepared:
    memory: ogr.DataSource
    layer: ogr.Layer
    legend: Legend
    report: RasterizeReport
    srs_wkt: str
    geotransform: tuple[float, ...]
    width: int
    height: int


def _class_lookup(
    layer: ogr.Layer,
    field_index: int,
    is_integer: bool,
    class_map: dict[str, int] | None,
    stored: Legend | None,
    legend: Legend | None,
    vector_path: str,
    name_index: int,
) -> tuple[dict[Any, int | None], Legend]:
    """Field value -> class id (None = unmapped), and the legend of the result."""
    values: set[Any] = set()
    names_from_layer: dict[int, str] = {}
    layer.ResetReading()
    for feature in layer:
        if not feature.IsFieldSetAndNotNull(field_index):
            continue
        value = feature.GetField(field_index)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        values.add(value)
        if name_index >= 0 and isinstance(value, int) and feature.IsFieldSetAndNotNull(name_index):
            names_from_layer.setdefault(value, str(feature.GetField(name_index)))
    layer.ResetReading()
    if class_map is not None:
        lookup: dict[Any, int | None] = {}
        for key, cid in class_map.items():
            if not isinstance(cid, (int, np.integer)) or not 0 <= int(cid) < IGNORE:
                raise GeedlError(
                    f"class_map gives {key!r} the id {cid!r}; ids must be whole numbers 0..254 "
                    f"({IGNORE} is ignore)."
                )
        for value in values:
            cid = class_map.get(str(value))
            lookup[value] = None if cid is None else int(cid)
        names: dict[int, list[str]] = {}
        for key, cid in class_map.items():
            names.setdefault(int(cid), []).append(str(key))
        result = legend or Legend(
            [LegendClass(cid, "/".join(sorted(keys))) for cid, keys in sorted(names.items())]
        )
    elif is_integer:
        lookup = {v: int(v) for v in values}
        bad = sorted(v for v in values if not 0 <= int(v) < IGNORE)
        if bad:
            raise GeedlError(
                f"{vector_path} has class ids {', '.join(map(str, bad[:10]))} outside 0..254 "
                f"({IGNORE} means ignore). Fix those features or map the values with a class map."
            )
        result = (
            legend
            or stored
            or Legend(
                [LegendClass(int(v), names_from_layer.get(int(v), f"class {int(v)}")) for v in sorted(values)]
            )
        )
        result.check_ids(values, f"The label layer {vector_path}")
    else:
        ordered = sorted(str(v) for v in values)
        if len(ordered) > IGNORE:
            raise GeedlError(
                f"The field has {len(ordered)} distinct values; at most 255 classes fit a class "
                "raster. Give a class map that groups them."
            )
        lookup = {v: ordered.index(str(v)) for v in values}
        result = legend or Legend([LegendClass(i, name) for i, name in enumerate(ordered)])
    if legend is not None:
        legend.check_ids([c for c in lookup.values() if c is not None], f"The label layer {vector_path}")
    return lookup, result


def _prepare(
    vector_path: str | Path,
    reference_raster_path: str | Path,
    class_field: str,
    class_map: dict[str, int] | None,
    inward_buffer_m: float,
    layer_name: str | None,
    legend: Legend | None,
    feedback: Feedback,
) -> _Prepared:
    if inward_buffer_m < 0 or not np.isfinite(inward_buffer_m):
        raise GeedlError(f"The inward buffer ({inward_buffer_m} m) must be a distance >= 0 in metres.")
    reference = open_raster(reference_raster_path)
    grid_wkt = reference.GetProjection()
    if not grid_wkt:
        raise GeedlError(
            f"{reference_raster_path} has no coordinate reference system; the labels cannot be "
            "placed on its grid."
        )
    grid_srs = gis_srs(reference.GetSpatialRef())
    gt = reference.GetGeoTransform()
    width, height = reference.RasterXSize, reference.RasterYSize
    dataset, layer = open_vector_layer(vector_path, layer_name)
    defn = layer.GetLayerDefn()
    field_names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    matches = [n for n in field_names if n.lower() == class_field.lower()]
    if not matches:
        raise GeedlError(
            f"{vector_path} has no field {class_field!r}; its fields: "
            f"{', '.join(field_names) or 'none'}. Choose the field that holds the class."
        )
    field_index = defn.GetFieldIndex(matches[0])
    field_type = defn.GetFieldDefn(field_index).GetType()
    is_integer = field_type in _INTEGER_TYPES
    if field_type == ogr.OFTReal and class_map is None:
        is_integer = True
    stored = read_layer_legend(vector_path, layer) if class_map is None and is_integer else None
    name_index = defn.GetFieldIndex("class_name")
    lookup, result_legend = _class_lookup(
        layer, field_index, is_integer, class_map, stored, legend, str(vector_path), name_index
    )

    layer_srs = layer.GetSpatialRef()
    report = RasterizeReport()
    transform = None
    if layer_srs is None:
        feedback.info(f"Warning: {vector_path} has no CRS; assuming the grid's CRS ({crs_label(grid_srs)}).")
    elif not same_crs(gis_srs(layer_srs), grid_srs):
        transform = osr.CoordinateTransformation(gis_srs(layer_srs), grid_srs)
    extent = (gt[0], gt[0] + gt[1] * width, gt[3] + gt[5] * height, gt[3])
    frame = (
        metric_frame(grid_srs, extent, f"The grid of {reference_raster_path}")
        if inward_buffer_m > 0
        else None
    )

    memory = ogr.GetDriverByName("Memory").CreateDataSource("labels")
    out_layer = memory.CreateLayer("labels", grid_srs, ogr.wkbMultiPolygon)
    out_layer.CreateField(ogr.FieldDefn("lbl_class", ogr.OFTInteger))
    out_layer.CreateField(ogr.FieldDefn("lbl_seq", ogr.OFTInteger))
    out_defn = out_layer.GetLayerDefn()
    unmapped: set[str] = set()
    total = max(1, layer.GetFeatureCount())
    layer.ResetReading()
    for number, feature in enumerate(layer):
        if number % 1000 == 0:
            feedback.check_cancelled()
            feedback.progress(100.0 * number / total, "reading labels")
        report.features += 1
        value = feature.GetField(field_index) if feature.IsFieldSetAndNotNull(field_index) else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        class_id = lookup.get(value) if value is not None else None
        if class_id is None:
            report.unmapped += 1
            unmapped.add(str(value))
            continue
        geom = feature.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            report.empty += 1
            continue
        geom = geom.Clone()
        if ogr.GT_Flatten(geom.GetGeometryType()) not in POLYGONAL:
            geom = geom.GetLinearGeometry() if geom.HasCurveGeometry() else geom
            if ogr.GT_Flatten(geom.GetGeometryType()) not in POLYGONAL:
                report.not_polygons += 1
                continue
        if not is_valid(geom):
            geom = make_valid(geom)
            if geom is None:
                report.unrepairable += 1
                continue
            report.repaired += 1
        if transform is not None:
            geom.Transform(transform)
        if frame is not None:
            shrunk = frame.metric(geom).Buffer(-frame.metres_to_units(inward_buffer_m))
            if shrunk is None or shrunk.IsEmpty():
                report.vanished_by_buffer += 1
                continue
            geom = frame.back(shrunk)
        new = ogr.Feature(out_defn)
        new.SetGeometryDirectly(ogr.ForceToMultiPolygon(geom))
        new.SetField(0, int(class_id))
        new.SetField(1, number)
        out_layer.CreateFeature(new)
        report.used += 1
    report.unmapped_values = sorted(unmapped)
    del layer, dataset  # close the source layer
    return _Prepared(memory, out_layer, result_legend, report, grid_wkt, tuple(gt), width, height)


def _burn(
    prepared: _Prepared, xoff: int, yoff: int, xsize: int, ysize: int, ignore: int, overlap: str
) -> np.ndarray:
    """The class ids of one window; overlapping polygons of different classes -> ignore."""
    x0, dx, rx, y0, ry, dy = prepared.geotransform
    window_gt = (x0 + xoff * dx + yoff * rx, dx, rx, y0 + xoff * ry + yoff * dy, ry, dy)

    def rasterize(layer: ogr.Layer) -> np.ndarray:
        target = gdal.GetDriverByName("MEM").Create("", xsize, ysize, 1, gdal.GDT_Byte)
        target.SetGeoTransform(window_gt)
        target.SetProjection(prepared.srs_wkt)
        target.GetRasterBand(1).Fill(ignore)
        gdal.RasterizeLayer(target, [1], layer, options=["ATTRIBUTE=lbl_class"])
        return target.GetRasterBand(1).ReadAsArray()

    forward = rasterize(prepared.layer)
    if overlap == "last":
        return forward
    reverse_layer = prepared.memory.ExecuteSQL("SELECT * FROM labels ORDER BY lbl_seq DESC", dialect="OGRSQL")
    try:
        backward = rasterize(reverse_layer)
    finally:
        prepared.memory.ReleaseResultSet(reverse_layer)
    conflict = forward != backward
    if conflict.any():
        prepared.report.conflict_pixels += int(conflict.sum())
        forward[conflict] = ignore
    return forward


def rasterize_to_array(
    vector_path: str | Path,
    reference_raster_path: str | Path,
    class_field: str = "class_id",
    class_map: dict[str, int] | None = None,
    inward_buffer_m: float = 0.0,
    ignore: int = IGNORE,
    *,
    layer: str | None = None,
    legend: Legend | None = None,
    overlap: str = "ignore",
    feedback: Feedback | None = None,
) -> tuple[np.ndarray, Legend]:
    """A uint8 (rows, cols) class array on the reference raster's grid, and its legend.

    ``ignore`` fills pixels outside every (mapped) polygon. ``overlap``: ``ignore`` (pixels
    claimed by different classes become ignore) or ``last`` (the later feature wins).
    """
    if overlap not in ("ignore", "last"):
        raise GeedlError(f"overlap {overlap!r} must be 'ignore' or 'last'.")
    if not 0 <= int(ignore) <= 255:
        raise GeedlError(f"ignore value {ignore} must fit in 0..255.")
    feedback = feedback or silent()
    prepared = _prepare(
        vector_path,
        reference_raster_path,
        class_field,
        class_map,
        float(inward_buffer_m),
        layer,
        legend,
        feedback.sub(0, 50),
    )
    if int(ignore) in prepared.legend.ids:
        raise GeedlError(f"The ignore value {ignore} is also a class id; choose another ignore value.")
    array = _burn(prepared, 0, 0, prepared.width, prepared.height, int(ignore), overlap)
    for text in prepared.report.warnings():
        feedback.info("Warning: " + text)
    feedback.progress(100.0, "rasterized")
    return array, prepared.legend


@dataclass
class RasterizeParams:
    """Label layer -> class GeoTIFF on the grid of ``reference`` (see the module docstring)."""

    vector: str | Path
    reference: str | Path
    out: str | Path
    class_field: str = "class_id"
    class_map: dict[str, int] | None = None
    inward_buffer_m: float = 0.0
    layer: str | None = None
    overlap: str = "ignore"
    block_size: int = 2048
    backup_existing: bool = True


@dataclass
class RasterizeResult:
    path: Path
    legend: Legend
    class_counts: dict[int, int]
    report: RasterizeReport
    seconds: float
    warnings: list[str]

    def summary(self) -> dict[str, Any]:
        names = self.legend.names
        return {
            "raster": str(self.path),
            "features_used": self.report.used,
            "features": self.report.features,
            "classes": {names.get(k, str(k)): v for k, v in sorted(self.class_counts.items())},
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }


def run_rasterize(params: RasterizeParams, feedback: Feedback | None = None) -> RasterizeResult:
    """Write the class raster (uint8, 255 = ignore, legend + colour table) window by window."""
    feedback = feedback or silent()
    started = time.monotonic()
    if params.overlap not in ("ignore", "last"):
        raise GeedlError(f"overlap {params.overlap!r} must be 'ignore' or 'last'.")
    out = check_writable(params.out)
    for source in (params.vector, params.reference):
        if Path(out).resolve() == Path(source).resolve():
            raise GeedlError(f"The output would overwrite {source}; choose another name.")
    prepared = _prepare(
        params.vector,
        params.reference,
        params.class_field,
        params.class_map,
        float(params.inward_buffer_m),
        params.layer,
        None,
        feedback.sub(0, 30),
    )
    counts = np.zeros(256, dtype=np.int64)
    windows = list(
        iter_windows(prepared.width, prepared.height, max(512, int(params.block_size) // 512 * 512))
    )
    sub = feedback.sub(30, 100)
    with atomic_path(out, keep_backup=params.backup_existing) as tmp:
        target = create_geotiff(
            tmp,
            prepared.width,
            prepared.height,
            1,
            "uint8",
            prepared.geotransform,
            prepared.srs_wkt,
            descriptions=["class"],
            nodata=IGNORE,
            metadata={
                "GEEDL_LABELS": str(params.vector),
                "GEEDL_CLASS_FIELD": params.class_field,
                "GEEDL_INWARD_BUFFER_M": str(params.inward_buffer_m),
            },
        )
        try:
            write_legend(target, prepared.legend)
            band = target.GetRasterBand(1)
            for number, window in enumerate(windows):
                feedback.check_cancelled()
                block = _burn(
                    prepared, window.xoff, window.yoff, window.xsize, window.ysize, IGNORE, params.overlap
                )
                band.WriteArray(block, window.xoff, window.yoff)
                counts += np.bincount(block.ravel(), minlength=256)
                sub.progress(100.0 * (number + 1) / len(windows), "rasterizing")
            target.FlushCache()
        finally:
            target = None
    warnings = prepared.report.warnings()
    if prepared.report.used == 0:
        warnings.append("No feature was rasterized; the raster is all 'ignore'.")
    for text in warnings:
        feedback.info("Warning: " + text)
    class_counts = {cid: int(counts[cid]) for cid in prepared.legend.ids}
    return RasterizeResult(
        Path(out), prepared.legend, class_counts, prepared.report, time.monotonic() - started, warnings
    )
