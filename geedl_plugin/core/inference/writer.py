"""The prediction rasters: a styled class map, optional probabilities, or regression values.

Class maps are uint8 with the model's class ids, 255 where the input was nodata, and the legend
the labels step writes on every class raster (:func:`..labels.legend.write_legend`): a GDAL
colour table with the model's class colours (QGIS opens it paletted), category names (GeoTIFF
keeps them in the ``.aux.xml`` beside the file) and the ``GEEDL_LEGEND`` JSON inside the TIFF,
which travels with the file alone; plus ``GEEDL_CLASSES`` (id -> name), what training reads, so
a corrected prediction can be trained on. Probabilities are one uint8 band per class, ``round(p * 254)``,
so 255 stays free for nodata; the band scale (1/254) lets readers that honour it see 0..1.
Regression models write float32 ``value * output_scale + output_offset`` with NaN nodata.

Writers take rows in any order but the runner gives them whole 512-row blocks so each GeoTIFF
block is compressed once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from ..class_decision import decide, threshold_vector
from ..errors import GeedlError
from ..model_metadata import ModelMetadata
from ..raster_io import create_geotiff
from .source import Grid

gdal.UseExceptions()

CLASS_NODATA = 255
CLASSES_TAG = "GEEDL_CLASSES"
PROB_NODATA = 255
PROB_SCALE = 254.0
#: deflate level of prediction outputs: level 1 compresses ~4x faster than 6 and byte maps of classes
#: and probabilities grow only ~20 %; compression would otherwise rival the model's own time
ZLEVEL = 1


def model_legend(metadata: ModelMetadata):
    """The model's classes as the labels step's :class:`~..labels.legend.Legend` (ids, names,
    colours): the one legend format every geedl class raster carries."""
    from ..labels.legend import Legend, LegendClass

    return Legend([LegendClass(int(c.id), c.name, c.color) for c in metadata.classes])


def style_class_band(dataset: gdal.Dataset, metadata: ModelMetadata) -> None:
    """Legend (colour table, category names, ``GEEDL_LEGEND``, nodata 255) on band 1, and the
    ``GEEDL_CLASSES`` id -> name tag training reads, so a prediction can be a label raster."""
    from ..labels.legend import write_legend

    write_legend(dataset, model_legend(metadata))
    dataset.SetMetadataItem(CLASSES_TAG, json.dumps({str(c.id): c.name for c in metadata.classes}))


class PredictionWriter:
    """Creates the output GeoTIFF(s) on ``grid`` and converts blended values into them."""

    def __init__(
        self,
        grid: Grid,
        metadata: ModelMetadata,
        class_path: str | Path | None,
        probabilities_path: str | Path | None = None,
        probabilities_dtype: str = "uint8",
        extra_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.metadata = metadata
        self.regression = metadata.model_type == "regression"
        self.probabilities_dtype = probabilities_dtype
        info = {"GEEDL_MODEL_TYPE": metadata.model_type, "GEEDL_ARCHITECTURE": metadata.architecture}
        if metadata.class_thresholds:  # how the class map was decided, for whoever reads it later
            info["GEEDL_CLASS_THRESHOLDS"] = json.dumps(metadata.class_thresholds)
        info.update(extra_metadata or {})
        self.class_ds = self.prob_ds = None
        if self.regression:
            self.class_ds = create_geotiff(
                class_path,
                grid.width,
                grid.height,
                1,
                "float32",
                grid.geotransform,
                grid.projection,
                ["value"],
                info,
                float("nan"),
                zlevel=ZLEVEL,
            )
        else:
            ids = [int(c.id) for c in metadata.classes]
            if max(ids) >= CLASS_NODATA or min(ids) < 0:
                raise GeedlError(f"Class ids must be 0-254 to fit the class map; the model has {ids}.")
            self.lookup = np.asarray(ids, dtype=np.uint8)
            self.thresholds = threshold_vector(metadata.class_names, metadata.class_thresholds)
            names = [c.name for c in metadata.classes]
            if class_path is not None:
                self.class_ds = create_geotiff(
                    class_path,
                    grid.width,
                    grid.height,
                    1,
                    "uint8",
                    grid.geotransform,
                    grid.projection,
                    ["class"],
                    info,
                    CLASS_NODATA,
                    zlevel=ZLEVEL,
                )
                style_class_band(self.class_ds, metadata)
            if probabilities_path is not None:
                dtype = "float32" if probabilities_dtype == "float32" else "uint8"
                nodata = float("nan") if dtype == "float32" else PROB_NODATA
                self.prob_ds = create_geotiff(
                    probabilities_path,
                    grid.width,
                    grid.height,
                    len(names),
                    dtype,
                    grid.geotransform,
                    grid.projection,
                    names,
                    {
                        **info,
                        CLASSES_TAG: json.dumps({str(c.id): c.name for c in metadata.classes}),
                        "GEEDL_PROBABILITY_SCALE": "1" if dtype == "float32" else f"1/{PROB_SCALE:g}",
                    },
                    nodata,
                    zlevel=ZLEVEL,
                )
                if dtype == "uint8":
                    for i in range(len(names)):
                        self.prob_ds.GetRasterBand(i + 1).SetScale(1.0 / PROB_SCALE)

    def write(self, xoff: int, yoff: int, values: np.ndarray, nodata: np.ndarray | None) -> None:
        """Write blended values (outputs x rows x cols; probabilities or regression values).

        ``values`` is used as scratch space (the caller hands over a private copy)."""
        if self.regression:
            out = values[0] * np.float32(self.metadata.output_scale) + np.float32(self.metadata.output_offset)
            if nodata is not None:
                out[nodata] = np.nan
            self.class_ds.GetRasterBand(1).WriteArray(out, xoff, yoff)
            return
        if self.class_ds is not None:
            classes = self.lookup[decide(values, self.thresholds)]
            if nodata is not None:
                classes[nodata] = CLASS_NODATA
            self.class_ds.GetRasterBand(1).WriteArray(classes, xoff, yoff)
            self.class_ds.FlushCache()
        if self.prob_ds is not None:
            if self.probabilities_dtype == "float32":
                probs = values.astype(np.float32, copy=True)
                if nodata is not None:
                    probs[:, nodata] = np.nan
            else:
                np.multiply(values, PROB_SCALE, out=values)
                np.add(values, 0.5, out=values)
                np.minimum(values, PROB_SCALE, out=values)
                probs = values.astype(np.uint8)
                if nodata is not None:
                    probs[:, nodata] = PROB_NODATA
            for i in range(probs.shape[0]):
                self.prob_ds.GetRasterBand(i + 1).WriteArray(probs[i], xoff, yoff)
            self.prob_ds.FlushCache()

    def close(self) -> None:
        for ds in (self.class_ds, self.prob_ds):
            if ds is not None:
                ds.FlushCache()
        self.class_ds = self.prob_ds = None


def restyle(path: str | Path, metadata: ModelMetadata, kind: str) -> None:
    """Re-apply palette, names and scale after a warp (gdal.Warp keeps pixels, not all styling)."""
    dataset = gdal.Open(str(path), gdal.GA_Update)
    try:
        if kind == "class":
            dataset.GetRasterBand(1).SetDescription("class")
            style_class_band(dataset, metadata)
        elif kind == "probabilities":
            for i, item in enumerate(metadata.classes):
                band = dataset.GetRasterBand(i + 1)
                band.SetDescription(item.name)
                if band.DataType == gdal.GDT_Byte:
                    band.SetNoDataValue(PROB_NODATA)
                    band.SetScale(1.0 / PROB_SCALE)
            dataset.SetMetadataItem(CLASSES_TAG, json.dumps({str(c.id): c.name for c in metadata.classes}))
        else:
            dataset.GetRasterBand(1).SetDescription("value")
        dataset.FlushCache()
    finally:
        dataset = None
