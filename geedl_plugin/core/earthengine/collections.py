"""Scene collections in Earth Engine: filters, cloud masks, common band names and scale.

Each scene goes through the same three steps whatever the sensor: mask cloudy pixels with the
sensor's quality information (which needs the native QA bands, so it comes first), select the
wanted bands under the common Sentinel-2 names, and bring values to reflectance x 10000 as
float (Landsat's Collection 2 scale factors are applied; float also keeps user expressions
from doing integer division, which Earth Engine does on integer images). ``select`` and
``updateMask`` keep the scene's properties, so ``system:time_start`` survives for sorting and
for time stacks.
"""

from __future__ import annotations

from typing import Any

from ..errors import GeedlError
from .catalog import (
    CLOUD_SCORE_PLUS,
    CLOUD_SCORE_PLUS_BAND,
    LANDSAT_SR_OFFSET,
    LANDSAT_SR_SCALE,
    QA60_CIRRUS_BIT,
    QA60_CLOUD_BIT,
    QA_PIXEL_MASK_BITS,
    REFLECTANCE_FACTOR,
    SCL_CLEAR_CLASSES,
    CollectionSpec,
)
from .connection import load_ee
from .query import SceneQuery

ee = load_ee()


def region_geometry(region: dict[str, Any]) -> Any:
    """The GeoJSON region as an ee.Geometry with planar edges in lon/lat (as drawn in QGIS)."""
    return ee.Geometry(region, "EPSG:4326", False)


def filtered_collection(query: SceneQuery) -> Any:
    """Document 000's filter: dates, region and the scene cloud percentage."""
    spec = query.spec
    collection = (ee.ImageCollection(spec.asset_id)
                  .filterDate(query.start, query.end)
                  .filterBounds(region_geometry(query.region)))
    if query.max_cloud is not None:
        collection = collection.filter(ee.Filter.lt(spec.cloud_property, float(query.max_cloud)))
    return collection


# -- cloud masks, one scene at a time -----------------------------------------------------------

def mask_qa60(image: Any) -> Any:
    """Sentinel-2 QA60: bit 10 opaque clouds, bit 11 cirrus must both be clear.

    QA60 is empty for scenes processed with baseline 04.00 (early 2022 to early 2024): prefer
    Cloud Score+ for those dates.
    """
    qa = image.select("QA60")
    clear = qa.bitwiseAnd(1 << QA60_CLOUD_BIT).eq(0).And(qa.bitwiseAnd(1 << QA60_CIRRUS_BIT).eq(0))
    return image.updateMask(clear)


def mask_scl(image: Any) -> Any:
    """Sentinel-2 L2A scene classification: keep vegetation, soil, water, snow, dark, unclassified."""
    clear = image.select("SCL").remap(list(SCL_CLEAR_CLASSES), [1] * len(SCL_CLEAR_CLASSES), 0)
    return image.updateMask(clear)


def mask_qa_pixel(image: Any, bits: tuple[int, ...] = QA_PIXEL_MASK_BITS) -> Any:
    """Landsat Collection 2 QA_PIXEL: bits 3 cloud, 4 cloud shadow, 5 snow must be clear."""
    flags = sum(1 << bit for bit in bits)
    return image.updateMask(image.select("QA_PIXEL").bitwiseAnd(flags).eq(0))


def mask_csplus(image: Any, threshold: float) -> Any:
    """Cloud Score+ (linked band ``cs_cdf``): keep pixels at least ``threshold`` clear."""
    return image.updateMask(image.select(CLOUD_SCORE_PLUS_BAND).gte(float(threshold)))


def cloud_masked(collection: Any, query: SceneQuery) -> Any:
    kind = query.cloud_mask
    if kind == "none":
        return collection
    if kind == "csplus":
        linked = collection.linkCollection(ee.ImageCollection(CLOUD_SCORE_PLUS),
                                           [CLOUD_SCORE_PLUS_BAND])
        threshold = float(query.cs_threshold)
        return linked.map(lambda image: mask_csplus(image, threshold))
    masker = {"qa60": mask_qa60, "scl": mask_scl, "qa_pixel": mask_qa_pixel}[kind]
    return collection.map(masker)


# -- common band names and scale ----------------------------------------------------------------

def to_common_bands(image: Any, spec: CollectionSpec, bands: list[str]) -> Any:
    """Select ``bands`` (common names) as float reflectance x 10000, properties kept."""
    native = [spec.native_band(band) for band in bands]
    if spec.sensor == "landsat":
        scaled = (image.select(native, bands)
                  .multiply(LANDSAT_SR_SCALE * REFLECTANCE_FACTOR)
                  .add(LANDSAT_SR_OFFSET * REFLECTANCE_FACTOR))
        # addBands onto the scene keeps its properties (system:time_start) that arithmetic drops
        return image.addBands(scaled.toFloat()).select(bands)
    return image.select(native, bands).toFloat()


def prepared_collection(query: SceneQuery, bands: list[str]) -> Any:
    """Filtered, cloud-masked scenes with ``bands`` under common names, float reflectance x 1e4."""
    spec = query.spec
    spec.check_bands(bands)
    masked = cloud_masked(filtered_collection(query), query)
    return masked.map(lambda image: to_common_bands(image, spec, bands))


# -- what the query finds -----------------------------------------------------------------------

def scene_summary(query: SceneQuery) -> dict[str, Any]:
    """Scene count, dates, ids and cloud cover in one round trip; raise when there is no scene.

    Document 000 prints ``S2.size()`` before compositing; we do the same before any download.
    """
    import datetime as _dt

    from .connection import translate_error

    collection = filtered_collection(query)
    request = ee.Dictionary({
        "count": collection.size(),
        "ids": collection.aggregate_array("system:index"),
        "times": collection.aggregate_array("system:time_start"),
        "cloud": collection.aggregate_array(query.spec.cloud_property),
    })
    try:
        info = request.getInfo()
    except Exception as exc:  # noqa: BLE001
        raise translate_error(exc) from exc
    count = int(info.get("count") or 0)
    times = info.get("times") or []
    scene_dates = [_dt.datetime.fromtimestamp(t / 1000.0, _dt.UTC).date().isoformat() for t in times]
    summary = {"count": count, "dates": sorted(set(scene_dates)), "ids": info.get("ids") or [],
               "scene_dates": scene_dates, "cloud": info.get("cloud") or []}
    check_not_empty(summary, query)
    return summary


def check_not_empty(summary: dict[str, Any], query: SceneQuery) -> None:
    if int(summary.get("count") or 0) > 0:
        return
    cloud = (f" with {query.spec.cloud_property} < {query.max_cloud:g} %"
             if query.max_cloud is not None else "")
    raise GeedlError(
        f"No {query.spec.key} scene ({query.spec.asset_id}) covers the region between "
        f"{query.start} and {query.end} (end excluded){cloud}. Widen the dates"
        + (", raise --max-cloud" if query.max_cloud is not None else "")
        + " or check the region's location.")
