"""Reference products as label sources in Earth Engine, on the composite's grid.

For each product (:mod:`geedl_plugin.core.reference.legends`) the graph is:

1. the product image: the right band of the right image (``select``): the year's image of an
   annual collection (CORINE epochs, CDL, AAFC; the latest when no year is given), WorldCover
   v200's single image, Dynamic World's ``label`` reduced with ``mode`` over the recipe's dates
   (one image per Sentinel-2 scene, so a period needs the most frequent label), JRC occurrence
   turned into 0 not water / 1 water by ``occurrence >= threshold`` (occurrence is masked where
   water was never seen, hence ``unmask(0)`` first);
2. ``reproject`` onto the composite's grid (its EPSG code and ``crsTransform``): Earth Engine
   resamples with nearest neighbour unless told otherwise, which is what class values need
   (``resample`` is never called, so a 100 m CORINE pixel is copied to its 10 m pixels, never
   blended into a class that does not exist);
3. ``remap(from, to, defaultValue=255)`` into the project's classes: unmapped classes become
   255 (ignore), and masked pixels (no data) stay masked, written as 255 on download;
4. clipped to the composite's footprint, ``uint8``, band ``class``.

The label raster is fetched with the composite's downloader on exactly the composite's grid, and
styled (colour table, class names) like every geedl label raster. Before any download the
region is checked against the product's coverage: offline against the catalog's extent, then in
Earth Engine by counting the product's images and valid pixels over the region, so "CDL over
Germany" is a clear error, not a file full of 255.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GeedlError
from ..progress import Feedback, silent
from ..reference.legends import DEFAULT_JRC_THRESHOLD, JRC_OCCURRENCE_PALETTE, ProductSpec
from ..reference.remap import RemapTable, check_table_for_product
from ..reference.target import CompositeTarget
from .connection import load_ee, translate_error
from .preview import VisParams
from .query import check_crs_code
from .tiling import Grid

ee = load_ee()

BAND = "class"
COVERAGE_SCALE_MIN_M = 100.0


@dataclass
class ReferenceRequest:
    """What to fetch: a product, its remap, the composite grid and region, the period."""

    product: ProductSpec
    table: RemapTable
    grid: Grid
    region: dict[str, Any]
    year: int | None = None
    start: str | None = None
    end: str | None = None
    threshold: float = DEFAULT_JRC_THRESHOLD

    def __post_init__(self) -> None:
        check_table_for_product(self.table, self.product)
        self.product.check_year(self.year)
        if self.product.key == "jrc" and not 0.0 <= float(self.threshold) <= 100.0:
            raise GeedlError(f"JRC occurrence threshold {self.threshold} must be a percentage, 0 to 100.")
        if self.product.temporal == "per_scene" and not (self.start and self.end):
            raise GeedlError(
                f"{self.product.title} is one image per Sentinel-2 scene: give the period "
                "(--start/--end, or a composite that records its dates) to take the mode over."
            )

    def describe(self) -> dict[str, Any]:
        return {
            "product": self.product.key,
            "asset_id": self.product.asset_id,
            "band": self.product.band,
            "year": self.year,
            "start": self.start,
            "end_exclusive": self.end,
            "threshold": self.threshold if self.product.key == "jrc" else None,
            "grid": self.grid.to_dict(),
            "remap": {
                "name": self.table.name,
                "classes": self.table.class_names,
                "mapped_values": len(self.table.mapping),
                "others": self.table.others,
            },
        }


# -- the grid -------------------------------------------------------------------------------------


def grid_of(target: CompositeTarget) -> Grid:
    """The composite's grid as Earth Engine needs it (EPSG code, square north-up pixels)."""
    x0, dx, _, y0, _, dy = target.geotransform
    if abs(abs(dy) - dx) > 1e-9 * max(1.0, dx):
        raise GeedlError(
            f"{target.path.name} has non-square pixels ({dx} x {abs(dy)}); Earth Engine "
            "references need square pixels. Rebuild the composite."
        )
    epsg = target.epsg
    if epsg is None:
        raise GeedlError(
            f"{target.path.name} is in {target.crs_label}, which has no EPSG code; Earth Engine "
            "needs one. Build the composite in a UTM zone (EPSG:326xx)."
        )
    return Grid(check_crs_code(epsg), float(x0), float(y0), float(dx), int(target.width), int(target.height))


def crs_transform(grid: Grid) -> list[float]:
    return [grid.scale, 0.0, grid.x0, 0.0, -grid.scale, grid.y0]


