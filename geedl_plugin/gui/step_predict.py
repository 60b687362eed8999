"""Step 5, Predict: a model over a raster layer, in-process onnxruntime inside a QgsTask.

The model's own metadata fills the form (classes and colours, bands, tile size), so the
analyst sees before running what the model expects. The area is the whole layer, the visible
map extent or the region of step 1. The class map arrives styled with the model's palette;
"Evaluate" compares it with the label layer and adds an error map.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from qgis.core import QgsMapLayerProxyModel, QgsRasterLayer
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
)

from ..core.class_decision import describe_thresholds
from ..core.model_metadata import ModelMetadata, read_metadata
from ..core.raster_io import srs_from_wkt
from ..core.region import Region, region_from_bounds, region_from_file
from . import layers
from .context import COMPOSITE, LABELS, MODEL, PREDICTION, REGION, DockContext, Step
from .styles import apply_qml, style_classes, style_error_map, style_single_band
from .widgets import MetricsTable, ProgressRow, grid_of

WHOLE, VISIBLE, DRAWN = "whole", "visible", "region"
ERRORS = "errors"
# the codes of core.inference.evaluate's error map
ERROR_CODES = {0: "correct", 1: "wrong"}
ERROR_CODES_OF_INTEREST = {0: "correct", 1: "false positive", 2: "false negative", 3: "other error"}


def build_region(area: dict[str, Any] | None) -> Region | None:
    if area is None:
        return None
    if "file" in area:
        return region_from_file(area["file"])
    return region_from_bounds(tuple(area["bounds"]), srs_from_wkt(area["crs_wkt"]))


def describe_metadata(meta: ModelMetadata) -> str:
    """The model's line in the Predict step (rich text; names from the file are escaped)."""
    swatches = " ".join(
        f"<span style='color:{html.escape(c.color)}'>&#9632;</span> {c.id} {html.escape(c.name)}"
        for c in meta.classes
    )
    return (f"<b>{html.escape(meta.architecture)}</b> ({meta.model_type}), "
            f"bands {html.escape(', '.join(meta.bands))}"
            + (f" x {meta.time_steps} steps" if meta.time_steps > 1 else "")
            + f", {meta.resolution:g} m, tile {meta.tile_size} (overlap {meta.tile_overlap})<br>{swatches}"
            + (f"<br>{html.escape(rule)}" if (rule := describe_thresholds(meta.class_thresholds)) else ""))


