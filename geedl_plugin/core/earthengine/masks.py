"""Label mask rules compiled to Earth Engine, and document 000's polygons.

The rules are the ones the local engine evaluates (crop = HUE < 0 and NDVI > 0, soil =
HUE > 0, water = MNDWI / NDWI above a threshold or the sensor's quality band, or a user
expression), so a label made in the cloud and one made on the desktop agree. Thresholds are
parameters, never constants here: the guide measured that the crop rule marks green vegetation
in general (about 92 % of forest pixels), so users must be able to change them.

``label_polygons`` is the second half of document 000: ``reduceToVectors`` at 10 m into
polygons (or bounding boxes), the area of each polygon with a 1 m error margin, their
statistics, and the polygons under 3000 m2 dropped.
"""

from __future__ import annotations

from typing import Any

from ..errors import GeedlError
from ..expression import parse
from ..indices import resolve_index
from .catalog import QA_PIXEL_MASK_BITS, QA_PIXEL_WATER_BIT, SCL_CLEAR_CLASSES, SCL_WATER_CLASS
from .collections import cloud_masked, filtered_collection, region_geometry
from .compile import index_image
from .connection import load_ee
from .query import SceneQuery

ee = load_ee()

DEFAULT_MIN_AREA_M2 = 3000.0
DEFAULT_VECTOR_SCALE = 10.0
GEOMETRY_TYPES = ("polygon", "bb")


def band_or_index(image: Any, name: str, bands: list[str] | tuple[str, ...]) -> Any:
    """``image.select(name)`` when the composite has it, else the index computed from its bands."""
    if name in bands:
        return image.select(name)
    index = resolve_index(name)
    missing = sorted(set(index.bands) - set(bands))
    if missing:
        raise GeedlError(f"The rule needs {name}, which the composite neither has nor can compute "
                         f"(missing {', '.join(missing)}). Add {name} or those bands to the recipe.")
    return index_image(image, index)


def crop_mask(image: Any, bands: list[str] | tuple[str, ...], hue_max: float = 0.0,
              ndvi_min: float = 0.0) -> Any:
    """Document 000's crop (green vegetation) rule: HUE < hue_max and NDVI > ndvi_min."""
    hue = band_or_index(image, "HUE", bands)
    ndvi = band_or_index(image, "NDVI", bands)
    return hue.lt(float(hue_max)).And(ndvi.gt(float(ndvi_min))).rename("mask")


def soil_mask(image: Any, bands: list[str] | tuple[str, ...], hue_min: float = 0.0) -> Any:
    """Document 000's soil rule: HUE > hue_min."""
    return band_or_index(image, "HUE", bands).gt(float(hue_min)).rename("mask")


def water_index_mask(image: Any, bands: list[str] | tuple[str, ...], index: str = "MNDWI",
                     threshold: float = 0.0) -> Any:
    """Water where a water index (MNDWI, NDWI or a user index) exceeds ``threshold``."""
    return band_or_index(image, index, bands).gt(float(threshold)).rename("mask")


def expression_mask(image: Any, bands: list[str] | tuple[str, ...], text: str) -> Any:
    """A user rule in Earth Engine expression syntax, e.g. ``NDVI > 0.3 && B11 < 2000``.

    Names are the composite's bands; a built-in index the composite lacks (``MNDWI > 0`` on a
    composite of bands only) is computed from its bands, as the local engine does.
    """
    expression = parse(text)
    variables = {}
    for name in sorted(expression.names):
        if name.startswith("#"):
            continue
        try:
            variables[name] = band_or_index(image, name, bands)
        except GeedlError:
            expression.check_names(list(bands))  # the message lists the available bands
            raise
    return image.expression(expression.to_ee_text(), variables).neq(0).rename("mask")


# -- water from the scenes' quality information (document 001) ----------------------------------

def landsat_qa_water(image: Any, mask_bits: tuple[int, ...] = QA_PIXEL_MASK_BITS) -> Any:
    """QA_PIXEL bit 7 (water), masked where bits 3 cloud, 4 shadow, 5 snow are set."""
    qa = image.select("QA_PIXEL")
    clear = qa.bitwiseAnd(sum(1 << bit for bit in mask_bits)).eq(0)
    return qa.bitwiseAnd(1 << QA_PIXEL_WATER_BIT).neq(0).updateMask(clear).rename("water")