def region_geometry(region: dict[str, Any]) -> Any:
    return ee.Geometry(region, "EPSG:4326", False)


# -- the graph ------------------------------------------------------------------------------------


def _year_filter(collection: Any, year: int | None) -> Any:
    if year is None:
        return collection
    return collection.filterDate(f"{int(year):04d}-01-01", f"{int(year) + 1:04d}-01-01")


def source_collection(request: ReferenceRequest) -> Any | None:
    """The product's images over the region (and year / period); None for single images."""
    spec = request.product
    if not spec.is_collection:
        return None
    collection = ee.ImageCollection(spec.asset_id).filterBounds(region_geometry(request.region))
    if spec.temporal == "per_scene":
        return collection.filterDate(request.start, request.end)
    return _year_filter(collection, request.year)


def product_image(request: ReferenceRequest) -> Any:
    """Step 1: the product's class band over the region (values of the product's legend)."""
    spec = request.product
    if spec.key == "jrc":
        occurrence = ee.Image(spec.asset_id).select(spec.band)
        return occurrence.unmask(0).gte(float(request.threshold)).rename(spec.band)
    collection = source_collection(request)
    if spec.temporal == "per_scene":
        return collection.select(spec.band).mode().rename(spec.band)
    latest = collection.sort("system:time_start", False).first()
    return ee.Image(latest).select(spec.band)


def on_grid(image: Any, grid: Grid) -> Any:
    """Step 2: onto the composite grid; Earth Engine's default resampling is nearest neighbour."""
    return image.reproject(crs=grid.crs, crsTransform=crs_transform(grid))


def remap_lists(request: ReferenceRequest) -> tuple[list[int], list[int]]:
    keys, targets = request.table.lookup(request.product.legend)
    drop = set(request.product.nodata_values) - set(int(v) for v in request.table.mapping)
    pairs = [(int(k), int(t)) for k, t in zip(keys, targets) if int(k) not in drop]
    return [k for k, _ in pairs], [t for _, t in pairs]


def reference_image(request: ReferenceRequest) -> Any:
    """Steps 1-4: the project's class ids (uint8, band ``class``) on the composite grid."""
    source, target = remap_lists(request)
    if not source:
        raise GeedlError("The remap table maps no product class; add at least one mapping.")
    image = on_grid(product_image(request), request.grid)
    image = image.remap(source, target, request.table.ignore)
    return image.clip(region_geometry(request.region)).toUint8().rename(BAND)


def download_image(request: ReferenceRequest) -> Any:
    """What computePixels fetches: masked pixels (no data) written as the ignore value."""
    return reference_image(request).unmask(request.table.ignore, False)


# -- coverage ---------------------------------------------------------------------------------------


def check_extent(request: ReferenceRequest, lonlat_bounds: tuple[float, float, float, float]) -> None:
    """Offline: the region must touch the product's documented extent."""
    spec = request.product
    if not spec.covers(lonlat_bounds):
        west, south, east, north = lonlat_bounds
        raise GeedlError(
            f"{spec.title} does not cover the region (lon {west:.3f}..{east:.3f}, "
            f"lat {south:.3f}..{north:.3f}): "
            f"it covers {spec.coverage} only. Choose a product that covers the area (worldcover and "
            "dynamicworld are global) or a local reference."
        )


def coverage_request(request: ReferenceRequest) -> Any:
    """One value.compute: how many product images touch the region and how many valid pixels
    the product has there (counted at a coarse scale, best effort: a yes/no, not a statistic)."""
    spec = request.product
    geometry = region_geometry(request.region)
    collection = source_collection(request)
    images = collection.size() if collection is not None else ee.Number(1)
    if collection is not None and spec.temporal != "per_scene":
        raw = ee.Image(collection.sort("system:time_start", False).first()).select(spec.band)
    elif collection is not None:
        raw = collection.select(spec.band).mode().rename(spec.band)
    else:
        raw = ee.Image(spec.asset_id).select(spec.band).unmask(0)
    scale = max(
        COVERAGE_SCALE_MIN_M,
        spec.scale_m,
        request.grid.scale * max(request.grid.width, request.grid.height) / 256.0,
    )
    counted = ee.Algorithms.If(
        ee.Number(images).gt(0),
        raw.reduceRegion(
            reducer=ee.Reducer.count(), geometry=geometry, scale=scale, bestEffort=True, maxPixels=1e9
        ).get(spec.band),
        0,
    )
    return ee.Dictionary({"images": images, "pixels": counted})