class PredictStep(Step):
    title = "5. Predict"

    def __init__(self, ctx: DockContext, parent=None) -> None:
        super().__init__(ctx, parent)
        self.metadata: ModelMetadata | None = None
        self.offered_model = ""
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model_file = QgsFileWidget()
        self.model_file.setFilter("ONNX models (*.onnx)")
        self.model_file.setDialogTitle("Model file with geedl metadata")
        self.model_file.fileChanged.connect(self.load_model)
        form.addRow("File", self.model_file)
        self.model_info = QLabel("No model yet: train one in step 4, or choose an .onnx file.")
        self.model_info.setWordWrap(True)
        form.addRow(self.model_info)
        self.layout_.addWidget(box)

        box = QGroupBox("Where")
        form = QFormLayout(box)
        self.target = QgsMapLayerComboBox()
        self.target.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow("Raster", self.target)
        self.area_buttons: dict[str, QRadioButton] = {}
        group = QButtonGroup(self)
        for key, label in ((WHOLE, "Whole layer"), (VISIBLE, "Visible extent"), (DRAWN, "Region (step 1)")):
            button = QRadioButton(label)
            group.addButton(button)
            self.area_buttons[key] = button
        self.area_buttons[WHOLE].setChecked(True)
        form.addRow("Area", grid_of(list(self.area_buttons.values()), 2))
        settings = ctx.settings()
        self.tile = QSpinBox()
        self.tile.setRange(16, 8192)
        self.tile.setValue(settings.tile_size)
        self.overlap = QSpinBox()
        self.overlap.setRange(0, 2048)
        self.overlap.setValue(settings.overlap)
        tiles = QHBoxLayout()
        tiles.addWidget(QLabel("tile"))
        tiles.addWidget(self.tile)
        tiles.addWidget(QLabel("overlap"))
        tiles.addWidget(self.overlap)
        form.addRow("Tiles (px)", tiles)
        self.probabilities = QCheckBox("Also write class probabilities")
        form.addRow(self.probabilities)
        self.layout_.addWidget(box)

        self.run_row = ProgressRow("Run model")
        self.run_row.button.clicked.connect(self.run_model)
        self.layout_.addLayout(self.run_row)
        self.evaluate_button = QPushButton("Evaluate against labels")
        self.evaluate_button.setToolTip("Per-class IoU, precision, recall, F1 and an error map, against the "
                                        "labels of step 3")
        self.evaluate_button.clicked.connect(self.evaluate)
        self.class_of_interest = QComboBox()
        self.class_of_interest.setToolTip("Error map: false positives and negatives of this class")
        self.class_of_interest.addItem("all classes", None)
        self.vectorize_button = QPushButton("Prediction to labels")
        self.vectorize_button.setToolTip("Polygons of the predicted classes in the label schema (source = "
                                         "model), to correct and retrain from")
        self.vectorize_button.clicked.connect(self.vectorize)
        buttons = [self.evaluate_button, self.class_of_interest, self.vectorize_button]
        self.layout_.addLayout(grid_of(buttons, 2))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.layout_.addWidget(self.status)
        self.metrics = MetricsTable()
        self.metrics.setVisible(False)
        self.layout_.addWidget(self.metrics)
        self.form.update({"model": self.model_file, "probabilities": self.probabilities,
                          **{f"area_{key}": button for key, button in self.area_buttons.items()}})

    # -- model ---------------------------------------------------------------------------------

    def set_model(self, path: str) -> None:
        """Use a model (e.g. the one training just wrote)."""
        if self.model_file.filePath() != path:
            self.model_file.setFilePath(path)  # emits fileChanged -> load_model
        else:
            self.load_model(path)

    def load_model(self, path: str) -> None:
        """Read the metadata in a task (onnxruntime loads the whole model to read it)."""
        self.metadata = None
        if not path:
            self.refresh()
            return
        self.model_info.setText(f"Reading {Path(path).name} ...")
        self.ctx.start("read model metadata", lambda _fb: read_metadata(path),
                       lambda meta: self._model_loaded(path, meta), "model",
                       on_end=self.refresh)

    def _model_loaded(self, path: str, meta: ModelMetadata) -> None:
        if self.model_file.filePath() != path:
            return  # the user picked another file meanwhile
        self.metadata = meta
        self.model_info.setText(describe_metadata(meta))
        self.class_of_interest.clear()
        self.class_of_interest.addItem("all classes", None)
        for cls in meta.classes:
            self.class_of_interest.addItem(cls.name, cls.name)
        self.tile.setValue(meta.tile_size)
        self.overlap.setValue(meta.tile_overlap)

    # -- run -----------------------------------------------------------------------------------

    def missing(self) -> str:
        has_raster = any(isinstance(layer, QgsRasterLayer) for layer in self.ctx.project.mapLayers().values())
        return "" if has_raster else "a raster layer to run the model on (step 2 makes one)"

    def refresh(self) -> None:
        super().refresh()
        composite = self.ctx.layer(COMPOSITE)
        if composite is not None and self.target.currentLayer() is None:
            self.target.setLayer(composite)
        model = (self.ctx.artifact(MODEL) or {}).get("path")
        if model and model != self.offered_model:  # a model training just wrote
            self.offered_model = model
            self.set_model(model)
        self.area_buttons[DRAWN].setEnabled(self.ctx.has(REGION))
        ready = self.metadata is not None and self.target.currentLayer() is not None and not self.unavailable
        self.run_row.button.setEnabled(ready and self.run_row.task is None)
        self.evaluate_button.setEnabled(self.ctx.has(PREDICTION) and self.ctx.has(LABELS))
        self.vectorize_button.setEnabled(self.ctx.has(PREDICTION))

    def area(self) -> dict[str, Any] | None:
        """The chosen area as plain values; the Region (GDAL/OGR objects, which must not cross
        threads) is built inside the task by :func:`build_region`."""
        if self.area_buttons[VISIBLE].isChecked():
            canvas = self.ctx.iface.mapCanvas()
            extent = canvas.extent()
            return {"bounds": (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()),
                    "crs_wkt": canvas.mapSettings().destinationCrs().toWkt()}
        if self.area_buttons[DRAWN].isChecked():
            return {"file": self.ctx.artifact(REGION)["path"]}
        return None

    def run_model(self) -> None:
        from ..core.inference import PredictParams, run_predict

        layer = self.target.currentLayer()
        if self.metadata is None or not isinstance(layer, QgsRasterLayer):
            self.ctx.error("predict", "Choose a model file and a raster layer first.")
            return
        if layer.providerType() != "gdal":
            self.ctx.error("predict", f"{layer.name()} is not a file raster; predict runs on GeoTIFFs "
                           "and other GDAL rasters (download Earth Engine composites first).")
            return
        area = self.area()
        out = self.ctx.path("prediction.tif")
        probabilities = self.ctx.path("probabilities.tif") if self.probabilities.isChecked() else None
        settings = self.ctx.settings()
        params = PredictParams(model=self.model_file.filePath(), image=layer.source(), out=out,
                               probabilities=probabilities, tile=self.tile.value(),
                               overlap=self.overlap.value(), batch=settings.batch)
        meta = self.metadata

        def work(feedback):
            params.region = build_region(area)
            return run_predict(params, feedback)

        self.status.setText(f"Running {meta.architecture} on {layer.name()} ...")
        task = self.ctx.start("predict", work,
                              lambda result: self._predicted(result, meta), "predict",
                              on_end=self._run_ended)
        task.message.connect(self.status.setText)
        self.run_row.attach(task)

    def _run_ended(self) -> None:
        self.run_row.done()
        self.refresh()

    def _predicted(self, result: Any, meta: ModelMetadata) -> None:
        layer = layers.raster_layer(result.out, "prediction")
        if meta.classes:
            style_classes(layer, meta.classes)
        else:
            style_single_band(layer)
        self.ctx.add_layer(layer, PREDICTION)
        if result.probabilities:
            probabilities = layers.raster_layer(result.probabilities, "class probabilities")
            style_single_band(probabilities)
            self.ctx.add_layer(probabilities, "probabilities")
            node = self.ctx.project.layerTreeRoot().findLayer(probabilities.id())
            if node is not None:
                node.setItemVisibilityChecked(False)
        self.ctx.set_artifact(PREDICTION, {"path": str(result.out), "model": str(self.model_file.filePath()),
                                           "probabilities": str(result.probabilities or "") or None})
        self.status.setText(f"Predicted {result.width} x {result.height} px in {result.tiles} tiles, "
                            f"{result.seconds:.1f} s ({result.megapixels_per_second:.2f} Mpx/s on "
                            f"{result.provider}).")

    # -- evaluate ------------------------------------------------------------------------------

    def evaluate(self) -> None:
        """Prediction vs the labels (core.inference.evaluate) in a task; metrics and an error map."""
        from ..core.inference.evaluate import EvaluateParams, evaluate

        prediction, labels = self.ctx.artifact(PREDICTION), self.ctx.artifact(LABELS) or {}
        interest = self.class_of_interest.currentData()
        job = EvaluateParams(prediction=prediction["path"], truth=labels["path"],
                             class_field=labels.get("field") or "class_id", layer=labels.get("layer"),
                             out_errors=self.ctx.path("errors.tif"),
                             json_path=self.ctx.path("evaluation.json"), class_of_interest=interest)
        self.status.setText("Evaluating ...")
        self.ctx.start("evaluate", lambda fb: evaluate(job, fb),
                       lambda result: self._evaluated(result, interest), "evaluate", on_end=self.refresh)

    def _evaluated(self, result: Any, interest: Any) -> None:
        self.metrics.show_metrics(result.metrics)
        self.metrics.setVisible(True)
        if result.errors:
            name = "errors" if interest is None else f"errors {interest}"
            layer = layers.raster_layer(result.errors, name)
            style_error_map(layer, ERROR_CODES_OF_INTEREST if interest is not None else ERROR_CODES)
            self.ctx.add_layer(layer, ERRORS)
        unmatched = (f" Truth classes without a model class: {', '.join(result.unmatched_truth)}."
                     if result.unmatched_truth else "")
        self.status.setText(f"Evaluated on {result.metrics.get('pixels', 0):,} labelled pixels: "
                            f"{self.metrics.summary}.{unmatched}")

    def vectorize(self) -> None:
        """The class map as label polygons (source = model), which become the labels to correct."""
        from ..core.inference.vectorize import VectorizeParams, vectorize_prediction

        prediction = self.ctx.artifact(PREDICTION)
        probabilities = prediction.get("probabilities")
        job = VectorizeParams(prediction=prediction["path"], out_vector=self.ctx.path("model_labels.gpkg"),
                              probabilities=probabilities)
        self.status.setText("Turning the prediction into label polygons ...")
        self.ctx.start("prediction to labels", lambda fb: vectorize_prediction(job, fb), self._vectorized,
                       "prediction to labels", on_end=self.refresh)

    def _vectorized(self, result: Any) -> None:
        from ..core.labels.schema import qml_path, read_layer_legend

        layer = layers.vector_layer(result.path, "labels (model)")
        if qml_path(result.path).is_file():
            apply_qml(layer, qml_path(result.path))
        self.ctx.add_layer(layer, LABELS)
        legend = read_layer_legend(result.path)
        self.ctx.set_artifact(LABELS, {"path": str(result.path), "field": "class_id", "schema": True,
                                       "classes": [c.name for c in legend.classes] if legend else []})
        mean = result.mean_confidence
        confidence = "" if mean is None else f", mean confidence {mean:.2f}"
        self.status.setText(f"{result.features} polygons from the model{confidence}: correct them in step 3 "
                            "(Edit labels), then fast retrain in step 4.")

    def dependencies_missing(self, names: set[str]) -> None:
        if "onnxruntime" in names:
            self.unavailable = ("onnxruntime is missing in QGIS's Python: predictions are disabled "
                                "(see the install command at the top of the dock).")
            self.model_info.setText(self.unavailable)
            self.model_file.setEnabled(False)
            self.refresh()

    def restore_form(self, values: dict[str, Any]) -> None:
        super().restore_form(values)
        self.offered_model = values.get("model", "")
