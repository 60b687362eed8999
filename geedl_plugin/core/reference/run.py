"""One reference-label run, as the CLI's ``reference`` command and the dock both make it.

The CLI and the labels step of the dock must produce the same files from the same inputs (a
label raster on the composite's grid, styled with the project's classes, and the remap table
beside it), so the steps live here once: :func:`run_local_reference` (a local raster or polygon
layer), :func:`reference_request` and :func:`run_ee_reference` (an Earth Engine product), and
:func:`run_reference`, which checks the outputs before any long work and picks one of them.
The result says how many pixels each project class got and repeats what the core reported on
the way (e.g. that a reference in another CRS was reprojected), so a user interface can show it.

Also here, because the dock's remap editor needs them and they are plain GDAL: the fields of a
polygon layer (:func:`vector_fields`) and a table that makes every value of a field its own class
(:func:`value_table`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr

from ..errors import GeedlError
from ..progress import Feedback, silent
from ..vector_io import open_vector_layer
from .legends import PRODUCTS, product_spec
from .remap import DEFAULT_COLORS, ProjectClass, RemapTable
from .target import CompositeTarget, read_target

gdal.UseExceptions()
ogr.UseExceptions()

LOCAL = "local"


@dataclass
class ReferenceJob:
    """What to turn into labels: ``product`` is ``local`` (``source`` is a file) or a product key."""

    product: str
    composite: str | Path
    out_mask: str | Path
    table: RemapTable
    source: str | Path | None = None
    legend_product: str | None = None  # local raster: the product whose legend it follows
    field_name: str | None = None  # local polygons: the class attribute
    layer: str | None = None
    band: int = 1
    nodata: float | None = None
    inward_buffer_m: float = 0.0
    year: int | None = None  # Earth Engine: edition of an annual product
    start: str | None = None  # Dynamic World period (default: the composite's dates)
    end: str | None = None
    threshold: float = 50.0  # JRC occurrence threshold, percent
    project: str | None = None  # Google Cloud project for Earth Engine
    tile_size: int = 512
    workers: int = 4


@dataclass
class ReferenceOutcome:
    """The label raster and table made, per-class pixel counts and the core's messages."""

    mask: Path
    table_path: Path
    source: str
    table: RemapTable
    class_pixels: dict[str, int]
    labelled_fraction: float
    messages: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def legend(self) -> dict[str, Any]:
        """The labels step's legend of the raster (``core.labels.legend`` dict)."""
        from .output import label_legend

        return label_legend(self.table).to_dict()

    def describe(self) -> str:
        counts = ", ".join(f"{name} {count:,d} px" for name, count in self.class_pixels.items())
        return f"{counts} ({100.0 * self.labelled_fraction:.1f} % labelled)"


def _collecting(feedback: Feedback, messages: list[str]) -> Feedback:
    """A feedback that keeps every info message as well as passing it on."""

    def on_message(text: str) -> None:
        messages.append(text)
        feedback.info(text)

    return Feedback(on_progress=feedback.progress, on_message=on_message, is_cancelled=feedback.cancelled)


def local_legend_product(table: RemapTable, legend_product: str | None = None) -> str | None:
    """The product whose legend a local raster follows: given, else the table's source product."""
    if legend_product:
        return legend_product
    if not table.field and table.source in PRODUCTS:
        return table.source
    return None


def run_local_reference(job: ReferenceJob, feedback: Feedback | None = None) -> ReferenceOutcome:
    """A local raster or polygon layer -> the styled label raster and the table beside it."""
    from .local import reference_labels
    from .output import save_table_beside, write_label_raster

    feedback = feedback or silent()
    if not job.source:
        raise GeedlError("Choose the local reference: a class raster or a polygon layer.")
    messages: list[str] = []
    collecting = _collecting(feedback, messages)
    target = read_target(job.composite)
    result = reference_labels(
        job.source,
        job.composite,
        job.table,
        product=local_legend_product(job.table, job.legend_product),
        field_name=job.field_name,
        band=job.band,
        nodata=job.nodata,
        inward_buffer_m=job.inward_buffer_m,
        layer=job.layer,
        feedback=collecting,
    )
    mask = write_label_raster(job.out_mask, result.labels, target, job.table, result.source)
    table_path = save_table_beside(mask, job.table)
    summary = result.summary()
    return ReferenceOutcome(
        mask,
        table_path,
        result.source,
        job.table,
        dict(result.counts),
        float(summary["labelled_fraction"]),
        messages + [m for m in result.messages if m not in messages],
        summary,
    )


