"""Reference label rasters as every later step reads them.

A reference label raster is a class mask exactly like the rule masks of the labels step: a uint8
GeoTIFF on the composite's grid, project class ids, 255 = ignore (outside the mapped classes,
no data, outside the region), the labels step's legend (``GEEDL_LEGEND``, colour table and
category names, via :func:`geedl_plugin.core.labels.legend.write_legend`; the remap's
``others`` class is the legend's background, so polygons are drawn for the named classes only),
plus ``GEEDL_CLASSES`` (``{id: name}``, what training reads), where it came from
(``GEEDL_LABEL_SOURCE``) and the remap table (``GEEDL_REMAP``). The remap table is also saved
beside it (``labels.remap.json``), so the labels can be remade and the table edited; an existing
table is backed up first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..atomic import atomic_path, backup
from ..errors import GeedlError
from ..labels.legend import Legend as LabelLegend
from ..labels.legend import LegendClass, write_legend
from ..raster_io import create_geotiff
from .remap import RemapTable, remap_path_for
from .target import CompositeTarget

gdal.UseExceptions()


def label_legend(table: RemapTable) -> LabelLegend:
    """The labels step's legend of the project classes (``others`` = background)."""
    return LabelLegend(
        [LegendClass(c.id, c.name, c.color) for c in sorted(table.classes, key=lambda c: c.id)], table.others
    )


def legend_metadata(table: RemapTable, source: str) -> dict[str, str]:
    return {
        "GEEDL_CLASSES": json.dumps({str(c.id): c.name for c in table.classes}),
        "GEEDL_LABEL_SOURCE": source,
        "GEEDL_REMAP": table.to_json(),
    }


def style_label_raster(path: str | Path, table: RemapTable, source: str = "") -> None:
    """Legend (colour table, names, nodata 255) and metadata on an existing label raster."""
    if table.ignore != 255:
        raise GeedlError(f"Label rasters use 255 for ignore; the remap table says {table.ignore}.")
    dataset = gdal.Open(str(path), gdal.GA_Update)
    try:
        band = dataset.GetRasterBand(1)
        if band.DataType != gdal.GDT_Byte:
            raise GeedlError(f"{Path(path).name} is not a byte raster; label rasters are uint8.")
        band.SetDescription("class")
        write_legend(dataset, label_legend(table))
        for key, value in legend_metadata(table, source).items():
            dataset.SetMetadataItem(key, value)
        dataset.FlushCache()
    finally:
        dataset = None


def write_label_raster(
    path: str | Path,
    labels: np.ndarray,
    target: CompositeTarget,
    table: RemapTable,
    source: str,
    extra_metadata: dict[str, str] | None = None,
    keep_backup: bool = True,
) -> Path:
    """Write ``labels`` (uint8, the composite's shape) atomically, styled; an existing file is
    backed up first (it may hold hand edits)."""
    if labels.shape != (target.height, target.width):
        raise GeedlError(
            f"Internal error: labels {labels.shape} do not match the composite "
            f"{target.height} x {target.width}."
        )
    metadata = {**legend_metadata(table, source), **(extra_metadata or {})}
    with atomic_path(path, keep_backup=keep_backup) as tmp:
        dataset = create_geotiff(
            tmp,
            target.width,
            target.height,
            1,
            "uint8",
            target.geotransform,
            target.crs_wkt,
            ["class"],
            metadata,
            table.ignore,
        )
        try:
            dataset.GetRasterBand(1).WriteArray(labels.astype(np.uint8, copy=False))
            dataset.FlushCache()
        finally:
            dataset = None
        style_label_raster(tmp, table, source)
    return Path(path)


def save_table_beside(labels_path: str | Path, table: RemapTable) -> Path:
    """``labels.remap.json`` beside the labels; a different existing table is backed up."""
    path = remap_path_for(labels_path)
    if path.exists():
        try:
            same = json.loads(path.read_text(encoding="utf-8")) == table.to_dict()
        except (OSError, ValueError):
            same = False
        if not same:
            backup(path)
    return table.save(path)
