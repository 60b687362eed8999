"""Local reference rasters and polygon layers -> a label raster on the composite's grid.

Any class raster (a CORINE GeoTIFF from the EEA, a national crop map, a previous classification)
or polygon layer (OSM land use, a field register) can be a label source. Both end as the same
thing rule labels end as: a uint8 class raster on exactly the composite's grid, 255 = ignore,
styled with the project's classes, with the remap table saved beside it; from there polygons,
hand correction, rasterize, chips and noise correction are the labels step's.

Rasters are warped onto the composite grid with **nearest neighbour** (class values must never be
averaged into a class that does not exist), in the composite's CRS: a reference in another CRS
(CORINE's EPSG:3035) is reprojected and the user is told so. Values are read as they are (a
8/16/32-bit class raster), nodata (the band's, or given) becomes ignore, then the remap table
turns product values into project classes. EEA's CORINE downloads store grid codes 1..44
(48 = no data) instead of CLC codes; when a raster declared as CORINE holds only grid codes they
are translated, and the user is told.

Polygon layers go through the labels step's rasterizer (``core.labels.rasterize``) with the
remap table as the ``class_map`` of the attribute field (OSM: ``fclass``); a layer in another
CRS is reprojected first (and the user told), so the rasterizer sees the composite's CRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import GeedlError
from ..progress import Feedback, silent
from ..raster_io import crs_label, open_raster, same_crs, srs_from_wkt
from ..vector_io import open_vector_layer
from .legends import CORINE_GRID_CODES, CORINE_GRID_NODATA, ProductSpec, product_spec
from .remap import RemapTable, check_table_for_product
from .target import CompositeTarget, read_target

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".kml", ".gml", ".sqlite")
_WARP_NODATA = -2147483648  # Int32 marker for "no source pixel" after the warp


@dataclass
class ReferenceLabels:
    """A label array on the composite grid, with what made it."""

    labels: np.ndarray
    table: RemapTable
    target: CompositeTarget
    source: str
    messages: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    unmapped_values: list[Any] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        labelled = int((self.labels != self.table.ignore).sum())
        return {
            "source": self.source,
            "pixels": int(self.labels.size),
            "labelled": labelled,
            "labelled_fraction": round(labelled / max(1, self.labels.size), 4),
            "class_pixels": self.counts,
            "unmapped_values": [str(v) for v in self.unmapped_values[:50]],
        }


def is_vector(path: str | Path) -> bool:
    """A polygon layer (by extension, else by what GDAL opens it as)."""
    path = Path(path)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        return True
    try:
        source = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    except RuntimeError:
        return False
    return source is not None and source.GetLayerCount() > 0


def _counts(labels: np.ndarray, table: RemapTable) -> dict[str, int]:
    values = np.bincount(labels.ravel(), minlength=256)
    return {c.name: int(values[c.id]) for c in table.classes}


def _check_labelled(labels: np.ndarray, table: RemapTable, source: str) -> None:
    if not (labels != table.ignore).any():
        raise GeedlError(
            f"No pixel of {source} maps to a project class on the composite's grid: either it does "
            "not overlap the composite, or the remap table names none of the classes present there. "
            f"Project classes: {table.describe_classes()}."
        )


# -- rasters ----------------------------------------------------------------------------------------


def warp_to_target(
    source: str | Path,
    target: CompositeTarget,
    band: int = 1,
    nodata: float | None = None,
    feedback: Feedback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of ``band`` of ``source`` on the composite grid, nearest neighbour.

    A source in another CRS is reprojected (and said so); one without a CRS is refused."""
    feedback = feedback or silent()
    dataset = open_raster(source)
    name = Path(source).name
    if not 1 <= band <= dataset.RasterCount:
        raise GeedlError(f"{name} has {dataset.RasterCount} band(s); band {band} does not exist.")
    wkt = dataset.GetProjection()
    if not wkt:
        raise GeedlError(
            f"{name} has no coordinate reference system, so it cannot be placed on the composite. "
            "Assign its CRS (gdal_edit -a_srs EPSG:...) and try again."
        )
    source_srs = srs_from_wkt(wkt)
    if not same_crs(source_srs, target.srs):
        feedback.info(
            f"{name} is in {crs_label(source_srs)}; reprojected to the composite's {target.crs_label} "
            "with nearest neighbour (class values are never blended)."
        )
    raster_band = dataset.GetRasterBand(band)
    declared = raster_band.GetNoDataValue()
    src_nodata = nodata if nodata is not None else declared
    is_float = raster_band.DataType in (gdal.GDT_Float32, gdal.GDT_Float64)
    out_type = gdal.GDT_Float64 if is_float else gdal.GDT_Int32
    dst_nodata: float = float("nan") if is_float else float(_WARP_NODATA)
    if raster_band.DataType == gdal.GDT_UInt32:
        out_type, dst_nodata = gdal.GDT_Float64, float("nan")
    xmin, ymin, xmax, ymax = target.bounds
    options = dict(
        format="MEM",
        outputBounds=(xmin, ymin, xmax, ymax),
        width=target.width,
        height=target.height,
        dstSRS=target.crs_wkt,
        resampleAlg="near",
        outputType=out_type,
        dstNodata=dst_nodata,
        multithread=False,
    )
    if src_nodata is not None:
        options["srcNodata"] = src_nodata
    if dataset.RasterCount > 1:
        dataset = gdal.Translate("", dataset, format="VRT", bandList=[band])
        band = 1
    warped = gdal.Warp("", dataset, **options)
    values = warped.GetRasterBand(1).ReadAsArray()
    if is_float or out_type == gdal.GDT_Float64:
        valid = np.isfinite(values)
    else:
        valid = values != _WARP_NODATA
    if src_nodata is not None and not (isinstance(src_nodata, float) and np.isnan(src_nodata)):
        valid &= values != src_nodata
    if not valid.any():
        raise GeedlError(
            f"{name} does not overlap the composite {target.path.name} (or holds only no data "
            "there). Choose a reference that covers the composite's area."
        )
    return values, valid


