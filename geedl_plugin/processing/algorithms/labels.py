"""Processing: label masks from rules, polygons, rasterize back, training chips, noise correction
(core.labels.*). Each algorithm gathers parameters and calls one core function."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ...cli import choices, command_parser
from ...core.errors import GeedlError
from ...core.labels.chips import ChipsParams, run_chips
from ...core.labels.polygons import GEOMETRIES, PolygonizeParams, run_polygonize
from ...core.labels.rasterize import RasterizeParams, run_rasterize
from ...core.labels.rules import WATER_METHODS, AutolabelParams, run_autolabel
from ...core.labels.schema import SOURCES
from ...core.progress import Feedback
from ..base import CliAlgorithm, GeedlAlgorithm
from ..params import (
    class_map,
    default_of,
    enum_parameter,
    enum_value,
    int_list,
    optional_enum,
    optional_number,
    raster_path,
    vector_path_and_layer,
)

GROUP = "Labels"
GROUP_ID = "labels"


def _optional_double(name: str, description: str) -> QgsProcessingParameterNumber:
    return QgsProcessingParameterNumber(name, description, QgsProcessingParameterNumber.Double, optional=True)


class LabelMaskAlgorithm(GeedlAlgorithm):
    ALG_ID = "labelmask"
    DISPLAY_NAME = "Label mask from rule"
    GROUP = GROUP
    GROUP_ID = GROUP_ID
    HELP = (
        "Turns a composite (bands named) into a class mask (uint8, 255 = ignore) with its legend and "
        "colours, from a rule:<br><b>crop</b>: HUE &lt; t_hue and NDVI &gt; t_ndvi (document 000; it "
        "marks green vegetation in general, so adjust the thresholds), <b>soil</b>: HUE &gt; t_hue, "
        "<b>crop+soil</b>: both in one raster, <b>water</b>: MNDWI/NDWI &gt; threshold, Landsat QA_PIXEL "
        "bit 7 or Sentinel-2 SCL = 6 (clouds, shadows and snow ignored), or any Earth Engine expression "
        "such as <i>NDVI &gt; 0.3 &amp;&amp; B11 &lt; 2000</i>, or a rule-set JSON file (several classes). "
        "Leave thresholds empty for the rule's defaults; they apply to crop, soil and water only."
    )

    COMPOSITE = "COMPOSITE"
    RULE = "RULE"
    HUE = "HUE_THRESHOLD"
    NDVI = "NDVI_THRESHOLD"
    WATER_THRESHOLD = "WATER_THRESHOLD"
    WATER_METHOD = "WATER_METHOD"
    OUTPUT = "OUTPUT"
    SUMMARY = "SUMMARY"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.COMPOSITE, "Composite (bands named)"))
        self.addParameter(QgsProcessingParameterString(
            self.RULE, "Rule: crop, soil, crop+soil, water, an expression or a rule-set JSON file",
            defaultValue="crop"))
        self.addParameter(_optional_double(self.HUE, "HUE threshold (crop, soil; default 0)"))
        self.addParameter(_optional_double(self.NDVI, "NDVI threshold (crop; default 0)"))
        self.addParameter(_optional_double(self.WATER_THRESHOLD, "Water index threshold (water; default 0)"))
        parameter = enum_parameter(self.WATER_METHOD, "Water method (water; default auto)", WATER_METHODS,
                                   None, optional=True)
        self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Mask"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        rule_params = {
            "t_hue": optional_number(self, parameters, self.HUE, context),
            "t_ndvi": optional_number(self, parameters, self.NDVI, context),
            "threshold": optional_number(self, parameters, self.WATER_THRESHOLD, context),
            "method": optional_enum(self, parameters, self.WATER_METHOD, context),
        }
        params = AutolabelParams(
            composite=raster_path(self, parameters, self.COMPOSITE, context),
            out_mask=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            rule=self.parameterAsString(parameters, self.RULE, context).strip(),
            rule_params={k: v for k, v in rule_params.items() if v is not None},
        )
        result = run_autolabel(params, core)
        summary = result.summary()
        feedback.pushInfo(f"classes: {summary['classes']}, ignored pixels: {summary['ignored_pixels']}")
        return {self.OUTPUT: str(result.path), self.SUMMARY: json.dumps(summary, default=str)}


class PolygonizeAlgorithm(GeedlAlgorithm):
    ALG_ID = "polygonize"
    DISPLAY_NAME = "Mask to label polygons"
    GROUP = GROUP
    GROUP_ID = GROUP_ID
    HELP = (
        "Turns a class mask into label polygons (document 000's reduceToVectors at the mask's pixels), "
        "in the label-layer schema (class_id, class_name, source, confidence, rule, created) with a "
        "QGIS style, so they can be corrected with QGIS's editing tools. Areas are in m² in a projected "
        "CRS (the local UTM zone for geographic masks); polygons under the minimum area are dropped "
        "(document 000: 3000 m²); area statistics (count, min, mean, max, total) are reported and stored "
        "beside the output. GeoPackage by default; shapefile keeps the fields and writes a .prj."
    )

    MASK = "MASK"
    CLASSES = "CLASSES"
    MIN_AREA = "MIN_AREA"
    GEOMETRY = "GEOMETRY"
    CONNECTEDNESS = "CONNECTEDNESS"
    SIMPLIFY = "SIMPLIFY"
    FILL_HOLES = "FILL_HOLES"
    SOURCE = "SOURCE"
    OUTPUT = "OUTPUT"
    FEATURES = "FEATURES"
    STATS = "STATS"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Class mask"))
        self.addParameter(QgsProcessingParameterString(
            self.CLASSES, "Class ids to vectorise (empty: every class but the background)", optional=True))
        default = partial(default_of, PolygonizeParams)
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area (m²)",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=default("min_area_m2"), minValue=0.0))
        self.addParameter(enum_parameter(self.GEOMETRY, "Geometry", GEOMETRIES, default("geometry")))
        self.addParameter(enum_parameter(self.CONNECTEDNESS, "Pixel connectedness (8: diagonal neighbours "
                                         "join, as Earth Engine)", ("4", "8"), str(default("connectedness"))))
        self.addParameter(QgsProcessingParameterNumber(self.SIMPLIFY, "Simplify tolerance (m; 0: none)",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=default("simplify_m"), minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(self.FILL_HOLES, "Fill holes smaller than (m²)",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=default("fill_holes_m2"), minValue=0.0))
        self.addParameter(enum_parameter(self.SOURCE, "Source field value", SOURCES, default("source")))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Label polygons", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.FEATURES, "Polygons kept"))
        self.addOutput(QgsProcessingOutputString(self.STATS, "Area statistics (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        params = PolygonizeParams(
            mask=raster_path(self, parameters, self.MASK, context),
            out_vector=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            classes=int_list(self.parameterAsString(parameters, self.CLASSES, context)),
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            geometry=enum_value(self, parameters, self.GEOMETRY, context),
            connectedness=int(enum_value(self, parameters, self.CONNECTEDNESS, context)),
            simplify_m=self.parameterAsDouble(parameters, self.SIMPLIFY, context),
            fill_holes_m2=self.parameterAsDouble(parameters, self.FILL_HOLES, context),
            source=enum_value(self, parameters, self.SOURCE, context),
        )
        result = run_polygonize(params, core)
        feedback.pushInfo(f"Area statistics (kept polygons): {result.stats.text()}")
        return {self.OUTPUT: str(result.path), self.FEATURES: result.features,
                self.STATS: json.dumps(result.summary(), default=str)}


class RasterizeAlgorithm(GeedlAlgorithm):
    ALG_ID = "rasterizelabels"
    DISPLAY_NAME = "Rasterize label polygons"
    GROUP = GROUP
    GROUP_ID = GROUP_ID
    HELP = (
        "Burns (hand-corrected) label polygons into a class raster on the exact grid of a composite "
        "(size, geotransform, CRS), for training and scoring. Pixels outside every polygon are 255 "
        "(ignore). The class comes from any field: class_id by default; a text field (such as OSM's "
        "fclass) maps through the class map (water=1, farm=2; unmapped values are ignored) or its "
        "values are numbered in sorted order. An inward buffer (m) labels only confident interiors "
        "(document 003). Invalid geometries are repaired and counted."
    )

    LABELS = "LABELS"
    REFERENCE = "REFERENCE"
    CLASS_FIELD = "CLASS_FIELD"
    CLASS_MAP = "CLASS_MAP"
    INWARD_BUFFER = "INWARD_BUFFER"
    OVERLAP = "OVERLAP"
    OUTPUT = "OUTPUT"
    SUMMARY = "SUMMARY"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource(self.LABELS, "Label polygons",
                                                              [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "On the grid of (composite)"))
        # optional: a required field parameter ignores its default when the value is left out
        self.addParameter(QgsProcessingParameterField(self.CLASS_FIELD, "Class field (empty: class_id)",
                                                      defaultValue=default_of(RasterizeParams, "class_field"),
                                                      parentLayerParameterName=self.LABELS, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_MAP, "Class map for a text field (e.g. water=1, farm=2)", optional=True))
        default = partial(default_of, RasterizeParams)
        self.addParameter(QgsProcessingParameterNumber(self.INWARD_BUFFER, "Inward buffer (m)",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=default("inward_buffer_m"), minValue=0.0))
        self.addParameter(enum_parameter(self.OVERLAP, "Where polygons of different classes overlap",
                                         ("ignore", "last"), default("overlap")))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Label raster"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        vector, layer = vector_path_and_layer(self, parameters, self.LABELS, context, feedback)
        params = RasterizeParams(
            vector=vector or "",
            reference=raster_path(self, parameters, self.REFERENCE, context),
            out=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            class_field=(self.parameterAsString(parameters, self.CLASS_FIELD, context)
                         or default_of(RasterizeParams, "class_field")),
            class_map=class_map(self.parameterAsString(parameters, self.CLASS_MAP, context)),
            inward_buffer_m=self.parameterAsDouble(parameters, self.INWARD_BUFFER, context),
            layer=layer,
            overlap=enum_value(self, parameters, self.OVERLAP, context),
        )
        result = run_rasterize(params, core)
        summary = result.summary()
        feedback.pushInfo(f"classes: {summary['classes']}")
        return {self.OUTPUT: str(result.path), self.SUMMARY: json.dumps(summary, default=str)}


class ChipsAlgorithm(GeedlAlgorithm):
    ALG_ID = "trainingchips"
    DISPLAY_NAME = "Export training chips"
    GROUP = GROUP
    GROUP_ID = GROUP_ID
    HELP = (
        "Cuts a composite and its labels (a class raster on the composite's grid, or label polygons "
        "rasterized with the class field / class map) into georeferenced GeoTIFF chip pairs of the given "
        "size and overlap, skips chips with too few labelled pixels, and splits train/validation by "
        "spatial blocks (never by random pixels, which would leak neighbours into validation). Writes "
        "a manifest (JSON and CSV) with each chip's split and class counts; the folder can be given to "
        "Train model instead of an image and labels."
    )

    IMAGE = "IMAGE"
    LABELS = "LABELS"
    LABEL_RASTER = "LABEL_RASTER"
    CLASS_FIELD = "CLASS_FIELD"
    CLASS_MAP = "CLASS_MAP"
    CHIP_SIZE = "CHIP_SIZE"
    OVERLAP = "OVERLAP"
    MIN_LABELLED = "MIN_LABELLED"
    VAL_FRACTION = "VAL_FRACTION"
    BLOCK_SIZE = "BLOCK_SIZE"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    MANIFEST = "MANIFEST"
    SUMMARY = "SUMMARY"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        default = partial(default_of, ChipsParams)
        self.addParameter(QgsProcessingParameterRasterLayer(self.IMAGE, "Composite"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.LABELS, "Label polygons", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.LABEL_RASTER, "or a label raster",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterField(self.CLASS_FIELD, "Class field (empty: class_id)",
                                                      defaultValue=default("class_field"),
                                                      parentLayerParameterName=self.LABELS, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_MAP, "Class map for a text field (e.g. water=1, farm=2)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.CHIP_SIZE, "Chip size (px)",
                                                       defaultValue=default("chip_size"), minValue=8))
        self.addParameter(QgsProcessingParameterNumber(self.OVERLAP, "Overlap (px)",
                                                       defaultValue=default("overlap"), minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_LABELLED, "Skip chips with a smaller labelled fraction",
            QgsProcessingParameterNumber.Double,
            defaultValue=default("min_labelled_fraction"), minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.VAL_FRACTION, "Validation fraction (spatial blocks)", QgsProcessingParameterNumber.Double,
            defaultValue=default("val_fraction"), minValue=0.0, maxValue=0.99))
        self.addParameter(QgsProcessingParameterNumber(self.BLOCK_SIZE, "Split block (px; 0: 4 chips)",
                                                       defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       defaultValue=default("seed")))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Chips folder"))
        self.addOutput(QgsProcessingOutputFile(self.MANIFEST, "Manifest (JSON)"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        vector, _ = vector_path_and_layer(self, parameters, self.LABELS, context, feedback)
        raster = (raster_path(self, parameters, self.LABEL_RASTER, context)
                  if parameters.get(self.LABEL_RASTER) not in (None, "") else None)
        labels = [p for p in (vector, raster) if p]
        if len(labels) != 1:
            raise GeedlError("Give exactly one of: label polygons or a label raster.")
        block = self.parameterAsInt(parameters, self.BLOCK_SIZE, context)
        params = ChipsParams(
            image=raster_path(self, parameters, self.IMAGE, context),
            labels=labels[0],
            out_dir=self.parameterAsString(parameters, self.OUTPUT, context),
            chip_size=self.parameterAsInt(parameters, self.CHIP_SIZE, context),
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            min_labelled_fraction=self.parameterAsDouble(parameters, self.MIN_LABELLED, context),
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            block_size=block or None,
            seed=self.parameterAsInt(parameters, self.SEED, context),
            class_field=(self.parameterAsString(parameters, self.CLASS_FIELD, context)
                         or default_of(ChipsParams, "class_field")),
            class_map=class_map(self.parameterAsString(parameters, self.CLASS_MAP, context)),
        )
        result = run_chips(params, core)
        summary = result.summary()
        feedback.pushInfo(f"{result.train} training and {result.val} validation chips")
        return {self.OUTPUT: str(result.out_dir), self.MANIFEST: str(result.manifest),
                self.SUMMARY: json.dumps(summary, default=str)}


class DenoiseAlgorithm(CliAlgorithm):
    ALG_ID = "denoiselabels"
    DISPLAY_NAME = "Correct label noise"
    GROUP = GROUP
    GROUP_ID = GROUP_ID
    HELP = (
        "Label-noise correction (document 001): a pixel classifier learns from balanced samples of the "
        "noisy rule mask, using the bands the rule did not read (a second view), and relabels pixels "
        "where it confidently disagrees (posteriors corrected back to the mask's class frequencies). "
        "Writes the corrected mask and a change map (band 1: 1 relabelled; band 2: confidence %). "
        "Runs in the Python set in geedl's settings (it uses torch, which never loads in QGIS)."
    )

    COMPOSITE = "COMPOSITE"
    MASK = "MASK"
    METHOD = "METHOD"
    FEATURES = "FEATURES"
    ALL_BANDS = "ALL_BANDS"
    SAMPLES = "SAMPLES"
    EPOCHS = "EPOCHS"
    CONFIDENCE = "CONFIDENCE"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    CHANGES = "CHANGES"
    SUMMARY = "SUMMARY"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        cli = command_parser("denoise")
        self.addParameter(QgsProcessingParameterRasterLayer(self.COMPOSITE,
                                                            "Composite the mask was made from"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Noisy class mask"))
        self.addParameter(enum_parameter(self.METHOD, "Learner (mlp: centre pixel; cnn: document 001's "
                                         "7x7 pixel CNN)", choices(cli, "method"), cli.get_default("method")))
        self.addParameter(QgsProcessingParameterString(
            self.FEATURES, "Bands the model sees (empty: those the rule did not read)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.ALL_BANDS, "Let the model see the rule's "
                                                        "bands too", defaultValue=False))
        self.addParameter(QgsProcessingParameterNumber(self.SAMPLES, "Training samples per class",
                                                       defaultValue=cli.get_default("samples"), minValue=10))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, "Epochs",
                                                       defaultValue=cli.get_default("epochs"), minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.CONFIDENCE, "Relabel where the model is at least this sure",
            QgsProcessingParameterNumber.Double,
            defaultValue=cli.get_default("confidence"), minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       defaultValue=cli.get_default("seed")))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Corrected mask"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.CHANGES, "Change map", optional=True,
                                                                  createByDefault=True))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        args = ["--composite", raster_path(self, parameters, self.COMPOSITE, context),
                "--mask", raster_path(self, parameters, self.MASK, context), "--out-mask", out,
                "--method", enum_value(self, parameters, self.METHOD, context),
                "--samples", str(self.parameterAsInt(parameters, self.SAMPLES, context)),
                "--epochs", str(self.parameterAsInt(parameters, self.EPOCHS, context)),
                "--confidence", repr(self.parameterAsDouble(parameters, self.CONFIDENCE, context)),
                "--seed", str(self.parameterAsInt(parameters, self.SEED, context))]
        changes = self.parameterAsOutputLayer(parameters, self.CHANGES, context)
        if changes:
            args += ["--out-changes", changes]
        features = self.parameterAsString(parameters, self.FEATURES, context).strip()
        if features:
            args += ["--features", features]
        if self.parameterAsBoolean(parameters, self.ALL_BANDS, context):
            args.append("--all-bands")
        result = self.run_command("denoise", args, core, feedback)
        return {self.OUTPUT: result.get("mask") or out,
                self.CHANGES: result.get("changes") or changes or None,
                self.SUMMARY: json.dumps(result, default=str)}


ALGORITHMS: list[type[GeedlAlgorithm]] = [LabelMaskAlgorithm, PolygonizeAlgorithm, RasterizeAlgorithm,
                                          ChipsAlgorithm, DenoiseAlgorithm]