def reference_request(
    product: str,
    table: RemapTable,
    target: CompositeTarget,
    year: int | None = None,
    start: str | None = None,
    end: str | None = None,
    threshold: float = 50.0,
) -> Any:
    """The Earth Engine request for ``product`` on the composite's grid (Dynamic World: the
    composite's dates unless given); refuses a region the product does not cover."""
    from ..earthengine.reference import ReferenceRequest, check_extent, grid_of

    spec = product_spec(product)
    if spec.temporal == "per_scene" and not (start and end):
        start, end = target.dates()
    request = ReferenceRequest(
        spec,
        table,
        grid_of(target),
        target.lonlat_region(),
        year=year,
        start=start,
        end=end,
        threshold=threshold,
    )
    check_extent(request, target.lonlat_bounds())
    return request


def class_pixels(path: str | Path, table: RemapTable) -> tuple[dict[str, int], float]:
    """Pixels per project class of a label raster, and the labelled fraction."""
    dataset = gdal.Open(str(path))
    try:
        values = dataset.GetRasterBand(1).ReadAsArray()
    finally:
        dataset = None
    counts = np.bincount(np.asarray(values, dtype=np.uint8).ravel(), minlength=256)
    per_class = {c.name: int(counts[c.id]) for c in table.classes}
    labelled = int(values.size - counts[table.ignore])
    return per_class, labelled / max(1, int(values.size))


def run_ee_reference(job: ReferenceJob, feedback: Feedback | None = None) -> ReferenceOutcome:
    """An Earth Engine product -> the styled label raster (downloaded on the composite's grid)
    and the table beside it. Initialises Earth Engine with ``job.project`` when needed."""
    from ..earthengine.connection import initialize, is_initialized, resolve_project
    from .output import save_table_beside

    feedback = feedback or silent()
    messages: list[str] = []
    collecting = _collecting(feedback, messages)
    target = read_target(job.composite)
    if not is_initialized():
        collecting.progress(0, "connecting to Earth Engine")
        initialize(resolve_project(job.project))
    from ..earthengine import reference as ee_reference

    request = reference_request(job.product, job.table, target, job.year, job.start, job.end, job.threshold)
    details = ee_reference.fetch_reference(
        request, job.out_mask, tile_size=job.tile_size, workers=job.workers, feedback=collecting
    )
    table_path = save_table_beside(job.out_mask, job.table)
    counts, fraction = class_pixels(job.out_mask, job.table)
    source = f"{request.product.key}:{request.product.asset_id}"
    return ReferenceOutcome(
        Path(job.out_mask), table_path, source, job.table, counts, fraction, messages, details
    )


def run_reference(job: ReferenceJob, feedback: Feedback | None = None) -> ReferenceOutcome:
    """Check the outputs first, then make the labels from a local file or an Earth Engine product."""
    from ..atomic import check_writable

    if Path(job.out_mask).resolve() == Path(job.composite).resolve():
        raise GeedlError("The label raster would overwrite the composite; choose another file name.")
    check_writable(job.out_mask)
    if job.product == LOCAL:
        return run_local_reference(job, feedback)
    product_spec(job.product)
    return run_ee_reference(job, feedback)


# -- helpers for remap editors -------------------------------------------------------------------


def vector_fields(path: str | Path, layer: str | None = None) -> list[str]:
    """The attribute fields of a polygon layer (text and integer ones: what can hold a class)."""
    source, found = open_vector_layer(path, layer)
    definition = found.GetLayerDefn()
    kinds = (ogr.OFTString, ogr.OFTInteger, ogr.OFTInteger64)
    names = [
        definition.GetFieldDefn(i).GetName()
        for i in range(definition.GetFieldCount())
        if definition.GetFieldDefn(i).GetType() in kinds
    ]
    del source
    return names


def value_table(values: list[str], field_name: str, source: str = LOCAL) -> RemapTable:
    """Every value of a polygon layer's field as its own project class (ids 0..n-1)."""
    if not values:
        raise GeedlError(f"Field {field_name!r} holds no values to make classes of.")
    if len(values) > 254:
        raise GeedlError(
            f"Field {field_name!r} has {len(values)} distinct values, more than a label raster holds; "
            "map them onto fewer classes."
        )
    classes = [ProjectClass(i, str(v), DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i, v in enumerate(values)]
    return RemapTable(
        source=source,
        classes=classes,
        mapping={str(v): i for i, v in enumerate(values)},
        field=field_name,
        name=f"{field_name}-all",
        description=f"Every value of {field_name} as its own class.",
    )
