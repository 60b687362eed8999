"""Processing: Earth Engine composites (download or dry run), batch exports and preview layers.

Both run ``python -m geedl_plugin composite --source gee`` (core.earthengine.cli_support) in
the runner Python, so long downloads never block QGIS, cancel really stops the requests, and
the same code path as the command line is used. ``Dry run`` needs no account or network: it
returns the scene query and the serialized expression graph. The preview layer runs in QGIS
itself (a scene query and one map id, no download): it only adds an XYZ layer to the project.
"""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsRasterLayer,
)

from ...cli import command_parser
from ...core.earthengine.catalog import CLOUD_MASKS, COLLECTIONS, DEFAULT_CS_THRESHOLD
from ...core.earthengine.tiling import DEFAULT_TILE_SIZE
from ...core.errors import GeedlError
from ...core.progress import Feedback
from ...core.recipe import DEFAULT_BANDS, OUTPUT_DTYPES, REDUCERS
from ..base import CliAlgorithm, crs_text
from ..params import add_region_parameters, enum_parameter, enum_value, region_cli_args

EXPORT_DESTINATIONS = ("drive", "gcs", "asset")


class _EarthEngineBase(CliAlgorithm):
    GROUP = "Earth Engine"
    GROUP_ID = "earthengine"

    REGION_LAYER = "REGION_LAYER"
    REGION_EXTENT = "REGION_EXTENT"
    START = "START"
    END = "END"
    COLLECTION = "COLLECTION"
    MAX_CLOUD = "MAX_CLOUD"
    CLOUD_MASK = "CLOUD_MASK"
    CS_THRESHOLD = "CS_THRESHOLD"
    BANDS = "BANDS"
    INDICES = "INDICES"
    REDUCER = "REDUCER"
    PERCENTILE = "PERCENTILE"
    SCALE = "SCALE"
    CRS = "CRS"
    DTYPE = "DTYPE"
    TIME_STEP = "TIME_STEP"
    PROJECT = "PROJECT"
    RESULT = "RESULT"

    def add_recipe_parameters(self) -> None:
        add_region_parameters(self, self.REGION_LAYER, self.REGION_EXTENT)
        self.addParameter(QgsProcessingParameterString(self.START, "Start date (YYYY-MM-DD)",
                                                       defaultValue="2024-06-01"))
        self.addParameter(QgsProcessingParameterString(self.END, "End date (YYYY-MM-DD, exclusive)",
                                                       defaultValue="2024-09-01"))
        self.addParameter(enum_parameter(self.COLLECTION, "Collection", list(COLLECTIONS), "S2"))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_CLOUD, "Maximum scene cloud % (negative: no filter)",
            QgsProcessingParameterNumber.Double, defaultValue=1.0))
        self.addParameter(enum_parameter(self.CLOUD_MASK, "Pixel cloud mask", CLOUD_MASKS, "auto"))
        self.addParameter(QgsProcessingParameterNumber(
            self.CS_THRESHOLD, "Cloud Score+ clear threshold", QgsProcessingParameterNumber.Double,
            defaultValue=DEFAULT_CS_THRESHOLD, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands",
                                                       defaultValue=",".join(DEFAULT_BANDS)))
        self.addParameter(QgsProcessingParameterString(
            self.INDICES, "Indices (NDVI, HUE, NDWI, MNDWI, NBR or NAME=expression)", defaultValue="NDVI,HUE",
            optional=True))
        self.addParameter(enum_parameter(self.REDUCER, "Reducer", REDUCERS, "max"))
        self.addParameter(QgsProcessingParameterNumber(
            self.PERCENTILE, "Percentile (for the percentile reducer)", QgsProcessingParameterNumber.Double,
            defaultValue=50.0, minValue=0.0, maxValue=100.0))
        self.addParameter(QgsProcessingParameterNumber(self.SCALE, "Pixel size (m)",
                                                       QgsProcessingParameterNumber.Double, defaultValue=10.0,
                                                       minValue=0.0))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (empty: the region's UTM zone)",
                                                    optional=True))
        self.addParameter(enum_parameter(self.DTYPE, "Output data type", OUTPUT_DTYPES, "float32"))
        self.addParameter(QgsProcessingParameterString(
            self.TIME_STEP, "Time stack step (empty: one composite; 'month' or e.g. '16d')", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.PROJECT, "Google Cloud project (empty: the one in geedl's settings)", optional=True))
        self.addOutput(QgsProcessingOutputString(self.RESULT, "Result (JSON)"))

    def recipe_args(self, parameters: dict[str, Any], context: QgsProcessingContext,
                    feedback: QgsProcessingFeedback) -> list[str]:
        args = ["--source", "gee"]
        region = region_cli_args(self, parameters, self.REGION_LAYER, self.REGION_EXTENT, context, feedback)
        if not region:
            raise GeedlError("Earth Engine needs an area: choose a region layer or an extent.")
        args += region
        args += ["--start", self.parameterAsString(parameters, self.START, context),
                 "--end", self.parameterAsString(parameters, self.END, context),
                 "--collection", enum_value(self, parameters, self.COLLECTION, context),
                 "--max-cloud", repr(self.parameterAsDouble(parameters, self.MAX_CLOUD, context)),
                 "--cloud-mask", enum_value(self, parameters, self.CLOUD_MASK, context),
                 "--cs-threshold", repr(self.parameterAsDouble(parameters, self.CS_THRESHOLD, context)),
                 "--bands", self.parameterAsString(parameters, self.BANDS, context),
                 "--reducer", enum_value(self, parameters, self.REDUCER, context),
                 "--percentile", repr(self.parameterAsDouble(parameters, self.PERCENTILE, context)),
                 "--scale", repr(self.parameterAsDouble(parameters, self.SCALE, context)),
                 "--dtype", enum_value(self, parameters, self.DTYPE, context)]
        indices = self.parameterAsString(parameters, self.INDICES, context)
        if indices.strip():
            args += ["--indices", indices]
        crs = crs_text(self.parameterAsCrs(parameters, self.CRS, context))
        if crs:
            args += ["--crs", crs]
        step = self.parameterAsString(parameters, self.TIME_STEP, context).strip()
        if step:
            args += ["--time-step", step]
        project = self.parameterAsString(parameters, self.PROJECT, context).strip() or _settings_project()
        if project:
            args += ["--project", project]
        return args


