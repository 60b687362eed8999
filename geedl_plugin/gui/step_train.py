"""Step 4, Train: the CLI runner trains in a subprocess while the loss is plotted live.

Training imports torch, which never loads inside QGIS: the task starts ``<runner python> -m
geedl_plugin train ... --progress jsonl`` (the interpreter is a setting) and each JSON line it
prints updates the progress bar and the plot. Cancel ends the subprocess; the checkpoint of
the last finished epoch stays beside the model, and "Continue from checkpoint" resumes it (also
after QGIS was closed, or with more epochs to train longer). "Fast retrain" fine-tunes only the
head of the current model on the corrected labels (seconds, not minutes: the human-in-the-loop
step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import Qgis
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from ..cli import choices, command_parser
from ..core.class_decision import describe_thresholds
from .context import COMPOSITE, LABELS, MODEL, DockContext, Step
from .plot import LinePlot
from .tasks import RunnerTask
from .widgets import MetricsTable, ProgressRow

MODEL_FILE = "model.onnx"  # what "Train" writes in the run folder (its checkpoint: model.ckpt)
# U-Net / SegNet first-level channels: 16 trains fast on a laptop CPU; 32 scored higher in both
# repeats of the accuracy study (held-out water IoU of the last epoch 0.793 / 0.742 against
# 0.763 / 0.664, README) at ~2.5 x the time; 64 (with the U-Net's Lovász loss) scored 0.769-0.791
# over four repeats at 40 epochs and 0.792 at 80, at ~2 x the time of 32 (a GPU runner makes it
# minutes)
SIZES = (
    (16, "Standard (width 16, fast on a laptop)"),
    (32, "Wide (width 32: learns more, ~2.5 x slower)"),
    (64, "Large (width 64: most accurate, ~5 x slower; use a GPU)"),
)
SIZED_MODELS = ("unet", "segnet")
# what the advanced options' values mean (a value the train command gains later shows as itself)
CHOICE_TEXT = {
    "loss": {"auto": "auto (U-Net: with Lovász)", "ce": "cross-entropy",
             "ce+lovasz": "cross-entropy + Lovász (IoU)"},
    "keep": {"best": "best validation epoch (stops early)", "last": "last epoch (unbiased scores)"},
    "balance": {"auto": "auto (weights a class under 2 %)", "sampling": "balanced chip sampling",
                "weights": "weighted loss", "both": "sampling and weights", "none": "none"},
    "device": {"auto": "auto (GPU if the runner has one)", "cpu": "CPU", "cuda": "GPU (CUDA)"},
    "augment": {"all": "flips and quarter turns", "mirror": "left-right mirrors (north up)", "none": "none"},
}
# the train command's options in the Advanced group, with their row titles
ADVANCED = {"loss": "Loss", "keep": "Weights kept", "balance": "Class balance", "augment": "Augment",
            "device": "Device"}
MODELS = (("unet", "U-Net (segmentation)"), ("pixelcnn", "Pixel CNN, 7 x 7 (document 001)"),
          ("segnet", "SegNet (document 004)"), ("temporal", "Temporal 1D CNN (time stacks)"))


def kept_epoch_text(result: dict[str, Any]) -> str:
    """Which epoch became the model, when it is not simply the last one: its validation scores
    are then optimistic (the validation blocks chose it), which an analyst comparing runs should
    know."""
    best, run = result.get("best_epoch"), result.get("epochs_run")
    if not best or not run or best == run:
        return ""
    stopped = ", stopped early" if result.get("stopped_early") else ""
    return (f"; kept epoch {best}, the best on the validation blocks{stopped}: the scores below are "
            "optimistic, keep the last epoch (Advanced) for unbiased ones")


class TrainStep(Step):
    title = "4. Train"

    def __init__(self, ctx: DockContext, parent=None) -> None:
        super().__init__(ctx, parent)
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model = QComboBox()
        for key, label in MODELS:
            self.model.addItem(label, key)
        form.addRow("Model", self.model)
        self.size = QComboBox()
        for width, label in SIZES:
            self.size.addItem(label, width)
        self.size.setToolTip("Channels of the U-Net / SegNet: wider learns more and trains slower")
        self.model.currentIndexChanged.connect(
            lambda _i: self.size.setEnabled(self.model.currentData() in SIZED_MODELS))
        form.addRow("Size", self.size)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        form.addRow("Epochs", self.epochs)
        self.labels_info = QLabel("")
        self.labels_info.setWordWrap(True)
        form.addRow("Labels", self.labels_info)
        self.classes = QLineEdit()
        self.classes.setToolTip("The classes to learn, in order (comma separated); remove one to leave it "
                                "out, or name an 'other' class below to gather the rest")
        form.addRow("Classes", self.classes)
        self.other_class = QLineEdit()
        self.other_class.setPlaceholderText("optional: a class for every other labelled value, e.g. other")
        form.addRow("Other class", self.other_class)
        self.offered_classes = ""
        self.restored_classes: str | None = None  # the class list saved in the project
        val_row = QHBoxLayout()
        self.validation = QComboBox()
        self.validation.addItem("held-out spatial blocks", "blocks")
        self.validation.addItem("none", "none")
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.05, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.25)
        val_row.addWidget(self.validation, 1)
        val_row.addWidget(self.val_fraction)
        form.addRow("Validation", val_row)
        self.layout_.addWidget(box)
        self.layout_.addWidget(self._advanced_box())

        self.train_row = ProgressRow("Train")
        self.train_row.button.clicked.connect(lambda: self.train(fast=False))
        self.layout_.addLayout(self.train_row)
        self.resume_button = QPushButton("Continue from checkpoint")
        self.resume_button.setToolTip("Continue this run's last training from the checkpoint of its last "
                                      "finished epoch (after a cancel; raise Epochs first to train longer)")
        self.resume_button.clicked.connect(lambda: self.train(fast=False, resume=True))
        self.layout_.addWidget(self.resume_button)
        self.retrain_button = QPushButton("Fast retrain on corrected labels")
        self.retrain_button.setToolTip("Fine-tune only the head of the current model on the edited labels")
        self.retrain_button.clicked.connect(lambda: self.train(fast=True))
        self.layout_.addWidget(self.retrain_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.layout_.addWidget(self.status)
        self.plot = LinePlot()
        self.layout_.addWidget(self.plot)
        self.metrics = MetricsTable()
        self.metrics.setVisible(False)
        self.layout_.addWidget(self.metrics)
        self.classes.textChanged.connect(lambda _t: self._offer_tune_classes())
        self.other_class.textChanged.connect(lambda _t: self._offer_tune_classes())
        self.form.update({"model": self.model, "size": self.size, "epochs": self.epochs,
                          "validation": self.validation, "classes": self.classes,
                          "other_class": self.other_class, "val_fraction": self.val_fraction,
                          "patience": self.patience, "tune_threshold": self.tune,
                          **{name: combo for name, combo in self.advanced.items()}})

    def _advanced_box(self) -> QgsCollapsibleGroupBox:
        """The train command's loss, kept weights, balancing, device and tuned class threshold
        (collapsed: the defaults suit a first model), offered with exactly the choices and defaults
        the command has."""
        box = QgsCollapsibleGroupBox("Advanced")
        box.setCollapsed(True)
        form = QFormLayout(box)
        parser = command_parser("train")
        self.advanced: dict[str, QComboBox] = {}
        for name, title in ADVANCED.items():
            combo = QComboBox()
            for value in choices(parser, name):
                combo.addItem(CHOICE_TEXT[name].get(value, value), value)
            combo.setCurrentIndex(combo.findData(parser.get_default(name)))
            self.advanced[name] = combo
            form.addRow(title, combo)
            if name == "keep":
                self.patience = QSpinBox()
                self.patience.setRange(1, 1000)
                self.patience.setValue(parser.get_default("patience"))
                self.patience.setSuffix(" epochs")
                self.patience.setToolTip("Stop when the validation score has not improved for this long")
                combo.currentIndexChanged.connect(
                    lambda _i: self.patience.setEnabled(self.advanced["keep"].currentData() == "best"))
                form.addRow("Early stopping", self.patience)
        self.tune = QComboBox()
        self.tune.setToolTip(
            "After training, choose on the training pixels the probability at which this class is "
            "called, and store it in the model. For a class whose labels are drawn generously "
            "(water from OpenStreetMap): the model is unsure at the rim and the highest probability "
            "calls too little of it")
        self.tune_wanted = ""  # the analyst's (or the project's) choice, kept while the classes change
        self.tune.activated.connect(lambda _i: setattr(self, "tune_wanted", self.tune.currentData()))
        form.addRow("Tune threshold", self.tune)
        self._offer_tune_classes()
        self.advanced["keep"].setToolTip(
            "The best epoch is the model to hand over, but its validation score is optimistic (the "
            "blocks chose it); keep the last epoch for an unbiased score")
        self.advanced["augment"].setToolTip(
            "Flips and turns of the training chips teach the model that direction does not matter, "
            "and show it each object eight ways. Keep north up only when direction matters (shadows "
            "that always fall one way): the model then sees fewer views of each object")
        return box

    def _class_choices(self) -> list[str]:
        names = [c.strip() for c in self.classes.text().split(",") if c.strip()]
        other = self.other_class.text().strip()
        return names + ([other] if other and other not in names else [])

    def _offer_tune_classes(self) -> None:
        """The classes being trained, as choices for the tuned threshold."""
        self.tune.blockSignals(True)
        self.tune.clear()
        self.tune.addItem("none (highest probability)", "")
        for name in self._class_choices():
            self.tune.addItem(name, name)
        index = self.tune.findData(self.tune_wanted)
        self.tune.setCurrentIndex(max(index, 0))
        self.tune.blockSignals(False)

    def missing(self) -> str:
        need = []
        if not self.ctx.has(COMPOSITE):
            need.append("a composite (step 2)")
        if not self.ctx.has(LABELS):
            need.append("labels (step 3)")
        return " and ".join(need)

    def refresh(self) -> None:
        super().refresh()
        labels = self.ctx.artifact(LABELS) or {}
        self.labels_info.setText(f"{Path(labels['path']).name}, class field {labels.get('field', '')}"
                                 if labels.get("path") else "none yet")
        offered = ",".join(str(c) for c in labels.get("classes", []))
        if offered != self.offered_classes:  # new labels: offer all their classes
            self.offered_classes = offered
            self.classes.setText(self.restored_classes if self.restored_classes is not None else offered)
            self.restored_classes = None
        ready = self.train_row.task is None and not self.missing() and not self.unavailable
        self.train_row.button.setEnabled(ready)
        self.resume_button.setEnabled(ready and self.checkpoint() is not None)
        self.retrain_button.setEnabled(ready and self.ctx.has(MODEL))

    def checkpoint(self) -> Path | None:
        """The checkpoint "Train" writes in this run's folder, when there is one to continue."""
        if self.ctx.run is None:
            return None
        path = (Path(self.ctx.run.folder) / MODEL_FILE).with_suffix(".ckpt")
        return path if path.is_file() else None

    # -- run -----------------------------------------------------------------------------------

    def arguments(self, out: Path, fast: bool, resume: bool = False) -> list[str]:
        composite = self.ctx.artifact(COMPOSITE)
        labels = self.ctx.artifact(LABELS)
        args = ["--model", self.model.currentData(), "--image", composite["path"],
                "--labels", labels["path"], "--epochs", str(self.epochs.value()),
                "--val-split", self.validation.currentData(),
                "--val-fraction", f"{self.val_fraction.value():g}", "--out", str(out)]
        if labels.get("field"):
            args += ["--class-field", labels["field"]]
        chosen = ",".join(c.strip() for c in self.classes.text().split(",") if c.strip())
        if chosen and chosen != self.offered_classes:  # the analyst narrowed or reordered them
            args += ["--classes", chosen]
        if self.other_class.text().strip():
            args += ["--other-class", self.other_class.text().strip()]
        for name, combo in self.advanced.items():
            args += [f"--{name}", combo.currentData()]
        args += ["--patience", str(self.patience.value())]
        if self.tune.currentData():
            args += ["--tune-threshold", self.tune.currentData()]
        if fast:
            args += ["--finetune-from", self.ctx.artifact(MODEL)["path"], "--head-only"]
        elif resume:
            args += ["--resume", str(out.with_suffix(".ckpt"))]
        elif self.model.currentData() in SIZED_MODELS:  # a retrain or resume keeps its model's size
            args += ["--width", str(self.size.currentData())]
        return args

    def train(self, fast: bool = False, resume: bool = False) -> None:
        if self.missing():
            self.ctx.error("train", f"Training needs {self.missing()}.")
            return
        name = "model-retrained.onnx" if fast else MODEL_FILE
        out = self.ctx.path(name)
        if fast and Path(self.ctx.artifact(MODEL)["path"]) == out:
            out = self.ctx.path("model-retrained-2.onnx")
        title = "geedl: fast retrain" if fast else "geedl: continue training" if resume else "geedl: train"
        task = RunnerTask(title, "train", self.arguments(out, fast, resume),
                          python=self.ctx.settings().runner_python)
        self.plot.clear()
        self.metrics.setVisible(False)
        self.status.setText("Starting the runner (loading torch) ...")
        task.line.connect(self.on_line)
        self.ctx.start_task(task, lambda result: self._trained(result, out), "train", on_end=self._ended)
        self.train_row.attach(task)
        self.retrain_button.setEnabled(False)
        self.resume_button.setEnabled(False)

    def on_line(self, line: Any) -> None:
        """One JSON line of the runner: plot per-step loss and per-epoch validation scores."""
        data = line.data
        if line.message and line.type in ("progress", "message"):
            self.status.setText(line.message)
        if data.get("phase") == "train" and data.get("loss") is not None and data.get("batches"):
            epoch = float(data.get("epoch", 1)) - 1 + float(data.get("batch", 0)) / float(data["batches"])
            self.plot.add_point("train loss", epoch, data["loss"], unit_interval=False)
        elif data.get("phase") == "epoch_end":
            epoch = float(data.get("epoch", 0))
            if data.get("replayed") and data.get("loss") is not None:  # an epoch before a resume
                self.plot.add_point("train loss", epoch, data["loss"], unit_interval=False)
            if data.get("val_loss") is not None:
                self.plot.add_point("val loss", epoch, data["val_loss"], unit_interval=False)
            val = data.get("val") or {}
            if val.get("mean_iou") is not None:
                self.plot.add_point("val mIoU", epoch, val["mean_iou"], unit_interval=True)
            if val.get("overall_accuracy") is not None:
                self.plot.add_point("val accuracy", epoch, val["overall_accuracy"], unit_interval=True)

    def _trained(self, result: dict[str, Any], out: Path) -> None:
        model_path = str(result.get("model") or out)
        self.ctx.set_artifact(MODEL, {"path": model_path, "metrics_json": result.get("metrics_json")})
        metrics = result.get("metrics") or {}
        metrics_file = Path(str(result.get("metrics_json") or ""))
        rule = ""
        if metrics_file.is_file():  # the full per-class scores (a few kB)
            report = json.loads(metrics_file.read_text(encoding="utf-8"))
            metrics = report.get("validation") or metrics
            rule = describe_thresholds(report.get("class_thresholds"))
        if metrics:
            self.metrics.show_metrics(metrics)
            self.metrics.setVisible(True)
        self.status.setText(f"Model written: {model_path} ({result.get('epochs_run', '?')} epochs, "
                            f"{result.get('train_seconds', 0):.0f} s{kept_epoch_text(result)}). "
                            + (f"The model {rule}. " if rule else "")
                            + self.metrics.summary)
        self.ctx.info("train", f"Model ready: {Path(model_path).name}. Run it in step 5.", Qgis.Success)

    def _ended(self) -> None:
        self.train_row.done()
        self.refresh()

    def restore_form(self, values: dict[str, Any]) -> None:
        if isinstance(values.get("augment"), bool):  # a project saved when augmentation was on/off
            values = {**values, "augment": "all" if values["augment"] else "none"}
        super().restore_form(values)
        self.restored_classes = values.get("classes")
        self.tune_wanted = str(values.get("tune_threshold") or "")
        self._offer_tune_classes()
        self.offered_classes = ""

    def dependencies_missing(self, names: set[str]) -> None:
        if "torch" in names:
            self.unavailable = ("torch is missing in the training Python: training is disabled. Set "
                                "another interpreter in Settings or install torch (command at the top).")
            self.status.setText(self.unavailable)
            self.refresh()
