"""The area of interest: a bbox or polygons from a vector file, in any CRS.

A region keeps its own CRS and is reprojected on demand to the raster's CRS with OSR, in
traditional GIS axis order (x = easting/longitude) so EPSG:4326 never comes out swapped. A bbox
without a CRS is taken in the *scenes'* CRS (``srs`` None): we do not guess degrees from the
numbers, EPSG:4326 must be written out (``--bbox 12.5,52.45,12.7,52.52,EPSG:4326``). Edges are
densified before reprojection so a lon/lat box becomes the curved-sided polygon it really is.

Regions clip composites (pixels whose centre lies outside the polygons become NaN) and later
steps reuse :meth:`Region.mask` for polygon masks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from .atomic import atomic_path
from .errors import GeedlError
from .raster_io import crs_label, same_crs, srs_from_user

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

_POLYGON_TYPES = (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface)


@dataclass
class Region:
    """Polygon(s) with their CRS; ``srs`` None means "in the CRS of the scenes"."""

    geometry: ogr.Geometry
    srs: osr.SpatialReference | None
    source: str

    @property
    def crs_label(self) -> str:
        return crs_label(self.srs) if self.srs is not None else "the scenes' CRS"

    def in_crs(self, target: osr.SpatialReference) -> ogr.Geometry:
        """The geometry in ``target`` (a copy), densified so long edges follow the projection."""
        geometry = self.geometry.Clone()
        if self.srs is None or same_crs(self.srs, target):
            geometry.AssignSpatialReference(target)
            return geometry
        xmin, xmax, ymin, ymax = geometry.GetEnvelope()
        step = max(xmax - xmin, ymax - ymin) / 64.0
        if step > 0:
            geometry.Segmentize(step)
        transform = osr.CoordinateTransformation(self.srs, target)
        try:
            geometry.Transform(transform)
        except RuntimeError as exc:
            raise GeedlError(f"The region ({self.source}) cannot be reprojected from {self.crs_label} "
                             f"to {crs_label(target)}: {str(exc).strip()}. Is its CRS right?") from exc
        if not geometry.IsValid():
            geometry = _make_valid(geometry)
        geometry.AssignSpatialReference(target)
        return geometry

    def bbox(self, target: osr.SpatialReference) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in ``target``."""
        xmin, xmax, ymin, ymax = self.in_crs(target).GetEnvelope()
        return xmin, ymin, xmax, ymax

    def mask(self, target: osr.SpatialReference, geotransform: tuple[float, ...], width: int,
             height: int) -> np.ndarray:
        """Boolean mask on a grid: True where the pixel centre lies inside the region."""
        return RegionMask(self.in_crs(target)).window(geotransform, width, height)


class RegionMask:
    """Fast per-window masks of one geometry already in the grid's CRS.

    Windows wholly inside (the usual case) or wholly outside cost one GEOS test; only windows on
    the boundary are rasterized. Give each thread its own instance (OGR objects are not shared
    across threads safely).
    """

    def __init__(self, geometry: ogr.Geometry) -> None:
        self.geometry = geometry.Clone()
        self.envelope = self.geometry.GetEnvelope()  # xmin, xmax, ymin, ymax

    def window(self, geotransform: tuple[float, ...], width: int, height: int) -> np.ndarray | None:
        """The mask of a window; None when every pixel is inside (nothing to clip)."""
        x0, dx, _, y0, _, dy = geotransform
        cx0, cx1 = x0 + dx / 2, x0 + dx * (width - 0.5)
        cy0, cy1 = y0 + dy / 2, y0 + dy * (height - 0.5)
        xmin, xmax, ymin, ymax = self.envelope
        lo_x, hi_x, lo_y, hi_y = min(cx0, cx1), max(cx0, cx1), min(cy0, cy1), max(cy0, cy1)
        if hi_x < xmin or lo_x > xmax or hi_y < ymin or lo_y > ymax:
            return np.zeros((height, width), dtype=bool)
        centres = _box(lo_x, lo_y, hi_x, hi_y)
        if self.geometry.Contains(centres):
            return None
        cell = _box(min(x0, x0 + dx * width), min(y0, y0 + dy * height),
                    max(x0, x0 + dx * width), max(y0, y0 + dy * height))
        if not self.geometry.Intersects(cell):
            return np.zeros((height, width), dtype=bool)
        return _rasterize(self.geometry.Intersection(cell), geotransform, width, height)