def check_coverage(request: ReferenceRequest) -> dict[str, Any]:
    """Raise a clear GeedlError when the product has no image or no valid pixel in the region."""
    spec = request.product
    try:
        info = coverage_request(request).getInfo()
    except Exception as exc:  # noqa: BLE001 - earthengine-api raises many types
        raise translate_error(exc) from exc
    images = int(info.get("images") or 0)
    pixels = int(info.get("pixels") or 0)
    when = ""
    if spec.temporal == "per_scene":
        when = f" between {request.start} and {request.end}"
    elif request.year is not None:
        when = f" for {request.year}"
    if images == 0:
        raise GeedlError(
            f"{spec.title} ({spec.asset_id}) has no image over the region{when}: it covers "
            f"{spec.coverage}. Choose another year or period, another product, or a local reference."
        )
    if pixels == 0:
        raise GeedlError(
            f"{spec.title} has no valid pixel in the region{when} (it covers {spec.coverage}); "
            "the labels would all be 'ignore'. Choose another product or a local reference."
        )
    return {"images": images, "pixels": pixels}


# -- previews ----------------------------------------------------------------------------------------


def _dense_palette(image: Any, values: list[int], colors: list[str], band: str) -> tuple[Any, VisParams]:
    """Sparse class values (CORINE 111..523) -> 0..n-1 so one palette entry per class."""
    indexed = image.remap(values, list(range(len(values)))).rename(band)
    palette = [c.lstrip("#") for c in colors]
    return indexed, VisParams([band], 0, max(0, len(values) - 1), palette)


def product_preview(request: ReferenceRequest) -> tuple[Any, VisParams]:
    """The product itself in its own colours (occurrence ramp for JRC)."""
    spec = request.product
    if spec.key == "jrc":
        occurrence = ee.Image(spec.asset_id).select(spec.band)
        return occurrence, VisParams([spec.band], 0, 100, [c.lstrip("#") for c in JRC_OCCURRENCE_PALETTE])
    legend = spec.legend
    return _dense_palette(product_image(request), legend.values, legend.colors, f"{spec.key}_class")


def labels_preview(request: ReferenceRequest) -> tuple[Any, VisParams]:
    """The remapped labels in the project's class colours (ignore stays transparent)."""
    legend = request.table.legend()
    return _dense_palette(reference_image(request), legend.values, legend.colors, "label_class")


def preview_urls(request: ReferenceRequest) -> dict[str, Any]:
    """XYZ tile URLs (and serialized layers to store) of the product and of the labels."""
    from .preview import tile_url

    out: dict[str, Any] = {}
    for kind, (image, vis) in (("product", product_preview(request)), ("labels", labels_preview(request))):
        url, serialized = tile_url(image, vis)
        out[kind] = {"url": url, "serialized": serialized}
    return out


# -- download ----------------------------------------------------------------------------------------


def fetch_reference(
    request: ReferenceRequest,
    out: str | Path,
    *,
    tile_size: int = 512,
    workers: int = 4,
    feedback: Feedback | None = None,
    tiles_dir: str | Path | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Check coverage, download the label raster on the composite grid, style it.

    Returns the download summary; the raster is uint8 with 255 = ignore, the project's colours
    and class names, and the request (product, year, remap) in its metadata.
    """
    from ..reference.output import style_label_raster
    from .download import download, ee_fetcher
    from .tiling import plan_tiles

    feedback = feedback or silent()
    coverage = check_coverage(request) if check else {}
    if coverage:
        feedback.info(f"{request.product.title}: {coverage['images']} image(s), data over the region.")
    image = download_image(request)
    plan = plan_tiles(request.grid, [BAND], "uint8", tile_size)
    source_id = hashlib.sha256(image.serialize(for_cloud_api=True).encode("utf-8")).hexdigest()
    metadata = {
        "GEEDL_SOURCE": "gee-reference",
        "GEEDL_REFERENCE": json.dumps(request.describe(), default=str),
    }
    result = download(
        plan,
        ee_fetcher(image),
        out,
        metadata=metadata,
        workers=workers,
        feedback=feedback,
        tiles_dir=tiles_dir,
        fill_value=None,
        source_id=source_id,
    )
    style_label_raster(result.path, request.table, source=f"{request.product.key}:{request.product.asset_id}")
    return {**result.to_dict(), "coverage": coverage}
