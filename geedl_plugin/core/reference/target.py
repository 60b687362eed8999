"""The composite a reference is put onto: its grid, footprint in degrees and dates.

Reference labels must land on exactly the composite's pixels (same CRS, origin, pixel size and
size), or chips and training would pair an image pixel with its neighbour's label. Everything
here is read from the composite GeoTIFF alone: the grid from GDAL, the footprint (for Earth
Engine's region and the coverage check) by transforming the grid's outline to lon/lat, and the
dates (for Dynamic World's mode) from the metadata the composite step wrote: ``GEEDL_QUERY``
(Earth Engine composites: start and exclusive end) or ``GEEDL_SCENES`` (local scenes' dates).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osgeo import gdal, ogr, osr

from ..errors import GeedlError
from ..raster_io import band_descriptions, crs_label, open_raster, srs_from_wkt

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()


@dataclass
class CompositeTarget:
    """A composite's pixel grid and what else a reference needs from it."""

    path: Path
    width: int
    height: int
    geotransform: tuple[float, ...]
    crs_wkt: str
    band_names: list[str]
    start: str | None = None
    end: str | None = None  # exclusive

    @property
    def srs(self) -> osr.SpatialReference:
        return srs_from_wkt(self.crs_wkt)

    @property
    def crs_label(self) -> str:
        return crs_label(self.srs)

    @property
    def epsg(self) -> str | None:
        label = self.crs_label
        return label if label.upper().startswith("EPSG:") else None

    @property
    def resolution(self) -> float:
        return float(abs(self.geotransform[1]))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        xs, ys = (x0, x0 + dx * self.width), (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def footprint(self) -> ogr.Geometry:
        xmin, ymin, xmax, ymax = self.bounds
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax), (xmin, ymin)):
            ring.AddPoint_2D(x, y)
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        polygon.AssignSpatialReference(self.srs)
        return polygon

    def lonlat_region(self) -> dict[str, Any]:
        """The grid's outline as a GeoJSON polygon in EPSG:4326 (edges densified)."""
        geometry = self.footprint().Clone()
        geometry.Segmentize(max(self.resolution * 16, 1e-9))
        wgs84 = osr.SpatialReference()
        wgs84.ImportFromEPSG(4326)
        wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        geometry.Transform(osr.CoordinateTransformation(self.srs, wgs84))
        return json.loads(geometry.ExportToJson())

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        points = self.lonlat_region()["coordinates"][0]
        lons, lats = [p[0] for p in points], [p[1] for p in points]
        return min(lons), min(lats), max(lons), max(lats)

    def dates(self) -> tuple[str, str]:
        if not self.start or not self.end:
            raise GeedlError(
                f"{self.path.name} does not record its dates; give --start and --end "
                "(YYYY-MM-DD, end exclusive) for the reference period."
            )
        return self.start, self.end


def _dates_from_metadata(dataset: gdal.Dataset) -> tuple[str | None, str | None]:
    query = dataset.GetMetadataItem("GEEDL_QUERY")
    if query:
        try:
            data = json.loads(query)
            if data.get("start") and (data.get("end_exclusive") or data.get("end")):
                return str(data["start"]), str(data.get("end_exclusive") or data.get("end"))
        except (ValueError, AttributeError):
            pass
    scenes = dataset.GetMetadataItem("GEEDL_SCENES")
    if scenes:
        try:
            dates = sorted(str(s["date"])[:10] for s in json.loads(scenes) if s.get("date"))
        except (ValueError, TypeError, KeyError, AttributeError):
            dates = []
        if dates:
            last = _dt.date.fromisoformat(dates[-1]) + _dt.timedelta(days=1)
            return dates[0], last.isoformat()
    return None, None


def read_target(path: str | Path) -> CompositeTarget:
    """Read a composite's grid; refuse rotated grids and rasters without a CRS."""
    dataset = open_raster(path)
    wkt = dataset.GetProjection()
    if not wkt:
        raise GeedlError(
            f"{Path(path).name} has no coordinate reference system; reference labels need the "
            "composite's grid. Assign its CRS (gdal_edit -a_srs EPSG:...) first."
        )
    gt = tuple(dataset.GetGeoTransform())
    if gt[2] or gt[4] or gt[5] >= 0:
        raise GeedlError(f"{Path(path).name} has a rotated or south-up grid; warp it north-up first.")
    start, end = _dates_from_metadata(dataset)
    return CompositeTarget(
        Path(path), dataset.RasterXSize, dataset.RasterYSize, gt, wkt, band_descriptions(dataset), start, end
    )
