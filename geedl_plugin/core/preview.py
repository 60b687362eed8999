"""False-colour PNG previews of a composite (document 000: ``bands: ["B11", "B8", "B3"]``).

SWIR / NIR / green shows bare soil, vegetation and water apart at a glance. Each channel is
stretched between its 2nd and 98th percentile (of valid pixels), as QGIS's cumulative cut does,
so one bright roof or a contrail does not flatten the picture. Big rasters are read decimated
(GDAL picks every n-th pixel, or an overview when one exists): a preview never needs every pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from osgeo import gdal

from .atomic import atomic_path
from .errors import GeedlError
from .progress import Feedback, silent
from .raster_io import band_descriptions, open_raster

gdal.UseExceptions()

FALSE_COLOUR = ("B11", "B8", "B3")


def stretch(values: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Map values to 0..255 between two percentiles of the finite values; NaN -> 0."""
    finite = np.isfinite(values)
    out = np.zeros(values.shape, dtype=np.uint8)
    if not finite.any():
        return out
    lo, hi = np.percentile(values[finite], [low, high])
    if hi <= lo:
        hi = lo + 1e-6
    scaled = (np.clip(values, lo, hi) - lo) / (hi - lo) * 255.0
    out[finite] = np.rint(scaled[finite]).astype(np.uint8)
    return out


def write_preview(composite: str | Path, png: str | Path, bands: Sequence[str] = FALSE_COLOUR,
                  max_size: int = 1600, percentiles: tuple[float, float] = (2.0, 98.0),
                  feedback: Feedback | None = None) -> Path:
    """Write an RGBA PNG (alpha 0 where the composite has no data) of three named bands.

    When the composite lacks one of ``bands`` the first three bands are used instead, and said.
    """
    feedback = feedback or silent()
    dataset = open_raster(composite)
    names = band_descriptions(dataset)
    chosen = list(bands)
    if any(b not in names for b in chosen):
        if dataset.RasterCount < 3:
            chosen = [names[0] or "band 1"] * 3
            indices = [1, 1, 1]
        else:
            indices = [1, 2, 3]
            chosen = [names[i - 1] or f"band {i}" for i in indices]
        feedback.info(f"{composite} lacks {', '.join(b for b in bands if b not in names)}; "
                      f"preview shows {', '.join(chosen)} instead.")
    else:
        indices = [names.index(b) + 1 for b in chosen]
    width, height = dataset.RasterXSize, dataset.RasterYSize
    factor = max(1.0, max(width, height) / float(max_size))
    out_w, out_h = max(1, int(round(width / factor))), max(1, int(round(height / factor)))
    channels = []
    valid = np.ones((out_h, out_w), dtype=bool)
    for i in indices:
        band = dataset.GetRasterBand(i)
        values = band.ReadAsArray(0, 0, width, height, buf_xsize=out_w, buf_ysize=out_h,
                                  buf_type=gdal.GDT_Float32)
        nodata = band.GetNoDataValue()
        if nodata is not None and not np.isnan(nodata):
            values[values == nodata] = np.nan
        valid &= np.isfinite(values)
        channels.append(values)
    if not valid.any():
        raise GeedlError(f"{composite} has no valid pixel to preview.")
    rgba = [stretch(np.where(valid, c, np.nan), *percentiles) for c in channels]
    rgba.append(np.where(valid, 255, 0).astype(np.uint8))
    memory = gdal.GetDriverByName("MEM").Create("", out_w, out_h, 4, gdal.GDT_Byte)
    for k, channel in enumerate(rgba):
        memory.GetRasterBand(k + 1).WriteArray(channel)
    with atomic_path(png) as tmp:
        gdal.GetDriverByName("PNG").CreateCopy(str(tmp), memory, strict=0)
        aux = Path(str(tmp) + ".aux.xml")
        if aux.exists():
            aux.unlink()
    return Path(png)
