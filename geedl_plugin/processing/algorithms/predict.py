"""Processing: "Run model" (core.inference.run_predict), in-process with onnxruntime."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ...core.inference import PredictParams, run_predict
from ...core.inference.vectorize import VectorizeParams, vectorize_prediction
from ...core.progress import Feedback
from ...toolbelt.threads import call_in_python_thread
from ..base import GeedlAlgorithm
from ..params import (
    add_region_parameters,
    default_of,
    enum_parameter,
    enum_value,
    int_list,
    raster_path,
    region_from_parameters,
)


class RunModelAlgorithm(GeedlAlgorithm):
    ALG_ID = "runmodel"
    DISPLAY_NAME = "Run model"
    GROUP = "Inference"
    GROUP_ID = "inference"
    HELP = (
        "Runs a geedl ONNX model over a composite of any size with onnxruntime: bands are matched by "
        "name from the model's metadata (which also gives normalisation, tile size and classes), tiles "
        "overlap and are blended so no seam shows, windows are streamed so memory does not grow with "
        "the raster. Output: a paletted class GeoTIFF (255 = no data), optionally per-class "
        "probabilities. Tile size / overlap 0 use the model's values."
    )

    MODEL = "MODEL"
    IMAGE = "IMAGE"
    REGION_LAYER = "REGION_LAYER"
    REGION_EXTENT = "REGION_EXTENT"
    TILE = "TILE"
    OVERLAP = "OVERLAP"
    BATCH = "BATCH"
    DEVICE = "DEVICE"
    OUTPUT = "OUTPUT"
    PROBABILITIES = "PROBABILITIES"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "Model (ONNX written by geedl)",
                                                     extension="onnx"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.IMAGE, "Composite (bands named)"))
        add_region_parameters(self, self.REGION_LAYER, self.REGION_EXTENT, "Only inside")
        self.addParameter(QgsProcessingParameterNumber(self.TILE, "Tile size (0: the model's)",
                                                       defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (-1: the model's)",
                                                       defaultValue=-1, minValue=-1))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH, "Tiles per batch",
                                                       defaultValue=default_of(PredictParams, "batch"),
                                                       minValue=1))
        self.addParameter(enum_parameter(self.DEVICE, "Device", ("auto", "cpu", "cuda"),
                                         default_of(PredictParams, "device")))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Prediction"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, "Class probabilities", optional=True, createByDefault=False))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        tile = self.parameterAsInt(parameters, self.TILE, context)
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        probabilities = self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context) or None
        params = PredictParams(
            model=self.parameterAsFile(parameters, self.MODEL, context),
            image=raster_path(self, parameters, self.IMAGE, context),
            out=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            probabilities=probabilities,
            region=region_from_parameters(self, parameters, self.REGION_LAYER, self.REGION_EXTENT, context,
                                          feedback),
            tile=tile or None,
            overlap=overlap if overlap >= 0 else None,
            batch=self.parameterAsInt(parameters, self.BATCH, context),
            device=enum_value(self, parameters, self.DEVICE, context),
        )
        result = call_in_python_thread(run_predict, params, core, name="geedl run model")
        for key, value in result.as_dict().items():
            feedback.pushInfo(f"{key}: {value}")
        return {self.OUTPUT: str(result.out) if result.out else None,
                self.PROBABILITIES: str(result.probabilities) if result.probabilities else None}


class VectorizePredictionAlgorithm(GeedlAlgorithm):
    ALG_ID = "vectorizeprediction"
    DISPLAY_NAME = "Prediction to label polygons"
    GROUP = "Inference"
    GROUP_ID = "inference"
    HELP = (
        "Turns a model's class map into label polygons in the label-layer schema (source = model, rule = "
        "the model), with confidence = the mean probability of the polygon's class when the run's "
        "probabilities raster is given, so the analyst can correct the model's output (low confidence "
        "first) and retrain."
    )

    PREDICTION = "PREDICTION"
    PROBABILITIES = "PROBABILITIES"
    CLASSES = "CLASSES"
    MIN_AREA = "MIN_AREA"
    SIMPLIFY = "SIMPLIFY"
    CONNECTEDNESS = "CONNECTEDNESS"
    OUTPUT = "OUTPUT"
    FEATURES = "FEATURES"
    SUMMARY = "SUMMARY"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        default = partial(default_of, VectorizeParams)
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTION, "Prediction (class map)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.PROBABILITIES,
                                                            "Probabilities of the same run", optional=True))
        self.addParameter(QgsProcessingParameterString(self.CLASSES, "Class ids (empty: every class)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area (m²)",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=default("min_area_m2"), minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(self.SIMPLIFY, "Simplify tolerance (m)",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=default("simplify_m"), minValue=0.0))
        self.addParameter(enum_parameter(self.CONNECTEDNESS, "Pixel connectedness", ("4", "8"),
                                         str(default("connectedness"))))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Label polygons",
                                                                  QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.FEATURES, "Polygons"))
        self.addOutput(QgsProcessingOutputString(self.SUMMARY, "Summary (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        probabilities = (raster_path(self, parameters, self.PROBABILITIES, context)
                         if parameters.get(self.PROBABILITIES) not in (None, "") else None)
        params = VectorizeParams(
            prediction=raster_path(self, parameters, self.PREDICTION, context),
            out_vector=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            probabilities=probabilities,
            classes=int_list(self.parameterAsString(parameters, self.CLASSES, context)),
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            simplify_m=self.parameterAsDouble(parameters, self.SIMPLIFY, context),
            connectedness=int(enum_value(self, parameters, self.CONNECTEDNESS, context)),
        )
        result = vectorize_prediction(params, core)
        return {self.OUTPUT: str(result.path), self.FEATURES: result.features,
                self.SUMMARY: json.dumps(result.summary(), default=str)}


ALGORITHMS = [RunModelAlgorithm, VectorizePredictionAlgorithm]
