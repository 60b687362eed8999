"""What to ask Earth Engine for: collection, dates, region, cloud limits (no ``ee`` needed).

The query is validated here, before any import of ``ee`` or any request, so a typo in a date or
a cloud mask that does not fit the sensor fails in a second with a message that says what to
change. The region travels as a GeoJSON geometry in EPSG:4326 (what Earth Engine and the GUI's
drawing tools both understand); the output grid is computed from it in a projected CRS
(the region's UTM zone unless the recipe names one), because areas and tiles in degrees are
wrong away from the equator.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import GeedlError
from .catalog import DEFAULT_CS_THRESHOLD, CollectionSpec, collection_spec

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(text: str, what: str) -> _dt.date:
    text = (text or "").strip()
    if not _DATE.match(text):
        raise GeedlError(f"{what} date {text!r} must be written YYYY-MM-DD, e.g. 2024-01-01.")
    try:
        return _dt.date.fromisoformat(text)
    except ValueError as exc:
        raise GeedlError(f"{what} date {text!r} is not a real date ({exc}).") from None


@dataclass
class SceneQuery:
    """The scenes a composite is made of.

    ``end`` is exclusive, as in Earth Engine's ``filterDate`` (document 000 used
    2024-01-01 .. 2024-01-30). ``max_cloud`` filters on the scene cloud percentage
    (``CLOUDY_PIXEL_PERCENTAGE`` for Sentinel-2, ``CLOUD_COVER`` for Landsat); None keeps all.
    ``cloud_mask`` masks cloudy pixels inside the kept scenes ("auto": Cloud Score+ for
    Sentinel-2, QA_PIXEL for Landsat).
    """

    region: dict[str, Any]
    start: str
    end: str
    collection: str = "S2_SR"
    max_cloud: float | None = 1.0
    cloud_mask: str = "auto"
    cs_threshold: float = DEFAULT_CS_THRESHOLD
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec  # noqa: B018 - validates the collection name
        self.collection = self.spec.key
        self.region = normalise_geometry(self.region)
        start = parse_date(self.start, "Start")
        end = parse_date(self.end, "End")
        if end <= start:
            raise GeedlError(f"End date {self.end} must be after the start date {self.start} "
                             "(the end date is exclusive).")
        if self.max_cloud is not None and not 0.0 <= float(self.max_cloud) <= 100.0:
            raise GeedlError(f"Maximum cloud cover {self.max_cloud} must be a percentage, 0 to 100.")
        if not 0.0 <= float(self.cs_threshold) <= 1.0:
            raise GeedlError(f"Cloud Score+ threshold {self.cs_threshold} must be between 0 and 1 "
                             "(0.6 keeps pixels that are at least 60 % clear).")
        self.cloud_mask = self.spec.resolve_cloud_mask(self.cloud_mask)

    @property
    def spec(self) -> CollectionSpec:
        return collection_spec(self.collection)

    @property
    def start_date(self) -> _dt.date:
        return parse_date(self.start, "Start")

    @property
    def end_date(self) -> _dt.date:
        return parse_date(self.end, "End")

    def describe(self) -> dict[str, Any]:
        """The query as the dry run prints it: what would be filtered, and how."""
        spec = self.spec
        return {
            "collection": spec.key,
            "asset_id": spec.asset_id,
            "start": self.start,
            "end_exclusive": self.end,
            "cloud_property": spec.cloud_property,
            "max_cloud": self.max_cloud,
            "cloud_mask": self.cloud_mask,
            "cs_threshold": self.cs_threshold if self.cloud_mask == "csplus" else None,
            "region": self.region,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- time windows (time stacks) ----------------------------------------------------------------

def time_windows(start: _dt.date, end: _dt.date, step: str | int) -> list[tuple[_dt.date, _dt.date, str]]:
    """[start, end) windows: calendar months (``"month"``) or blocks of N days, with labels.

    Monthly windows are labelled ``YYYY_MM``, N-day windows by their first day ``YYYY_MM_DD``.
    """
    windows: list[tuple[_dt.date, _dt.date, str]] = []
    if step == "month":
        cursor = start
        while cursor < end:
            following = (_dt.date(cursor.year + 1, 1, 1) if cursor.month == 12
                         else _dt.date(cursor.year, cursor.month + 1, 1))
            windows.append((cursor, min(following, end), f"{cursor.year:04d}_{cursor.month:02d}"))
            cursor = following
        return windows
    days = int(step)
    if days < 1:
        raise GeedlError(f"Time step {step!r} must be 'month' or a number of days >= 1.")
    cursor = start
    while cursor < end:
        following = cursor + _dt.timedelta(days=days)
        windows.append((cursor, min(following, end), cursor.strftime("%Y_%m_%d")))
        cursor = following
    return windows


def parse_time_step(text: str | None) -> str | int | None:
    """``month``/``monthly``, ``16d``/``16`` days, or None/``none`` for a single composite."""
    if text is None:
        return None
    value = str(text).strip().lower()
    if value in ("", "none", "off"):
        return None
    if value in ("month", "monthly", "m"):
        return "month"
    digits = value[:-1] if value.endswith("d") else value
    if digits.isdigit() and int(digits) >= 1:
        return int(digits)
    raise GeedlError(f"Time step {text!r}: use 'month' or a number of days such as 16d.")



# -- region -------------------------------------------------------------------------------------

_GEOMETRY_TYPES = ("Polygon", "MultiPolygon")


def normalise_geometry(region: Any) -> dict[str, Any]:
    """A GeoJSON Polygon/MultiPolygon in lon/lat from a dict, a Feature(Collection) or a bbox."""
    if isinstance(region, str):
        try:
            region = json.loads(region)
        except json.JSONDecodeError:
            raise GeedlError("The region must be GeoJSON or a bounding box west,south,east,north "
                             f"in degrees; got {region[:60]!r}.") from None
    if isinstance(region, (list, tuple)) and len(region) == 4:
        return bbox_geometry([float(v) for v in region])
    if not isinstance(region, dict):
        raise GeedlError("The region must be a GeoJSON polygon in EPSG:4326.")
    kind = region.get("type")
    if kind == "Feature":
        return normalise_geometry(region.get("geometry"))
    if kind == "FeatureCollection":
        from osgeo import ogr  # local: only needed for multi-feature regions

        ogr.UseExceptions()
        union = None
        for feature in region.get("features", []):
            geom = ogr.CreateGeometryFromJson(json.dumps(normalise_geometry(feature)))
            union = geom if union is None else union.Union(geom)
        if union is None:
            raise GeedlError("The region has no features; draw or choose a polygon.")
        return normalise_geometry(json.loads(union.ExportToJson()))
    if kind not in _GEOMETRY_TYPES:
        raise GeedlError(f"The region must be a polygon, got a GeoJSON {kind!r}. Draw an area, "
                         "not a point or a line.")
    coords = region.get("coordinates")
    if not coords:
        raise GeedlError("The region polygon is empty; draw an area.")
    flat = _flatten(coords)
    for lon, lat in flat:
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise GeedlError(
                f"Region coordinate ({lon}, {lat}) is not longitude/latitude. Give the region in "
                "EPSG:4326 (the CLI and the plugin reproject layers before sending them).")
    west, south, east, north = geometry_bounds(region)
    if not (east > west and north > south):
        raise GeedlError("The region has no area; draw an area, not a line.")
    return {"type": kind, "coordinates": coords}


def _flatten(coords: Any) -> list[tuple[float, float]]:
    if coords and isinstance(coords[0], (int, float)):
        return [(float(coords[0]), float(coords[1]))]
    points: list[tuple[float, float]] = []
    for part in coords:
        points.extend(_flatten(part))
    return points


def bbox_geometry(bbox: list[float]) -> dict[str, Any]:
    west, south, east, north = bbox
    if not (east > west and north > south):
        raise GeedlError(f"Bounding box {bbox} must be west,south,east,north with east > west and "
                         "north > south.")
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return normalise_geometry({"type": "Polygon", "coordinates": [ring]})


def geometry_bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    points = _flatten(geometry["coordinates"])
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return min(lons), min(lats), max(lons), max(lats)


def utm_crs_for(geometry: dict[str, Any]) -> str:
    """EPSG code of the UTM zone at the region's centre (WGS 84 / UTM north 326xx, south 327xx)."""
    west, south, east, north = geometry_bounds(geometry)
    lon = (west + east) / 2.0
    lat = (south + north) / 2.0
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def check_crs_code(crs: str) -> str:
    """Earth Engine grids need an EPSG code; refuse WKT or proj strings with a clear message."""
    text = (crs or "").strip().upper()
    if not re.match(r"^EPSG:\d{4,6}$", text):
        raise GeedlError(f"CRS {crs!r}: Earth Engine downloads need an EPSG code such as "
                         "EPSG:32633 (UTM) or EPSG:3035.")
    from osgeo import osr

    osr.UseExceptions()
    srs = osr.SpatialReference()
    try:
        srs.ImportFromEPSG(int(text.split(":")[1]))
    except RuntimeError:
        raise GeedlError(f"CRS {crs!r} is not a known EPSG code.") from None
    if srs.IsGeographic():
        raise GeedlError(f"CRS {crs} is geographic (degrees): pixel sizes and areas would be wrong. "
                         "Use a projected CRS such as the region's UTM zone (leave the CRS empty).")
    return text


def projected_bounds(geometry: dict[str, Any], crs: str) -> tuple[float, float, float, float]:
    """The region's envelope in ``crs`` (edges densified, so curved edges are enclosed)."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    osr.UseExceptions()
    source = osr.SpatialReference()
    source.ImportFromEPSG(4326)
    source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    target = osr.SpatialReference()
    target.ImportFromEPSG(int(crs.split(":")[1]))
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geom = ogr.CreateGeometryFromJson(json.dumps(geometry))
    geom.Segmentize(0.01)  # degrees: keeps the projected envelope tight but enclosing
    geom.Transform(osr.CoordinateTransformation(source, target))
    xmin, xmax, ymin, ymax = geom.GetEnvelope()
    return xmin, ymin, xmax, ymax
