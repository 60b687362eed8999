"""Processing: "Build composite" from scenes on disk (core.composite.build_composite)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterCrs,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ...core.composite import RESAMPLING, CompositeParams, build_composite
from ...core.indices import BUILTIN_INDICES
from ...core.progress import Feedback
from ...core.recipe import DEFAULT_BANDS, OUTPUT_DTYPES, REDUCERS, CompositeRecipe
from ..base import GeedlAlgorithm, crs_text, split_list
from ..params import (
    add_region_parameters,
    default_of,
    enum_parameter,
    enum_value,
    layer_or_paths,
    region_from_parameters,
)


class BuildCompositeAlgorithm(GeedlAlgorithm):
    ALG_ID = "buildcomposite"
    DISPLAY_NAME = "Build composite"
    GROUP = "Composites"
    GROUP_ID = "composites"
    HELP = (
        "Builds a composite GeoTIFF from Sentinel-2 scenes on disk (SAFE folders, folders of band "
        "files, or multi-band GeoTIFFs with band descriptions), as document 000's "
        "<i>S2.map(indices).max().clip(region)</i>: the chosen bands, then the indices, reduced over "
        "the scenes and clipped to the region. 20 m / 60 m bands are aligned to the 10 m grid by "
        "georeference.<br><b>Scenes</b>: paths separated by ';' (folders are allowed), and/or raster "
        "layers.<br><b>Indices</b>: " + ", ".join(BUILTIN_INDICES) + " or NAME=expression in Earth "
        "Engine syntax, e.g. WET=(B3-B11)/(B3+B11).<br><b>Region</b>: a polygon layer or an extent "
        "(any CRS); none = the scenes' extent.<br>Output: float32, one band per name, NaN = no data."
    )

    SCENES = "SCENES"
    SCENE_LAYERS = "SCENE_LAYERS"
    REGION_LAYER = "REGION_LAYER"
    REGION_EXTENT = "REGION_EXTENT"
    BANDS = "BANDS"
    INDICES = "INDICES"
    REDUCER = "REDUCER"
    PERCENTILE = "PERCENTILE"
    SCALE = "SCALE"
    CRS = "CRS"
    DTYPE = "DTYPE"
    RESAMPLING = "RESAMPLING"
    OUTPUT = "OUTPUT"
    OUT_BANDS = "BAND_NAMES"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterString(
            self.SCENES, "Scenes (folders or files, separated by ';')", multiLine=True, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.SCENE_LAYERS, "Scene raster layers (multi-band GeoTIFFs with band names)",
            QgsProcessing.TypeRaster, optional=True))
        add_region_parameters(self, self.REGION_LAYER, self.REGION_EXTENT)
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands",
                                                       defaultValue=",".join(DEFAULT_BANDS)))
        self.addParameter(QgsProcessingParameterString(
            self.INDICES, "Indices (NDVI, HUE, NDWI, MNDWI, NBR or NAME=expression)",
            defaultValue="NDVI,HUE", optional=True))
        recipe = CompositeRecipe()
        self.addParameter(enum_parameter(self.REDUCER, "Reducer", REDUCERS, recipe.reducer))
        self.addParameter(QgsProcessingParameterNumber(
            self.PERCENTILE, "Percentile (for the percentile reducer)", QgsProcessingParameterNumber.Double,
            defaultValue=recipe.percentile, minValue=0.0, maxValue=100.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.SCALE, "Pixel size (scale, in the output CRS's units)", QgsProcessingParameterNumber.Double,
            defaultValue=recipe.scale, minValue=0.0))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (empty: the scenes' CRS)",
                                                    optional=True))
        self.addParameter(enum_parameter(self.DTYPE, "Output data type", OUTPUT_DTYPES, recipe.dtype))
        self.addParameter(enum_parameter(self.RESAMPLING, "Resampling of coarser bands", RESAMPLING,
                                         default_of(CompositeParams, "resampling")))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Composite"))
        self.addOutput(QgsProcessingOutputString(self.OUT_BANDS, "Band names"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
            feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        recipe = CompositeRecipe(
            bands=split_list(self.parameterAsString(parameters, self.BANDS, context)),
            indices=split_list(self.parameterAsString(parameters, self.INDICES, context)),
            reducer=enum_value(self, parameters, self.REDUCER, context),
            percentile=self.parameterAsDouble(parameters, self.PERCENTILE, context),
            scale=self.parameterAsDouble(parameters, self.SCALE, context),
            dtype=enum_value(self, parameters, self.DTYPE, context),
        )
        params = CompositeParams(
            scenes=layer_or_paths(self, parameters, self.SCENES, self.SCENE_LAYERS, context),
            recipe=recipe,
            out=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            region=region_from_parameters(self, parameters, self.REGION_LAYER, self.REGION_EXTENT, context,
                                          feedback),
            crs=crs_text(self.parameterAsCrs(parameters, self.CRS, context)),
            resampling=enum_value(self, parameters, self.RESAMPLING, context),
        )
        result = build_composite(params, core)
        for key, value in result.summary().items():
            feedback.pushInfo(f"{key}: {value}")
        return {self.OUTPUT: str(result.path), self.OUT_BANDS: ",".join(result.band_names)}


ALGORITHMS = [BuildCompositeAlgorithm]