def _settings_project() -> str:
    from ...toolbelt.settings import PluginSettings

    return PluginSettings.load().ee_project


class EarthEngineCompositeAlgorithm(_EarthEngineBase):
    ALG_ID = "eecomposite"
    DISPLAY_NAME = "Earth Engine composite"
    HELP = (
        "Computes the composite recipe (bands, indices, reducer, scale, CRS) in Google Earth Engine over "
        "the region and dates, and downloads it as a tiled GeoTIFF (parallel, retried, resumable). "
        "Regions too large to download must be exported (see Earth Engine export). <b>Dry run</b> builds "
        "the request offline and returns the scene query and expression graph as JSON without an "
        "account. The Earth Engine project comes from geedl's settings unless given here."
    )

    TILE_SIZE = "TILE_SIZE"
    DRY_RUN = "DRY_RUN"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_recipe_parameters()
        self.addParameter(QgsProcessingParameterNumber(self.TILE_SIZE, "Download tile size (px)",
                                                       defaultValue=DEFAULT_TILE_SIZE, minValue=1))
        self.addParameter(QgsProcessingParameterBoolean(self.DRY_RUN, "Dry run (offline, nothing downloaded)",
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Composite"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        args = self.recipe_args(parameters, context, feedback)
        args += ["--tile-size", str(self.parameterAsInt(parameters, self.TILE_SIZE, context)), "--out", out]
        dry_run = self.parameterAsBoolean(parameters, self.DRY_RUN, context)
        if dry_run:
            args.append("--dry-run")
        result = self.run_command("composite", args, core, feedback)
        return {self.OUTPUT: None if dry_run else out, self.RESULT: json.dumps(result, default=str)}


class EarthEngineExportAlgorithm(_EarthEngineBase):
    ALG_ID = "eeexport"
    DISPLAY_NAME = "Earth Engine export"
    HELP = (
        "Starts an Earth Engine batch export of the composite recipe (to Google Drive, Cloud Storage or "
        "an asset) for areas too big to download, on the same exact grid a download would use, and "
        "follows the task until it ends (unless 'Do not wait' is set)."
    )

    DESTINATION = "DESTINATION"
    FOLDER = "FOLDER"
    BUCKET = "BUCKET"
    ASSET_ID = "ASSET_ID"
    DESCRIPTION = "DESCRIPTION"
    NO_WAIT = "NO_WAIT"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_recipe_parameters()
        self.addParameter(enum_parameter(self.DESTINATION, "Export to", EXPORT_DESTINATIONS, "drive"))
        self.addParameter(QgsProcessingParameterString(self.FOLDER, "Drive folder", optional=True))
        self.addParameter(QgsProcessingParameterString(self.BUCKET, "Cloud Storage bucket", optional=True))
        self.addParameter(QgsProcessingParameterString(self.ASSET_ID, "Asset id", optional=True))
        self.addParameter(QgsProcessingParameterString(self.DESCRIPTION, "Task name",
                                                       defaultValue="geedl_composite"))
        self.addParameter(QgsProcessingParameterBoolean(self.NO_WAIT, "Do not wait for the task",
                                                        defaultValue=False))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        description = (self.parameterAsString(parameters, self.DESCRIPTION, context).strip()
                       or "geedl_composite")
        args = self.recipe_args(parameters, context, feedback)
        args += ["--export", enum_value(self, parameters, self.DESTINATION, context),
                 "--description", description, "--out", f"{description}.tif"]
        for name, flag in ((self.FOLDER, "--folder"), (self.BUCKET, "--bucket"),
                           (self.ASSET_ID, "--asset-id")):
            value = self.parameterAsString(parameters, name, context).strip()
            if value:
                args += [flag, value]
        if self.parameterAsBoolean(parameters, self.NO_WAIT, context):
            args.append("--no-wait")
        result = self.run_command("composite", args, core, feedback)
        return {self.RESULT: json.dumps(result, default=str)}


# the key under which the dock stores a preview's serialized ee object (gui.layers.EE_OBJECT_PROPERTY),
# so the dock gives layers added here fresh tile URLs when the project is reopened
EE_OBJECT_PROPERTY = "geedl/ee_object"


class EarthEnginePreviewAlgorithm(_EarthEngineBase):
    ALG_ID = "eepreview"
    DISPLAY_NAME = "Earth Engine preview layer"
    HELP = (
        "Adds the composite recipe, computed by Google Earth Engine over the region and dates, to the "
        "map as an XYZ tile layer (false colour B11/B8/B3 when those bands are in the recipe, else true "
        "colour or the first band). Nothing is downloaded. The layer keeps the Earth Engine expression, "
        "so geedl's dock renews its map token when the project is reopened. Returns the layer, its "
        "tile URI and the scene summary (count and dates) as JSON. Pixel size, CRS, data type and "
        "time step are not used by the preview."
    )

    LAYER_NAME = "LAYER_NAME"
    OUTPUT = "OUTPUT"
    URI = "URI"
    SUMMARY = "SUMMARY"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_recipe_parameters()
        self.addParameter(QgsProcessingParameterString(self.LAYER_NAME, "Layer name", optional=True))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT, "Preview layer"))
        self.addOutput(QgsProcessingOutputString(self.URI, "XYZ layer source"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Scene summary (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        # the same parameters -> recipe/query path as the composite command (one source of truth)
        from ...core.earthengine.cli_support import query_from_args, recipe_from_args, region_from_args
        from ...core.earthengine.connection import initialize, is_initialized, resolve_project
        from ...core.earthengine.preview import preview_composite

        # --out is required by the command; the preview writes no file
        args = command_parser("composite").parse_args(
            [*self.recipe_args(parameters, context, feedback), "--out", "eepreview.tif"])
        recipe = recipe_from_args(args)
        query = query_from_args(args, region_from_args(args))
        query.spec.check_bands(recipe.required_bands)
        if not is_initialized():
            core.progress(0, "connecting to Earth Engine")
            initialize(resolve_project(args.project))
        layer = preview_composite(recipe, query, core)
        name = (self.parameterAsString(parameters, self.LAYER_NAME, context).strip()
                or f"Earth Engine composite ({layer.vis_kind})")
        raster = QgsRasterLayer(layer.uri, name, "wms")
        if not raster.isValid():
            raise GeedlError(f"QGIS could not open the Earth Engine tile layer {layer.uri!r}.")
        raster.setCustomProperty(EE_OBJECT_PROPERTY, layer.serialized)
        context.temporaryLayerStore().addMapLayer(raster)
        context.addLayerToLoadOnCompletion(raster.id(), QgsProcessingContext.LayerDetails(
            name, context.project(), self.OUTPUT))
        summary = json.dumps(layer.summary, default=str)
        return {self.OUTPUT: raster.id(), self.URI: layer.uri, self.SUMMARY: summary, self.RESULT: summary}


ALGORITHMS = [EarthEngineCompositeAlgorithm, EarthEngineExportAlgorithm, EarthEnginePreviewAlgorithm]