def scl_water(image: Any) -> Any:
    """Sentinel-2 L2A SCL == 6 (water), masked where the class is not a clear one."""
    scl = image.select("SCL")
    clear = scl.remap(list(SCL_CLEAR_CLASSES), [1] * len(SCL_CLEAR_CLASSES), 0)
    return scl.eq(SCL_WATER_CLASS).updateMask(clear).rename("water")


def quality_water_mask(query: SceneQuery, min_fraction: float = 0.5) -> Any:
    """Water where at least ``min_fraction`` of the clear observations are flagged water.

    The per-scene flags come from the quality band (Landsat QA_PIXEL bit 7, Sentinel-2 SCL 6);
    Sentinel-2 L1C has no water class, so S2 needs S2_SR.
    """
    spec = query.spec
    if not 0.0 < float(min_fraction) <= 1.0:
        raise GeedlError(f"Water fraction {min_fraction} must be in (0, 1].")
    if spec.sensor == "landsat":
        per_scene = landsat_qa_water
        scenes = filtered_collection(query)
    elif spec.key == "S2_SR":
        per_scene = scl_water
        scenes = cloud_masked(filtered_collection(query), query) if query.cloud_mask == "csplus" \
            else filtered_collection(query)
    else:
        raise GeedlError(f"{spec.key} has no water class in its quality band; use S2_SR (SCL) or "
                         "Landsat (QA_PIXEL), or a water index rule (MNDWI > 0).")
    frequency = scenes.map(per_scene).mean()
    return frequency.gte(float(min_fraction)).clip(region_geometry(query.region)).rename("mask")


# -- polygons (document 000) --------------------------------------------------------------------

def vectorize(mask: Any, region: dict[str, Any], scale: float = DEFAULT_VECTOR_SCALE,
              geometry_type: str = "polygon", max_pixels: float = 1e13, crs: str | None = None) -> Any:
    """Polygons (or boxes, ``geometry_type="bb"``) of the mask's 1-pixels, each with ``label``
    (1) and ``area`` in m2 computed with a 1 m error margin (document 000's ``area(1)``)."""
    if geometry_type not in GEOMETRY_TYPES:
        raise GeedlError(f"Geometry type {geometry_type!r}: use 'polygon' or 'bb' (bounding boxes).")
    if not float(scale) > 0:
        raise GeedlError(f"Vector scale {scale} must be a positive pixel size in metres.")
    options: dict[str, Any] = {"geometry": region_geometry(region), "scale": float(scale),
                               "geometryType": geometry_type, "maxPixels": max_pixels,
                               "labelProperty": "label"}
    if crs:
        options["crs"] = crs
    vectors = mask.toInt().selfMask().reduceToVectors(**options)
    vectors = vectors.filter(ee.Filter.eq("label", 1))
    return vectors.map(lambda feature: feature.set("area", feature.area(1)))


def drop_small(polygons: Any, min_area_m2: float = DEFAULT_MIN_AREA_M2) -> Any:
    """Keep polygons larger than ``min_area_m2`` (document 000: 3000 m2)."""
    if float(min_area_m2) < 0:
        raise GeedlError(f"Minimum area {min_area_m2} m2 cannot be negative.")
    return polygons.filter(ee.Filter.gt("area", float(min_area_m2)))


def label_polygons(mask: Any, region: dict[str, Any], scale: float = DEFAULT_VECTOR_SCALE,
                   geometry_type: str = "polygon", min_area_m2: float = DEFAULT_MIN_AREA_M2,
                   max_pixels: float = 1e13, crs: str | None = None) -> Any:
    """Document 000's polygons: vectorize at ``scale`` and drop those under ``min_area_m2``."""
    return drop_small(vectorize(mask, region, scale, geometry_type, max_pixels, crs), min_area_m2)


def area_statistics(polygons: Any) -> Any:
    """``aggregate_stats('area')``: count, mean, min, max, sum ... of the polygons' areas
    (document 000 prints them before dropping the small polygons)."""
    return polygons.aggregate_stats("area")