def corine_grid_codes(values: np.ndarray, valid: np.ndarray, feedback: Feedback) -> np.ndarray:
    """EEA grid codes 1..44 -> CLC codes 111..523 (48 and other codes -> invalid)."""
    present = np.unique(values[valid])
    if present.size == 0 or present.max() > CORINE_GRID_NODATA + 80 or (present >= 111).any():
        return values
    feedback.info(
        "The CORINE raster holds EEA grid codes (1-44, 48 = no data), not CLC codes; translated "
        "to CLC codes 111-523 before remapping."
    )
    table = np.full(256, -1, dtype=np.int64)
    for code, clc in CORINE_GRID_CODES.items():
        table[code] = clc
    ints = np.clip(values.astype(np.int64), 0, 255)
    translated = np.where(valid, table[ints], -1)
    valid &= translated >= 0
    return translated


def labels_from_raster(
    source: str | Path,
    target: CompositeTarget | str | Path,
    table: RemapTable,
    product: str | ProductSpec | None = None,
    band: int = 1,
    nodata: float | None = None,
    feedback: Feedback | None = None,
) -> ReferenceLabels:
    """A class raster (any CRS/grid) -> project labels on the composite grid."""
    feedback = feedback or silent()
    target = target if isinstance(target, CompositeTarget) else read_target(target)
    spec = None
    if product is not None:
        spec = product if isinstance(product, ProductSpec) else product_spec(product)
        check_table_for_product(table, spec)  # before the warp: a wrong table fails in a second
    elif table.field:
        raise GeedlError(
            f"The remap table reads the attribute field {table.field!r} of a polygon layer, but "
            f"{Path(source).name} is a raster. Use a table whose 'from' values are raster classes."
        )
    values, valid = warp_to_target(source, target, band, nodata, feedback)
    if spec is not None and spec.key == "corine":
        values = corine_grid_codes(values, valid, feedback)
    legend = spec.legend if spec is not None else None
    product_nodata = list(spec.nodata_values) if spec is not None else []
    product_nodata = [v for v in product_nodata if v not in table.mapping]
    labels = table.apply(np.where(valid, values, 0), legend, nodata=product_nodata, valid=valid)
    present = np.unique(values[valid]).tolist()
    unmapped = [v for v in present if table.class_of(int(v)) == table.ignore] if present else []
    if spec is not None:
        foreign = [v for v in present if int(v) not in spec.legend]
        if foreign:
            feedback.info(
                f"Values {', '.join(str(int(v)) for v in foreign[:20])} are not {spec.title} classes; "
                "they are ignored (255)."
            )
    name = Path(source).name
    _check_labelled(labels, table, name)
    result = ReferenceLabels(
        labels,
        table,
        target,
        f"local:{name}" + (f" ({spec.key})" if spec else ""),
        counts=_counts(labels, table),
        unmapped_values=unmapped,
    )
    feedback.info(
        "Reference labels: "
        + ", ".join(f"{n} {c}" for n, c in result.counts.items())
        + f"; {int((labels == table.ignore).sum())} pixels ignored"
    )
    return result


# -- polygon layers --------------------------------------------------------------------------------


