"""Processing: labels from an existing map (``python -m geedl_plugin reference``).

Earth Engine products (CORINE, CDL, AAFC, WorldCover, Dynamic World, JRC) download through the
runner like the Earth Engine composite; a local class raster or polygon layer works offline.
Runs the CLI command so both share one code path (core.reference).
"""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ...cli import choices, command_parser
from ...core.progress import Feedback
from ..base import CliAlgorithm
from ..params import enum_parameter, enum_value, raster_path


class ReferenceLabelsAlgorithm(CliAlgorithm):
    ALG_ID = "referencelabels"
    DISPLAY_NAME = "Labels from a reference map"
    GROUP = "Labels"
    GROUP_ID = "labels"
    HELP = (
        "Turns an existing map into a label mask on the composite's grid, its classes remapped to the "
        "project's (unmapped values = 255, ignore): CORINE (document 002's rice), USDA CDL, AAFC, ESA "
        "WorldCover, Dynamic World, JRC water (Earth Engine; dry run works offline), or a local class "
        "raster / polygon layer (product 'local' with a source file, e.g. OSM land use with the "
        "'osm-landuse' preset and field fclass). Optionally also writes label polygons."
    )

    PRODUCT = "PRODUCT"
    SOURCE = "SOURCE"
    PRESET = "PRESET"
    REMAP = "REMAP"
    COMPOSITE = "COMPOSITE"
    FIELD = "FIELD"
    YEAR = "YEAR"
    INWARD_BUFFER = "INWARD_BUFFER"
    MIN_AREA = "MIN_AREA"
    PROJECT = "PROJECT"
    DRY_RUN = "DRY_RUN"
    OUTPUT = "OUTPUT"
    OUT_VECTOR = "OUT_VECTOR"
    RESULT = "RESULT"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        cli = command_parser("reference")
        self.addParameter(enum_parameter(self.PRODUCT, "Reference product", choices(cli, "product"), "local"))
        self.addParameter(QgsProcessingParameterFile(self.SOURCE, "Local class raster or polygon file "
                                                     "(product local)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.PRESET, "Remap preset (e.g. corine-rice, "
                                                       "cdl-crops, osm-landuse)", optional=True))
        self.addParameter(QgsProcessingParameterFile(self.REMAP, "or a remap table (JSON)", extension="json",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.COMPOSITE,
                                                            "Composite (the grid of the labels)"))
        self.addParameter(QgsProcessingParameterString(self.FIELD, "Class attribute of a polygon layer "
                                                       "(OSM: fclass)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.YEAR, "Edition year (0: the latest)",
                                                       defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.INWARD_BUFFER, "Inward buffer of polygons (m)", QgsProcessingParameterNumber.Double,
            defaultValue=cli.get_default("inward_buffer"), minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_AREA, "Minimum polygon area (m²)", QgsProcessingParameterNumber.Double,
            defaultValue=cli.get_default("min_area"), minValue=0.0))
        self.addParameter(QgsProcessingParameterString(
            self.PROJECT, "Google Cloud project (empty: the one in geedl's settings)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.DRY_RUN, "Dry run (Earth Engine products, "
                                                        "offline)", defaultValue=False))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Label mask"))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUT_VECTOR, "Label polygons",
                                                                  optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputString(self.RESULT, "Result (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        from ...toolbelt.settings import PluginSettings

        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        args = ["--product", enum_value(self, parameters, self.PRODUCT, context),
                "--composite", raster_path(self, parameters, self.COMPOSITE, context), "--out-mask", out,
                "--inward-buffer", repr(self.parameterAsDouble(parameters, self.INWARD_BUFFER, context)),
                "--min-area", repr(self.parameterAsDouble(parameters, self.MIN_AREA, context))]
        for name, flag in ((self.SOURCE, "--source"), (self.PRESET, "--preset"), (self.REMAP, "--remap"),
                           (self.FIELD, "--field")):
            value = self.parameterAsString(parameters, name, context).strip()
            if value:
                args += [flag, value]
        year = self.parameterAsInt(parameters, self.YEAR, context)
        if year:
            args += ["--year", str(year)]
        project = (self.parameterAsString(parameters, self.PROJECT, context).strip()
                   or PluginSettings.load().ee_project)
        if project:
            args += ["--project", project]
        vector = self.parameterAsOutputLayer(parameters, self.OUT_VECTOR, context)
        if vector:
            args += ["--out-vector", vector]
        dry_run = self.parameterAsBoolean(parameters, self.DRY_RUN, context)
        if dry_run:
            args.append("--dry-run")
        result = self.run_command("reference", args, core, feedback)
        return {self.OUTPUT: None if dry_run else out, self.OUT_VECTOR: vector or None,
                self.RESULT: json.dumps(result, default=str)}


ALGORITHMS = [ReferenceLabelsAlgorithm]
