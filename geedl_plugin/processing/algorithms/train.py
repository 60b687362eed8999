"""Processing: "Train model", run as ``python -m geedl_plugin train`` in the runner Python.

torch never loads inside QGIS: the command runs in the interpreter set in geedl's settings
(default: the venv ``make deps`` built), its JSON progress lines drive the progress bar, and
Cancel stops it between two steps (the last epoch's checkpoint stays, ``Resume from`` continues).
"""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ...cli import choices, command_parser
from ...core.errors import GeedlError
from ...core.progress import Feedback
from ..base import CliAlgorithm
from ..params import enum_parameter, enum_value, optional_number, raster_path, vector_path


class TrainModelAlgorithm(CliAlgorithm):
    ALG_ID = "trainmodel"
    DISPLAY_NAME = "Train model"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = (
        "Trains a U-Net, pixel CNN (document 001), temporal 1D CNN or SegNet on a composite and labels "
        "(polygons with a class field, a label raster, or a chips manifest), validates on spatially "
        "separate blocks and exports an ONNX model whose metadata carries bands, normalisation, "
        "classes and metrics. Runs in the Python set in geedl's settings (torch never loads in QGIS). "
        "Writes model.onnx, model.ckpt, model.metrics.json and model.comparison.png. Numbers left at 0 "
        "take the model's defaults. Weights to keep: the epoch that scores best on the validation "
        "blocks (stopping early), or the last epoch, whose validation scores are then an unbiased "
        "held-out estimate. Loss: cross-entropy, or cross-entropy plus the Lovász-softmax term that "
        "optimises IoU (the U-Net's default). Tune threshold for class: after training, the probability "
        "at which that class is called is chosen on the training pixels and stored in the model (for a "
        "class whose labels are drawn generously, such as water from OpenStreetMap)."
    )

    MODEL = "MODEL"
    IMAGE = "IMAGE"
    LABELS = "LABELS"
    LABEL_RASTER = "LABEL_RASTER"
    MANIFEST = "MANIFEST"
    CLASS_FIELD = "CLASS_FIELD"
    CLASSES = "CLASSES"
    OTHER_CLASS = "OTHER_CLASS"
    INWARD_BUFFER = "INWARD_BUFFER"
    TIME_STEPS = "TIME_STEPS"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    CHIP_SIZE = "CHIP_SIZE"
    SAMPLES_PER_EPOCH = "SAMPLES_PER_EPOCH"
    LEARNING_RATE = "LEARNING_RATE"
    PATIENCE = "PATIENCE"
    KEEP = "KEEP"
    LOSS = "LOSS"
    TUNE_THRESHOLD = "TUNE_THRESHOLD"
    VAL_SPLIT = "VAL_SPLIT"
    BALANCE = "BALANCE"
    AUGMENT = "AUGMENT"
    NORTH_UP = "NORTH_UP"
    DEPTH = "DEPTH"
    WIDTH = "WIDTH"
    TILE_SIZE = "TILE_SIZE"
    FINETUNE_FROM = "FINETUNE_FROM"
    HEAD_ONLY = "HEAD_ONLY"
    RESUME = "RESUME"
    DEVICE = "DEVICE"
    THREADS = "THREADS"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    METRICS = "METRICS"
    COMPARISON = "COMPARISON"
    CHECKPOINT = "CHECKPOINT"
    RESULT = "RESULT"

    def _int(self, name: str, description: str, default: int, minimum: int = 0) -> None:
        self.addParameter(QgsProcessingParameterNumber(name, description, defaultValue=default,
                                                       minValue=minimum))

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        cli = command_parser("train")  # the command's own defaults and choices (importing it loads no torch)
        self.addParameter(enum_parameter(self.MODEL, "Model", choices(cli, "model"),
                                         cli.get_default("model")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.IMAGE, "Composite (not needed with a "
                                                            "chips manifest)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.LABELS, "Label polygons", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.LABEL_RASTER, "or a label raster",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterFile(self.MANIFEST, "or a chips manifest (JSON)",
                                                     extension="json", optional=True))
        self.addParameter(QgsProcessingParameterField(self.CLASS_FIELD, "Class field (e.g. class_name, "
                                                      "fclass)", parentLayerParameterName=self.LABELS,
                                                      optional=True))
        self.addParameter(QgsProcessingParameterString(self.CLASSES, "Classes to keep, in order "
                                                       "(e.g. water,farm,forest; empty: all)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.OTHER_CLASS, "Class for every other labelled "
                                                       "value (e.g. other)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.INWARD_BUFFER, "Inward buffer of polygons (m)", QgsProcessingParameterNumber.Double,
            defaultValue=0.0, minValue=0.0))
        self._int(self.TIME_STEPS, "Dates stacked in the image (temporal model; 0: none)", 0)
        self._int(self.EPOCHS, "Epochs", cli.get_default("epochs"))
        self._int(self.BATCH_SIZE, "Batch size (0: model default)", 0)
        self._int(self.CHIP_SIZE, "Training window (px; 0: model default)", 0)
        self._int(self.SAMPLES_PER_EPOCH, "Samples per epoch (0: automatic)", 0)
        self.addParameter(QgsProcessingParameterNumber(
            self.LEARNING_RATE, "Learning rate (0: 1e-3, 3e-4 when fine-tuning)",
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0))
        self._int(self.PATIENCE, "Early stopping patience (epochs)", cli.get_default("patience"))
        self.addParameter(enum_parameter(self.KEEP, "Weights to keep (best validation epoch, or last epoch)",
                                         choices(cli, "keep"), cli.get_default("keep")))
        self.addParameter(enum_parameter(self.LOSS, "Loss (auto: + Lovász IoU term for the U-Net)",
                                         choices(cli, "loss"), cli.get_default("loss")))
        self.addParameter(QgsProcessingParameterString(self.TUNE_THRESHOLD, "Tune the threshold of class "
                                                       "(e.g. water; empty: arg-max)", optional=True))
        self.addParameter(enum_parameter(self.VAL_SPLIT, "Validation split", choices(cli, "val_split"),
                                         cli.get_default("val_split")))
        self.addParameter(enum_parameter(self.BALANCE, "Class balancing", choices(cli, "balance"),
                                         cli.get_default("balance")))
        self.addParameter(QgsProcessingParameterBoolean(self.AUGMENT, "Augment (flips, rotations)",
                                                        defaultValue=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.NORTH_UP, "Keep north up: augment by left-right mirrors only (when direction matters, "
            "e.g. shadows)", defaultValue=False))
        self._int(self.DEPTH, "U-Net/SegNet depth (0: default)", 0)
        self._int(self.WIDTH, "First-level channels (0: default)", 0)
        self._int(self.TILE_SIZE, "Inference tile size stored in the model", cli.get_default("tile_size"), 8)
        self.addParameter(QgsProcessingParameterFile(self.FINETUNE_FROM, "Fine-tune from model (.onnx/.ckpt)",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.HEAD_ONLY, "Retrain the head only (fast)",
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterFile(self.RESUME, "Resume from checkpoint (.ckpt)",
                                                     extension="ckpt", optional=True))
        self.addParameter(enum_parameter(self.DEVICE, "Device", choices(cli, "device"),
                                         cli.get_default("device")))
        self._int(self.THREADS, "CPU threads (0: all)", 0)
        self._int(self.SEED, "Random seed", cli.get_default("seed"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Model", "ONNX models (*.onnx)"))
        self.addOutput(QgsProcessingOutputFile(self.METRICS, "Metrics (JSON)"))
        self.addOutput(QgsProcessingOutputFile(self.COMPARISON, "Comparison image (PNG)"))
        self.addOutput(QgsProcessingOutputFile(self.CHECKPOINT, "Checkpoint"))
        self.addOutput(QgsProcessingOutputString(self.RESULT, "Result (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        labels = [p for p in (vector_path(self, parameters, self.LABELS, context, feedback),
                              _optional_raster(self, parameters, self.LABEL_RASTER, context),
                              self.parameterAsFile(parameters, self.MANIFEST, context) or None) if p]
        if len(labels) != 1:
            raise GeedlError("Give exactly one of: label polygons, a label raster or a chips manifest.")
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        args = ["--model", enum_value(self, parameters, self.MODEL, context), "--labels", labels[0],
                "--out", out,
                "--epochs", str(self.parameterAsInt(parameters, self.EPOCHS, context)),
                "--patience", str(self.parameterAsInt(parameters, self.PATIENCE, context)),
                "--keep", enum_value(self, parameters, self.KEEP, context),
                "--loss", enum_value(self, parameters, self.LOSS, context),
                "--val-split", enum_value(self, parameters, self.VAL_SPLIT, context),
                "--balance", enum_value(self, parameters, self.BALANCE, context),
                "--tile-size", str(self.parameterAsInt(parameters, self.TILE_SIZE, context)),
                "--seed", str(self.parameterAsInt(parameters, self.SEED, context)),
                "--device", enum_value(self, parameters, self.DEVICE, context)]
        image = _optional_raster(self, parameters, self.IMAGE, context)
        if image:
            args += ["--image", image]
        for name, flag in ((self.CLASS_FIELD, "--class-field"), (self.CLASSES, "--classes"),
                           (self.OTHER_CLASS, "--other-class"), (self.FINETUNE_FROM, "--finetune-from"),
                           (self.RESUME, "--resume"), (self.TUNE_THRESHOLD, "--tune-threshold")):
            value = self.parameterAsString(parameters, name, context).strip()
            if value:
                args += [flag, value]
        for name, flag in ((self.TIME_STEPS, "--time-steps"), (self.BATCH_SIZE, "--batch-size"),
                           (self.CHIP_SIZE, "--chip-size"), (self.SAMPLES_PER_EPOCH, "--samples-per-epoch"),
                           (self.DEPTH, "--depth"), (self.WIDTH, "--width"), (self.THREADS, "--threads")):
            value = self.parameterAsInt(parameters, name, context)
            if value > 0:
                args += [flag, str(value)]
        for name, flag in ((self.INWARD_BUFFER, "--inward-buffer"), (self.LEARNING_RATE, "--lr")):
            value = self.parameterAsDouble(parameters, name, context)
            if value > 0:
                args += [flag, repr(value)]
        if not self.parameterAsBoolean(parameters, self.AUGMENT, context):
            args.append("--no-augment")
        elif self.parameterAsBoolean(parameters, self.NORTH_UP, context):
            args += ["--augment", "mirror"]
        if self.parameterAsBoolean(parameters, self.HEAD_ONLY, context):
            args.append("--head-only")
        result = self.run_command("train", args, core, feedback)
        return {self.OUTPUT: result.get("model", out), self.METRICS: result.get("metrics_json"),
                self.COMPARISON: result.get("comparison_png"), self.CHECKPOINT: result.get("checkpoint"),
                self.RESULT: json.dumps(result, default=str)}


def _optional_raster(alg: CliAlgorithm, parameters: dict[str, Any], name: str,
                     context: QgsProcessingContext) -> str | None:
    if parameters.get(name) in (None, ""):
        return None
    return raster_path(alg, parameters, name, context)


class TrainRegressionAlgorithm(CliAlgorithm):
    ALG_ID = "trainregression"
    DISPLAY_NAME = "Train regression model"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = (
        "Trains a U-Net on a continuous target raster (document 004's regression network; the target is "
        "warped onto the composite's grid), validates on separate blocks and exports an ONNX model with "
        "the target's scaling in its metadata; Run model then predicts float values. Reports MAE, RMSE "
        "and R² against predicting the training mean. Runs in the runner Python (torch)."
    )

    IMAGE = "IMAGE"
    TARGET = "TARGET"
    TARGET_BAND = "TARGET_BAND"
    TARGET_NODATA = "TARGET_NODATA"
    EPOCHS = "EPOCHS"
    STEPS = "STEPS_PER_EPOCH"
    BATCH_SIZE = "BATCH_SIZE"
    CHIP_SIZE = "CHIP_SIZE"
    DEPTH = "DEPTH"
    WIDTH = "WIDTH"
    LEARNING_RATE = "LEARNING_RATE"
    VAL_SPLIT = "VAL_SPLIT"
    SEED = "SEED"
    THREADS = "THREADS"
    DEVICE = "DEVICE"
    RESUME = "RESUME"
    OUTPUT = "OUTPUT"
    METRICS = "METRICS"
    RESULT = "RESULT"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        cli = command_parser("regress")
        self.addParameter(QgsProcessingParameterRasterLayer(self.IMAGE, "Composite (bands named)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET, "Target raster (any grid)"))
        self.addParameter(QgsProcessingParameterNumber(self.TARGET_BAND, "Target band",
                                                       defaultValue=cli.get_default("target_band"),
                                                       minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.TARGET_NODATA, "Target nodata (when the file does not declare it)",
            QgsProcessingParameterNumber.Double, optional=True))
        for name, description, dest in ((self.EPOCHS, "Epochs", "epochs"),
                                         (self.STEPS, "Steps per epoch", "steps_per_epoch"),
                                         (self.BATCH_SIZE, "Batch size", "batch_size"),
                                         (self.CHIP_SIZE, "Training window (px)", "chip_size"),
                                         (self.DEPTH, "U-Net levels", "depth"),
                                         (self.WIDTH, "First-level channels", "width")):
            self.addParameter(QgsProcessingParameterNumber(name, description,
                                                           defaultValue=cli.get_default(dest), minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.LEARNING_RATE, "Learning rate",
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=cli.get_default("lr"), minValue=0.0))
        self.addParameter(enum_parameter(self.VAL_SPLIT, "Validation split", choices(cli, "val_split"),
                                         cli.get_default("val_split")))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       defaultValue=cli.get_default("seed")))
        self.addParameter(QgsProcessingParameterNumber(self.THREADS, "CPU threads (0: all)", defaultValue=0,
                                                       minValue=0))
        self.addParameter(enum_parameter(self.DEVICE, "Device", choices(cli, "device"),
                                         cli.get_default("device")))
        self.addParameter(QgsProcessingParameterFile(self.RESUME, "Resume from checkpoint (.ckpt)",
                                                     extension="ckpt", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Model", "ONNX models (*.onnx)"))
        self.addOutput(QgsProcessingOutputFile(self.METRICS, "Metrics (JSON)"))
        self.addOutput(QgsProcessingOutputString(self.RESULT, "Result (JSON)"))

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        args = ["--image", raster_path(self, parameters, self.IMAGE, context),
                "--target", raster_path(self, parameters, self.TARGET, context), "--out", out,
                "--target-band", str(self.parameterAsInt(parameters, self.TARGET_BAND, context)),
                "--epochs", str(self.parameterAsInt(parameters, self.EPOCHS, context)),
                "--steps-per-epoch", str(self.parameterAsInt(parameters, self.STEPS, context)),
                "--batch-size", str(self.parameterAsInt(parameters, self.BATCH_SIZE, context)),
                "--chip-size", str(self.parameterAsInt(parameters, self.CHIP_SIZE, context)),
                "--depth", str(self.parameterAsInt(parameters, self.DEPTH, context)),
                "--width", str(self.parameterAsInt(parameters, self.WIDTH, context)),
                "--lr", repr(self.parameterAsDouble(parameters, self.LEARNING_RATE, context)),
                "--val-split", enum_value(self, parameters, self.VAL_SPLIT, context),
                "--seed", str(self.parameterAsInt(parameters, self.SEED, context)),
                "--device", enum_value(self, parameters, self.DEVICE, context)]
        nodata = optional_number(self, parameters, self.TARGET_NODATA, context)
        if nodata is not None:
            args += ["--target-nodata", repr(nodata)]
        threads = self.parameterAsInt(parameters, self.THREADS, context)
        if threads > 0:
            args += ["--threads", str(threads)]
        resume = self.parameterAsFile(parameters, self.RESUME, context)
        if resume:
            args += ["--resume", resume]
        result = self.run_command("regress", args, core, feedback)
        return {self.OUTPUT: result.get("model", out), self.METRICS: result.get("metrics_json"),
                self.RESULT: json.dumps(result, default=str)}


ALGORITHMS = [TrainModelAlgorithm, TrainRegressionAlgorithm]
