"""Colour ramps for continuous rasters (regression predictions, continuous targets).

A float GeoTIFF opens grey in QGIS. Beside the raster geedl writes

* ``<name>.qml``: a QGIS style (single-band pseudocolour, interpolated ramp over the 2-98 %
  range of the valid values). QGIS loads a ``.qml`` with the raster's base name as the layer's
  default style, so the prediction opens coloured;
* ``<name>.ramp.txt``: the same ramp as a GDAL color-relief table (``value R G B A`` lines,
  ``nv`` = transparent nodata), for ``gdaldem color-relief prediction.tif prediction.ramp.txt
  out.png`` and any tool that reads that format;

and records the ramp (``GEEDL_RAMP``) and the band statistics in the raster's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from osgeo import gdal

from .atomic import atomic_path
from .errors import GeedlError

gdal.UseExceptions()

# perceptually uniform, colour-blind safe (matplotlib's viridis, 7 stops)
VIRIDIS = ("#440154", "#443983", "#31688e", "#21918c", "#35b779", "#90d743", "#fde725")


@dataclass
class Ramp:
    minimum: float
    maximum: float
    colors: tuple[str, ...] = VIRIDIS
    label: str = "value"

    def stops(self) -> list[tuple[float, str]]:
        n = len(self.colors)
        span = self.maximum - self.minimum
        return [(self.minimum + span * i / (n - 1), color) for i, color in enumerate(self.colors)]


def _rgb(color: str) -> tuple[int, int, int]:
    text = color.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def ramp_for(values: np.ndarray, low: float = 2.0, high: float = 98.0, label: str = "value") -> Ramp:
    """A ramp over the ``low``-``high`` percentiles of the finite values."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        raise GeedlError("The raster has no valid value to colour.")
    lo, hi = np.percentile(finite, [low, high])
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max()) + 1e-6
    return Ramp(float(lo), float(hi), label=label)


def qml_text(ramp: Ramp, band: int = 1) -> str:
    indent = " " * 12
    items = "\n".join(
        f'{indent}<item alpha="255" value="{value:.6g}" label={quoteattr(f"{value:.4g}")} color="{color}"/>'
        for value, color in ramp.stops()
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" alphaBand="-1"
        classificationMin="{ramp.minimum:.6g}" classificationMax="{ramp.maximum:.6g}" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
          minimumValue="{ramp.minimum:.6g}" maximumValue="{ramp.maximum:.6g}" labelPrecision="4">
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def color_relief_text(ramp: Ramp) -> str:
    lines = [f"{value:.6g} {r} {g} {b} 255" for value, color in ramp.stops() for r, g, b in [_rgb(color)]]
    return "\n".join(lines + ["nv 0 0 0 0"]) + "\n"


def style_paths(raster: str | Path) -> tuple[Path, Path]:
    path = Path(raster)
    return path.with_suffix(".qml"), path.with_suffix(".ramp.txt")


def write_ramp_style(raster: str | Path, ramp: Ramp | None = None, band: int = 1) -> dict[str, object]:
    """Write the ``.qml`` and ``.ramp.txt`` beside ``raster`` and its statistics into it."""
    dataset = gdal.Open(str(raster), gdal.GA_Update)
    try:
        data_band = dataset.GetRasterBand(band)
        values = data_band.ReadAsArray().astype(np.float64)
        nodata = data_band.GetNoDataValue()
        if nodata is not None and not np.isnan(nodata):
            values[values == nodata] = np.nan
        ramp = ramp or ramp_for(values, label=data_band.GetDescription() or "value")
        finite = values[np.isfinite(values)]
        data_band.SetStatistics(
            float(finite.min()), float(finite.max()), float(finite.mean()), float(finite.std())
        )
        dataset.SetMetadataItem(
            "GEEDL_RAMP", json.dumps({"min": ramp.minimum, "max": ramp.maximum, "colors": list(ramp.colors)})
        )
        dataset.FlushCache()
    finally:
        dataset = None
    qml, relief = style_paths(raster)
    with atomic_path(qml) as tmp:
        Path(tmp).write_text(qml_text(ramp, band), encoding="utf-8")
    with atomic_path(relief) as tmp:
        Path(tmp).write_text(color_relief_text(ramp), encoding="utf-8")
    return {"qml": str(qml), "color_relief": str(relief), "min": ramp.minimum, "max": ramp.maximum}