def _box(xmin: float, ymin: float, xmax: float, ymax: float) -> ogr.Geometry:
    ring = ogr.Geometry(ogr.wkbLinearRing)
    if xmin == xmax and ymin == ymax:
        point = ogr.Geometry(ogr.wkbPoint)
        point.AddPoint_2D(xmin, ymin)
        return point
    for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)):
        ring.AddPoint_2D(x, y)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    return polygon


def _rasterize(geometry: ogr.Geometry, geotransform: tuple[float, ...], width: int,
               height: int) -> np.ndarray:
    target = gdal.GetDriverByName("MEM").Create("", int(width), int(height), 1, gdal.GDT_Byte)
    target.SetGeoTransform(list(geotransform))
    srs = geometry.GetSpatialReference()
    if srs is None:  # same frame on both sides, stated so GDAL does not warn about guessing
        srs = osr.SpatialReference()
        srs.SetLocalCS("grid")
    target.SetSpatialRef(srs)
    source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = source.CreateLayer("region", srs=srs, geom_type=ogr.wkbMultiPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(geometry)
    layer.CreateFeature(feature)
    gdal.RasterizeLayer(target, [1], layer, burn_values=[1])
    return target.GetRasterBand(1).ReadAsArray().astype(bool)


def _make_valid(geometry: ogr.Geometry) -> ogr.Geometry:
    try:
        fixed = geometry.MakeValid()
    except (RuntimeError, AttributeError):
        fixed = geometry.Buffer(0)
    if fixed is None:
        raise GeedlError("The region has an invalid geometry that could not be repaired; fix it in QGIS "
                         "(Vector > Geometry Tools > Fix Geometries).")
    return _polygons_only(fixed)


def _polygons_only(geometry: ogr.Geometry) -> ogr.Geometry:
    """Keep the polygon parts (MakeValid can return collections with lines or points)."""
    flat = ogr.GT_Flatten(geometry.GetGeometryType())
    if flat in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
        return geometry
    result = ogr.Geometry(ogr.wkbMultiPolygon)
    if flat == ogr.wkbGeometryCollection:
        for i in range(geometry.GetGeometryCount()):
            part = _polygons_only(geometry.GetGeometryRef(i))
            if ogr.GT_Flatten(part.GetGeometryType()) == ogr.wkbPolygon:
                result.AddGeometry(part)
            elif ogr.GT_Flatten(part.GetGeometryType()) == ogr.wkbMultiPolygon:
                for j in range(part.GetGeometryCount()):
                    result.AddGeometry(part.GetGeometryRef(j))
    return result


# -- constructors -----------------------------------------------------------------------------


def parse_bbox(text: str) -> tuple[tuple[float, float, float, float], osr.SpatialReference | None]:
    """``xmin,ymin,xmax,ymax[,EPSG:code]`` -> numbers and CRS (None: the scenes' CRS)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) not in (4, 5):
        raise GeedlError(f"Bounding box {text!r} must be xmin,ymin,xmax,ymax optionally followed by "
                         ",EPSG:code (e.g. 12.5,52.45,12.7,52.52,EPSG:4326).")
    try:
        xmin, ymin, xmax, ymax = (float(p) for p in parts[:4])
    except ValueError as exc:
        raise GeedlError(f"Bounding box {text!r}: the first four values must be numbers "
                         "(xmin,ymin,xmax,ymax).") from exc
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise GeedlError(f"Bounding box {text!r} has a value that is not a finite number.")
    srs = srs_from_user(parts[4]) if len(parts) == 5 else None
    if xmin == xmax or ymin == ymax:
        raise GeedlError(f"Bounding box {text!r} is empty (zero width or height); give an area.")
    if xmin > xmax or ymin > ymax:
        raise GeedlError(f"Bounding box {text!r} has its minimum above its maximum; the order is "
                         "xmin,ymin,xmax,ymax (for EPSG:4326: lon_min,lat_min,lon_max,lat_max).")
    if srs is not None and srs.IsGeographic():
        if not (-180 <= xmin <= 360 and -180 <= xmax <= 360 and -90 <= ymin <= 90 and -90 <= ymax <= 90):
            raise GeedlError(f"Bounding box {text!r} is not in degrees, yet its CRS "
                             f"{crs_label(srs)} is geographic; give lon/lat or the projected CRS.")
    return (xmin, ymin, xmax, ymax), srs


def region_from_bbox(text: str) -> Region:
    (xmin, ymin, xmax, ymax), srs = parse_bbox(text)
    return Region(_box(xmin, ymin, xmax, ymax), srs, f"bbox {text}")


def region_from_bounds(bounds: tuple[float, float, float, float],
                       srs: osr.SpatialReference | None) -> Region:
    xmin, ymin, xmax, ymax = bounds
    if not (xmax > xmin and ymax > ymin):
        raise GeedlError(f"Region bounds {bounds} are empty; give an area.")
    return Region(_box(xmin, ymin, xmax, ymax), srs, f"bounds {bounds}")


def region_from_file(path: str | Path, layer: str | None = None) -> Region:
    """All polygon features of a vector layer (GeoPackage, shapefile, GeoJSON...) unioned.

    ``path|layername=name`` (QGIS's notation) or ``layer`` picks a layer; default the first.
    """
    text = str(path)
    if "|layername=" in text and layer is None:
        text, _, layer = text.partition("|layername=")
    if not Path(text).exists():
        raise GeedlError(f"Region file {text} does not exist.")
    try:
        source = ogr.Open(text)
    except RuntimeError as exc:
        raise GeedlError(f"Cannot read {text} as a vector file ({str(exc).strip()}); use a GeoPackage, "
                         "shapefile or GeoJSON with polygons.") from exc
    if source is None or source.GetLayerCount() == 0:
        raise GeedlError(f"{text} holds no vector layer; use a GeoPackage, shapefile or GeoJSON "
                         "with polygons.")
    if layer is not None:
        lyr = source.GetLayerByName(layer)
        if lyr is None:
            names = [source.GetLayerByIndex(i).GetName() for i in range(source.GetLayerCount())]
            raise GeedlError(f"{text} has no layer {layer!r}; it has {', '.join(names)}.")
    else:
        lyr = source.GetLayerByIndex(0)
    srs = lyr.GetSpatialRef()
    if srs is None:
        raise GeedlError(f"Layer {lyr.GetName()} in {text} has no CRS; set one in QGIS (Layer > "
                         "Set CRS) and save it, geedl does not guess.")
    srs = srs.Clone()
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    union = ogr.Geometry(ogr.wkbMultiPolygon)
    other = 0
    for feature in lyr:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            continue
        geometry = geometry.GetLinearGeometry() if geometry.HasCurveGeometry() else geometry.Clone()
        flat = ogr.GT_Flatten(geometry.GetGeometryType())
        if flat not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            other += 1
            continue
        if not geometry.IsValid():
            geometry = _make_valid(geometry)
        geometry.FlattenTo2D()
        if ogr.GT_Flatten(geometry.GetGeometryType()) == ogr.wkbPolygon:
            union.AddGeometry(geometry)
        else:
            for i in range(geometry.GetGeometryCount()):
                union.AddGeometry(geometry.GetGeometryRef(i))
    if union.GetGeometryCount() == 0:
        kind = f" ({other} non-polygon features)" if other else ""
        raise GeedlError(f"Region {text} has no polygon{kind}: the region is empty. Draw or choose polygons.")
    merged = union.UnionCascaded()
    if merged is None or merged.IsEmpty() or merged.GetArea() <= 0:
        raise GeedlError(f"Region {text} is empty (its polygons have no area).")
    return Region(merged, srs, f"{Path(text).name}:{lyr.GetName()}")


def region_from_args(region_file: str | None = None, bbox: str | None = None) -> Region | None:
    """The CLI's ``--region FILE`` / ``--bbox ...``; None when neither is given."""
    if region_file and bbox:
        raise GeedlError("Give either --region FILE or --bbox, not both.")
    if region_file:
        return region_from_file(region_file)
    if bbox:
        return region_from_bbox(bbox)
    return None


# -- region files -------------------------------------------------------------------------------


def write_region_file(path: str | Path, wkt: str, crs_wkt: str, source: str) -> Path:
    """One MultiPolygon feature in a GeoPackage (atomically), then read back as a check.

    A file rather than a layer in memory, so the region survives saving the project and the
    command line reads the same polygons the dock drew."""
    path = Path(path)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    geometry = ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkt(wkt))
    with atomic_path(path) as tmp:
        dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
        layer = dataset.CreateLayer("region", srs, ogr.wkbMultiPolygon)
        layer.CreateField(ogr.FieldDefn("source", ogr.OFTString))
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(geometry)
        feature.SetField("source", source)
        layer.CreateFeature(feature)
        dataset = None
    region_from_file(path)  # the same validation every later step applies
    return path


def region_geojson(path: str | Path) -> dict:
    """The region file's polygons as GeoJSON in EPSG:4326 (what Earth Engine queries take)."""
    geometry = region_from_file(path).in_crs(srs_from_user("EPSG:4326"))
    return json.loads(geometry.ExportToJson())
