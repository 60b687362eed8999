"""How each kind of geedl layer looks: false-colour composites, masks, classes, error maps.

Percentile stretches are computed from a decimated read (:func:`percentile_stretch`, no QGIS
needed) inside the background task that made the raster, so applying a style on the main thread
costs nothing. Colours come from the model metadata (predictions) or the labels schema's QML
(label polygons), so a class looks the same in every layer and in the demo report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsContrastEnhancement,
    QgsEditorWidgetSetup,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsSingleBandGrayRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtXml import QDomDocument

from ..core.preview import FALSE_COLOUR
from ..core.raster_io import band_descriptions, open_raster

gdal.UseExceptions()

# document 000's preview is FALSE_COLOUR (SWIR1 / NIR / green); true colour when SWIR is missing
TRUE_COLOUR = ("B4", "B3", "B2")
MASK_COLOURS = {"crop": "#33a02c", "water": "#1f78b4", "soil": "#b15928", "cloud": "#bdbdbd"}
ERROR_COLOURS = {"false positive": "#e31a1c", "false negative": "#1f78b4", "wrong": "#e31a1c",
                 "other error": "#ff7f00", "correct": "#d9d9d9"}


def rgb_band_indices(names: Sequence[str]) -> list[int]:
    """1-based band numbers for the preview: false colour, else true colour, else the first bands."""
    for combo in (FALSE_COLOUR, TRUE_COLOUR):
        if all(name in names for name in combo):
            return [list(names).index(name) + 1 for name in combo]
    count = len(names)
    return [1, min(2, count), min(3, count)]


def percentile_stretch(path: str | Path, bands: Sequence[int], low: float = 2.0, high: float = 98.0,
                       max_side: int = 512) -> dict[int, tuple[float, float]]:
    """Per-band (low, high) percentiles of a decimated read; NaN and nodata are ignored.

    Runs in the task that produced the raster (a few milliseconds for a 512 px read), never on
    the UI thread.
    """
    dataset = open_raster(path)
    scale = max(dataset.RasterXSize, dataset.RasterYSize) / max_side
    width = max(1, int(dataset.RasterXSize / max(scale, 1)))
    height = max(1, int(dataset.RasterYSize / max(scale, 1)))
    result: dict[int, tuple[float, float]] = {}
    for number in bands:
        band = dataset.GetRasterBand(number)
        data = band.ReadAsArray(buf_xsize=width, buf_ysize=height).astype("float64")
        nodata = band.GetNoDataValue()
        valid = np.isfinite(data)
        if nodata is not None and np.isfinite(nodata):
            valid &= data != nodata
        values = data[valid]
        if values.size == 0:
            result[number] = (0.0, 1.0)
            continue
        lo, hi = np.percentile(values, [low, high])
        result[number] = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    return result


def _enhancement(layer: QgsRasterLayer, band: int, lo: float, hi: float) -> QgsContrastEnhancement:
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum, True)
    enhancement.setMinimumValue(lo)
    enhancement.setMaximumValue(hi)
    return enhancement


def style_composite(layer: QgsRasterLayer,
                    stretch: dict[int, tuple[float, float]] | None = None) -> list[str]:
    """False colour (B11/B8/B3) with a 2-98 % stretch; returns the band names used."""
    names = band_descriptions(open_raster(layer.source()))
    red, green, blue = rgb_band_indices(names)
    if stretch is None:
        stretch = percentile_stretch(layer.source(), sorted({red, green, blue}))
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), red, green, blue)
    renderer.setRedContrastEnhancement(_enhancement(layer, red, *stretch[red]))
    renderer.setGreenContrastEnhancement(_enhancement(layer, green, *stretch[green]))
    renderer.setBlueContrastEnhancement(_enhancement(layer, blue, *stretch[blue]))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return [names[i - 1] or f"band {i}" for i in (red, green, blue)]


def style_single_band(layer: QgsRasterLayer, band: int = 1,
                      stretch: tuple[float, float] | None = None) -> None:
    """Grey stretch for an index or probability raster."""
    lo, hi = stretch or percentile_stretch(layer.source(), [band])[band]
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), band)
    renderer.setContrastEnhancement(_enhancement(layer, band, lo, hi))
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_paletted(layer: QgsRasterLayer, classes: Sequence[tuple[int, str, str]],
                   opacity: float = 1.0) -> None:
    """Paletted renderer from (value, label, colour) rows; values not listed stay transparent."""
    entries = [QgsPalettedRasterRenderer.Class(int(value), QColor(colour), str(label))
               for value, label, colour in classes]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries))
    layer.renderer().setOpacity(opacity)
    layer.triggerRepaint()


def style_mask(layer: QgsRasterLayer, rule: str) -> None:
    """A 0/1 mask: 1 in the rule's colour, 0 transparent so the composite shows through."""
    colour = MASK_COLOURS.get(rule.split()[0].lower() if rule else "", "#ff7f00")
    style_paletted(layer, [(1, rule or "mask", colour)], opacity=0.7)


def style_classes(layer: QgsRasterLayer, classes: Sequence) -> None:
    """Prediction palette from model metadata classes (objects with id, name, color)."""
    style_paletted(layer, [(c.id, c.name, c.color) for c in classes])


def style_error_map(layer: QgsRasterLayer, codes: dict[int, str]) -> None:
    """Error map codes (value -> 'correct' / 'wrong' / 'false positive' / 'false negative' ...)."""
    rows = [(value, label, ERROR_COLOURS.get(label, "#ff7f00")) for value, label in sorted(codes.items())]
    style_paletted(layer, rows, opacity=0.85)


# the region's outline colour (the dock's step 1 and the demo project)
REGION_COLOUR = "#ff6400"


def style_outline(layer: QgsVectorLayer, colour: str, width_mm: float = 0.6) -> None:
    """Polygons drawn as an outline only (the region must not hide the image under it)."""
    symbol = layer.renderer().symbol()
    symbol.setColor(QColor(0, 0, 0, 0))
    symbol.symbolLayer(0).setStrokeColor(QColor(colour))
    symbol.symbolLayer(0).setStrokeWidth(width_mm)
    layer.triggerRepaint()


def set_class_dropdown(layer: QgsVectorLayer, field: str, classes: Sequence[tuple[str, object]]) -> None:
    """Edit ``field`` with a dropdown of (label, value) classes (a ValueMap editor widget)."""
    index = layer.fields().indexOf(field)
    if index < 0:
        return
    options = {"map": [{str(label): value} for label, value in classes]}
    layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup("ValueMap", options))


def apply_qml(layer: QgsVectorLayer | QgsRasterLayer, qml: str | Path) -> bool:
    """Load a QML style given as a file path or as the QML text itself."""
    text = str(qml)
    if not text.lstrip().startswith("<"):
        message, ok = layer.loadNamedStyle(text)
        return bool(ok)
    document = QDomDocument()
    if not document.setContent(text):
        return False
    ok = layer.importNamedStyle(document)[0]
    layer.triggerRepaint()
    return bool(ok)