def field_values(path: str | Path, field_name: str, layer: str | None = None) -> list[str]:
    """Distinct values (as text) of ``field_name``; refuses a missing field, listing the fields."""
    source, found = open_vector_layer(path, layer)
    definition = found.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    if field_name not in fields:
        raise GeedlError(
            f"{Path(path).name} has no field {field_name!r}; its fields are {', '.join(fields) or 'none'}. "
            "Set 'field' in the remap table (OSM land use: fclass)."
        )
    values = set()
    found.ResetReading()
    for feature in found:
        value = feature.GetField(field_name)
        if value is not None and str(value).strip():
            values.add(str(value))
    del source
    return sorted(values)


def check_layer_crs(path: Path, target: CompositeTarget, layer: str | None, feedback: Feedback) -> None:
    """Refuse a layer without a CRS; say so when it is reprojected onto the composite's CRS (the
    labels step's rasterizer transforms the polygons)."""
    source, found = open_vector_layer(path, layer)
    srs = found.GetSpatialRef()
    del source
    if srs is None:
        raise GeedlError(
            f"{path.name} has no coordinate reference system; assign one (QGIS: Layer > Set CRS, "
            "or ogr2ogr -a_srs) so it can be placed on the composite."
        )
    srs = srs.Clone()
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if not same_crs(srs, target.srs):
        feedback.info(
            f"{path.name} is in {crs_label(srs)}; its polygons are reprojected to the composite's "
            f"{target.crs_label} before rasterizing."
        )


def labels_from_vector(
    source: str | Path,
    target: CompositeTarget | str | Path,
    table: RemapTable,
    field_name: str | None = None,
    inward_buffer_m: float = 0.0,
    layer: str | None = None,
    feedback: Feedback | None = None,
) -> ReferenceLabels:
    """Polygons with a class attribute -> project labels on the composite grid, through the
    labels step's rasterizer."""
    feedback = feedback or silent()
    target = target if isinstance(target, CompositeTarget) else read_target(target)
    path = Path(source)
    field_name = field_name or table.field
    if not field_name:
        raise GeedlError(
            f"Which field of {path.name} holds the classes? Give --field (OSM land use: fclass) or "
            "set 'field' in the remap table."
        )
    found = field_values(path, field_name, layer)
    by_field = _as_field_table(table, field_name)
    absent = by_field.validate_values(found, path.name)
    if absent:
        feedback.info(f"Values of the remap table absent from {path.name}: {', '.join(map(str, absent))}.")
    class_map = {value: by_field.class_of(value) for value in found}
    class_map = {k: v for k, v in class_map.items() if v != table.ignore}
    unmapped = [v for v in found if v not in class_map]
    try:
        from ..labels.rasterize import rasterize_to_array
    except ImportError as exc:
        raise GeedlError(
            "The labels module (geedl_plugin.core.labels) is missing; reinstall the plugin."
        ) from exc
    from .output import label_legend

    check_layer_crs(path, target, layer, feedback)
    array, _legend = rasterize_to_array(
        str(path),
        str(target.path),
        class_field=field_name,
        class_map=class_map,
        inward_buffer_m=float(inward_buffer_m),
        ignore=table.ignore,
        layer=layer,
        legend=label_legend(table),
        feedback=feedback,
    )
    labels = np.asarray(array).astype(np.uint8)
    if labels.shape != (target.height, target.width):
        raise GeedlError(
            f"Internal error: rasterized labels {labels.shape} differ from the composite grid "
            f"{target.height} x {target.width}."
        )
    _check_labelled(labels, table, path.name)
    result = ReferenceLabels(
        labels,
        table,
        target,
        f"local:{path.name}:{field_name}",
        counts=_counts(labels, table),
        unmapped_values=unmapped,
    )
    feedback.info(
        "Reference labels: "
        + ", ".join(f"{n} {c}" for n, c in result.counts.items())
        + (f"; unmapped values ignored: {', '.join(unmapped)}" if unmapped else "")
    )
    return result


def _as_field_table(table: RemapTable, field_name: str) -> RemapTable:
    if table.field == field_name:
        return table
    copy = RemapTable.from_dict({**table.to_dict(), "field": field_name})
    return copy


def reference_labels(
    source: str | Path,
    composite: str | Path,
    table: RemapTable,
    *,
    product: str | None = None,
    field_name: str | None = None,
    band: int = 1,
    nodata: float | None = None,
    inward_buffer_m: float = 0.0,
    layer: str | None = None,
    feedback: Feedback | None = None,
) -> ReferenceLabels:
    """A local raster or polygon layer as project labels on ``composite``'s grid."""
    path = Path(source)
    if not path.exists():
        raise GeedlError(f"Reference {path} does not exist.")
    if is_vector(path):
        return labels_from_vector(path, composite, table, field_name, inward_buffer_m, layer, feedback)
    return labels_from_raster(path, composite, table, product, band, nodata, feedback)
