"""Processing: "Evaluate prediction" (core.inference.evaluate)."""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ...core.errors import GeedlError
from ...core.inference.evaluate import EvaluateParams, evaluate, format_table
from ...core.progress import Feedback
from ..base import GeedlAlgorithm
from ..params import default_of, name_pairs, raster_path, vector_path_and_layer


class EvaluateAlgorithm(GeedlAlgorithm):
    ALG_ID = "evaluateprediction"
    DISPLAY_NAME = "Evaluate prediction"
    GROUP = "Inference"
    GROUP_ID = "inference"
    HELP = (
        "Scores a predicted class map against truth (a class raster on any grid, or label polygons with a "
        "class field such as OSM's fclass): per-class IoU (Jaccard), precision, recall and F1, overall "
        "accuracy and the confusion matrix, on the truth's labelled pixels. Truth classes are matched to "
        "the model's by name (or by the class map truth=prediction). Writes an error map (correct / false "
        "positive / false negative for the class of interest) and the metrics as JSON."
    )

    PREDICTION = "PREDICTION"
    TRUTH = "TRUTH"
    TRUTH_RASTER = "TRUTH_RASTER"
    CLASS_FIELD = "CLASS_FIELD"
    CLASS_MAP = "CLASS_MAP"
    CLASS_OF_INTEREST = "CLASS_OF_INTEREST"
    ERRORS = "ERRORS"
    JSON = "JSON"
    METRICS = "METRICS"
    MEAN_IOU = "MEAN_IOU"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTION, "Prediction (class map)"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.TRUTH, "Truth polygons", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.TRUTH_RASTER, "or a truth class raster",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field of the polygons (empty: class_id)",
            defaultValue=default_of(EvaluateParams, "class_field"), parentLayerParameterName=self.TRUTH,
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_MAP, "Truth classes onto prediction classes (e.g. meadow=grass)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_OF_INTEREST, "Class of interest for the error map (name or id)", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.ERRORS, "Error map", optional=True,
                                                                  createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.JSON, "Metrics (JSON)", "JSON (*.json)",
                                                                optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputString(self.METRICS, "Metrics (JSON)"))
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_IOU, "Mean IoU"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        vector, layer = vector_path_and_layer(self, parameters, self.TRUTH, context, feedback)
        raster = (raster_path(self, parameters, self.TRUTH_RASTER, context)
                  if parameters.get(self.TRUTH_RASTER) not in (None, "") else None)
        truth = [p for p in (vector, raster) if p]
        if len(truth) != 1:
            raise GeedlError("Give exactly one truth: label polygons or a class raster.")
        interest = self.parameterAsString(parameters, self.CLASS_OF_INTEREST, context).strip()
        params = EvaluateParams(
            prediction=raster_path(self, parameters, self.PREDICTION, context),
            truth=truth[0],
            class_field=(self.parameterAsString(parameters, self.CLASS_FIELD, context)
                         or default_of(EvaluateParams, "class_field")),
            class_map=name_pairs(self.parameterAsString(parameters, self.CLASS_MAP, context)),
            out_errors=self.parameterAsOutputLayer(parameters, self.ERRORS, context) or None,
            json_path=self.parameterAsFileOutput(parameters, self.JSON, context) or None,
            class_of_interest=int(interest) if interest.isdigit() else (interest or None),
            layer=layer if vector else None,
        )
        result = evaluate(params, core)
        feedback.pushInfo(format_table(result.metrics))
        return {self.ERRORS: str(result.errors) if result.errors else None,
                self.JSON: str(result.json_path) if result.json_path else None,
                self.METRICS: json.dumps(result.metrics, default=str),
                self.MEAN_IOU: result.metrics.get("mean_iou")}


ALGORITHMS = [EvaluateAlgorithm]
