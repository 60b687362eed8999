"""The Earth Engine collections the plugin knows, as plain data (no ``ee`` needed).

Every collection is presented under one band naming scheme, Sentinel-2's (B2 blue, B3 green,
B4 red, B8 NIR, B11 SWIR1, B12 SWIR2), and one value scale, reflectance x 10000, so the indices
of :mod:`geedl_plugin.core.indices` and the thresholds of the label rules work unchanged on
Landsat. Keeping this table free of ``ee`` lets the CLI validate a request (unknown band,
wrong cloud mask for the sensor) before anything is imported or sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GeedlError

# Landsat Collection 2 Level-2 surface reflectance: reflectance = DN * 0.0000275 - 0.2. We keep
# Sentinel-2's reflectance x 10000, hence DN * 0.275 - 2000.
LANDSAT_SR_SCALE = 0.0000275
LANDSAT_SR_OFFSET = -0.2
REFLECTANCE_FACTOR = 10000.0

# Landsat QA_PIXEL bits (Collection 2): 3 cloud, 4 cloud shadow, 5 snow, 7 water.
QA_PIXEL_CLOUD_BIT = 3
QA_PIXEL_SHADOW_BIT = 4
QA_PIXEL_SNOW_BIT = 5
QA_PIXEL_WATER_BIT = 7
QA_PIXEL_MASK_BITS = (QA_PIXEL_CLOUD_BIT, QA_PIXEL_SHADOW_BIT, QA_PIXEL_SNOW_BIT)

# Sentinel-2 QA60: bit 10 opaque clouds, bit 11 cirrus.
QA60_CLOUD_BIT = 10
QA60_CIRRUS_BIT = 11

# Sentinel-2 L2A scene classification: classes kept as clear (2 dark area, 4 vegetation,
# 5 bare soil, 6 water, 7 unclassified, 11 snow); 0 no data, 1 saturated, 3 cloud shadow,
# 8/9 cloud medium/high probability and 10 thin cirrus are masked.
SCL_CLEAR_CLASSES = (2, 4, 5, 6, 7, 11)
SCL_WATER_CLASS = 6

CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
CLOUD_SCORE_PLUS_BAND = "cs_cdf"  # Google's recommended band; 'cs' is the per-scene score
DEFAULT_CS_THRESHOLD = 0.6

CLOUD_MASKS = ("auto", "qa60", "csplus", "scl", "qa_pixel", "none")

_S2_COMMON = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
_LANDSAT_BANDS = {"B1": "SR_B1", "B2": "SR_B2", "B3": "SR_B3", "B4": "SR_B4",
                  "B8": "SR_B5", "B11": "SR_B6", "B12": "SR_B7"}


@dataclass(frozen=True)
class CollectionSpec:
    """One Earth Engine collection, its cloud metadata and its bands under the common names."""

    key: str
    asset_id: str
    title: str
    sensor: str  # "s2" or "landsat"
    cloud_property: str
    band_map: dict[str, str] = field(hash=False)  # common name -> native band name
    native_scale: float = 10.0
    cloud_masks: tuple[str, ...] = ("none",)
    default_cloud_mask: str = "none"
    quality_bands: tuple[str, ...] = ()

    @property
    def bands(self) -> list[str]:
        return list(self.band_map)

    def native_band(self, common: str) -> str:
        try:
            return self.band_map[common]
        except KeyError:
            raise GeedlError(
                f"Band {common!r} does not exist in {self.key} ({self.asset_id}). Bands of this "
                f"collection under the common names: {', '.join(self.band_map)}.") from None

    def check_bands(self, bands: list[str] | tuple[str, ...]) -> None:
        """Raise one clear error naming every band the collection lacks."""
        missing = [band for band in bands if band not in self.band_map]
        if missing:
            raise GeedlError(
                f"Band{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"{'do' if len(missing) > 1 else 'does'} not exist in {self.key} "
                f"({self.asset_id}). Choose among {', '.join(self.band_map)}"
                + (" (Landsat bands are renamed to the Sentinel-2 scheme: B8 is NIR, B11/B12 SWIR)."
                   if self.sensor == "landsat" else "."))

    def resolve_cloud_mask(self, name: str) -> str:
        name = (name or "auto").strip().lower()
        if name not in CLOUD_MASKS:
            raise GeedlError(f"Unknown cloud mask {name!r}; use one of {', '.join(CLOUD_MASKS)}.")
        if name == "auto":
            return self.default_cloud_mask
        if name not in self.cloud_masks:
            raise GeedlError(
                f"Cloud mask {name!r} does not apply to {self.key}; for this collection use one "
                f"of {', '.join(self.cloud_masks)}.")
        return name


COLLECTIONS: dict[str, CollectionSpec] = {
    spec.key: spec
    for spec in (
        CollectionSpec(
            "S2", "COPERNICUS/S2_HARMONIZED", "Sentinel-2 L1C (top of atmosphere)", "s2",
            "CLOUDY_PIXEL_PERCENTAGE", {b: b for b in _S2_COMMON + ("B10",)}, 10.0,
            ("qa60", "csplus", "none"), "csplus", ("QA60",)),
        CollectionSpec(
            "S2_SR", "COPERNICUS/S2_SR_HARMONIZED", "Sentinel-2 L2A (surface reflectance)", "s2",
            "CLOUDY_PIXEL_PERCENTAGE", {b: b for b in _S2_COMMON}, 10.0,
            ("qa60", "csplus", "scl", "none"), "csplus", ("QA60", "SCL")),
        CollectionSpec(
            "L8", "LANDSAT/LC08/C02/T1_L2", "Landsat 8 Collection 2 L2 (surface reflectance)",
            "landsat", "CLOUD_COVER", dict(_LANDSAT_BANDS), 30.0,
            ("qa_pixel", "none"), "qa_pixel", ("QA_PIXEL",)),
        CollectionSpec(
            "L9", "LANDSAT/LC09/C02/T1_L2", "Landsat 9 Collection 2 L2 (surface reflectance)",
            "landsat", "CLOUD_COVER", dict(_LANDSAT_BANDS), 30.0,
            ("qa_pixel", "none"), "qa_pixel", ("QA_PIXEL",)),
    )
}

_ALIASES = {"S2_L1C": "S2", "L1C": "S2", "S2_L2A": "S2_SR", "L2A": "S2_SR", "SR": "S2_SR",
            "LANDSAT8": "L8", "LC08": "L8", "LANDSAT9": "L9", "LC09": "L9"}


def collection_spec(name: str) -> CollectionSpec:
    """Look a collection up by key (S2, S2_SR, L8, L9), alias or Earth Engine asset id."""
    key = (name or "").strip()
    upper = key.upper().replace("-", "_")
    if upper in COLLECTIONS:
        return COLLECTIONS[upper]
    if upper in _ALIASES:
        return COLLECTIONS[_ALIASES[upper]]
    for spec in COLLECTIONS.values():
        if spec.asset_id == key:
            return spec
    raise GeedlError(
        f"Unknown collection {name!r}. Use one of: "
        + "; ".join(f"{spec.key} ({spec.title})" for spec in COLLECTIONS.values()) + ".")
