"""Step 3, Labels: a rule makes a mask, the mask becomes polygons, the analyst corrects them.

Rules are starting points, not truth (the crop rule of document 000 marks green vegetation,
forest included): thresholds and the expression are editable, the mask is previewed as a layer
before polygons are made, and the label layer opens for editing with a class dropdown (the
value map in the label style). Existing polygons (e.g. OpenStreetMap land use) can be used as
labels instead, with any field as the class, and so can a reference map (CORINE, CDL, ... or a
local class raster / polygon layer) through a remap table (:mod:`.reference_box`): its label
raster becomes the mask that "Make polygons" turns into label polygons.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from osgeo import gdal
from qgis.core import Qgis, QgsFieldProxyModel, QgsMapLayerProxyModel, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.atomic import atomic_path
from ..core.errors import GeedlError
from ..core.labels.chips import ChipsParams, run_chips
from ..core.labels.polygons import PolygonizeParams, run_polygonize
from ..core.labels.rules import WATER_METHODS, AutolabelParams, rule_from_spec, run_autolabel
from ..core.labels.schema import CLASS_FIELD, export_labels, likely_class_field, read_layer_legend
from . import layers
from .context import CHIPS, COMPOSITE, LABELS, MASK, DockContext, Step
from .expression_builder import ExpressionBuilder
from .forms import set_widget_value, widget_value
from .reference_box import ReferenceBox
from .styles import apply_qml, set_class_dropdown, style_paletted
from .widgets import ProgressRow, grid_of

# (rule spec, label) as core.labels.rules.rule_from_spec understands them
RULE_CHOICES = (("crop", "crop: HUE < t_hue and NDVI > t_ndvi (document 000)"),
                ("soil", "soil: HUE > t_hue (document 000)"),
                ("crop+soil", "crop and soil in one mask"),
                ("water", "water: MNDWI / NDWI / SCL / QA_PIXEL"),
                ("expression", "expression (build it below)"))


def rule_parameters(kind: str) -> list:
    """The threshold fields of a rule kind (none for rule sets and expressions)."""
    from dataclasses import fields

    from ..core.labels.rules import RULE_KINDS

    base = "crop" if kind == "crop+soil" else kind
    cls = RULE_KINDS.get(base)
    return [] if cls is None or base == "expression" else list(fields(cls))

gdal.UseExceptions()

EXPORT_DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}


def export_vector(source: str, out: str | Path) -> Path:
    """Copy a vector file to a shapefile or GeoPackage, atomically, keeping a backup of ``out``."""
    out = Path(out)
    driver = EXPORT_DRIVERS.get(out.suffix.lower())
    if driver is None:
        raise GeedlError(f"Export to {out.name}: use a .shp or .gpkg file name.")
    with atomic_path(out, keep_backup=True) as tmp:
        options = ["-lco", "ENCODING=UTF-8"] if driver == "ESRI Shapefile" else ["-nln", out.stem]
        gdal.VectorTranslate(str(tmp), source, format=driver, options=options)
    return out


def layer_file(layer: QgsVectorLayer) -> str:
    """The layer's file with its sub-layer, as GDAL/OGR opens it (``path|layername=x`` -> path)."""
    return layer.source().split("|")[0]


class LabelsStep(Step):
    title = "3. Labels"

    def __init__(self, ctx: DockContext, parent=None) -> None:
        super().__init__(ctx, parent)
        self.layout_.addWidget(self._rule_box())
        self.layout_.addWidget(self._existing_box())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.reference_box = ReferenceBox(ctx, self.status)
        self.layout_.addWidget(self.reference_box)
        self.layout_.addWidget(self._edit_box())
        self.layout_.addWidget(self.status)

    # -- form ----------------------------------------------------------------------------------

    def _rule_box(self) -> QGroupBox:
        box = QGroupBox("Labels from a rule")
        form = QFormLayout(box)
        self.rule = QComboBox()
        for key, label in RULE_CHOICES:
            self.rule.addItem(label, key)
        self.rule.currentIndexChanged.connect(self._rule_changed)
        form.addRow("Rule", self.rule)
        self.params_box = QWidget()
        self.params_form = QFormLayout(self.params_box)
        self.params_form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.params_box)
        self.rule_text = QLabel("")
        self.rule_text.setWordWrap(True)
        form.addRow(self.rule_text)
        self.builder = ExpressionBuilder()
        form.addRow(self.builder)
        self.min_area = QDoubleSpinBox()
        self.min_area.setRange(0, 1e9)
        self.min_area.setDecimals(0)
        self.min_area.setValue(3000)  # document 000 drops polygons under 3000 m2
        self.min_area.setSuffix(" m²")
        form.addRow("Min polygon area", self.min_area)
        self.mask_row = ProgressRow("Preview mask")
        self.mask_row.button.clicked.connect(self.preview_mask)
        form.addRow(self.mask_row)
        self.polygons_row = ProgressRow("Make polygons")
        self.polygons_row.button.clicked.connect(self.make_polygons)
        form.addRow(self.polygons_row)
        self.param_widgets: dict[str, QWidget] = {}
        self.saved_params: dict[str, dict[str, Any]] = {}  # thresholds per rule kind, kept across switches
        self.form.update({"rule": self.rule, "expression": self.builder.edit, "min_area": self.min_area})
        self._rule_changed()
        return box

    def _rule_changed(self) -> None:
        """One widget per threshold of the chosen rule (the rule dataclass's own fields)."""
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self.param_widgets = {}
        kind = self.rule.currentData()
        for item in rule_parameters(kind):
            if isinstance(item.default, bool):
                widget = QCheckBox()
                widget.setChecked(item.default)
            elif isinstance(item.default, float):
                widget = QDoubleSpinBox()
                widget.setRange(-1000, 100000)
                widget.setDecimals(3)
                widget.setSingleStep(0.05)
                widget.setValue(item.default)
            elif item.name == "method":
                widget = QComboBox()
                for method in WATER_METHODS:
                    widget.addItem(method, method)
            else:
                continue
            if item.name in self.saved_params.get(kind, {}):
                set_widget_value(widget, self.saved_params[kind][item.name])
            self.param_widgets[item.name] = widget
            self.params_form.addRow(item.name, widget)
            signal = getattr(widget, "valueChanged", None) or getattr(widget, "toggled", None) or \
                widget.currentIndexChanged
            signal.connect(self._params_changed)
        self.builder.setVisible(kind == "expression")
        self._show_rule()

    def _params_changed(self, *_args) -> None:
        self.saved_params[self.rule.currentData()] = self.rule_params()
        self._show_rule()

    def chips_dialog(self) -> None:
        start = self.ctx.ensure_run().folder
        folder = QFileDialog.getExistingDirectory(self, "Folder for the chips", start)
        if folder:
            self.export_chips(str(Path(folder) / "chips"))

    def export_chips(self, out_dir: str) -> None:
        """Composite + labels -> georeferenced chips and a manifest (core.labels.chips) in a task."""
        composite, labels = self.ctx.artifact(COMPOSITE), self.ctx.artifact(LABELS) or {}
        if not labels.get("path"):
            self.ctx.error("chips", "There are no labels yet: make polygons or choose a label layer.")
            return
        class_map = None
        if not labels.get("schema"):  # e.g. OSM's text classes -> ids 0.. in the listed order
            class_map = {str(name): i for i, name in enumerate(labels.get("classes", []))}
        size = self.chip_size.value()
        job = ChipsParams(image=composite["path"], labels=labels["path"], out_dir=out_dir, chip_size=size,
                          overlap=size // 8, class_field=labels.get("field") or CLASS_FIELD,
                          class_map=class_map, overwrite=True)

        def done(result: Any) -> None:
            self.ctx.set_artifact(CHIPS, {"path": str(result.manifest)})
            self.status.setText(f"{result.train} training and {result.val} validation chips in "
                                f"{result.out_dir}. " + " ".join(result.warnings))

        self.ctx.start("export chips", lambda fb: run_chips(job, fb), done, "chips")

    def form_state(self) -> dict[str, Any]:
        return {**super().form_state(), "params": self.saved_params, "reference": self.reference_box.state()}

    def restore_form(self, values: dict[str, Any]) -> None:
        params = values.get("params")
        self.saved_params = dict(params) if isinstance(params, dict) else {}
        super().restore_form({k: v for k, v in values.items() if k not in ("params", "reference")})
        self._rule_changed()
        self.reference_box.restore(values.get("reference") or {})

    def rule_params(self) -> dict[str, Any]:
        return {name: widget_value(widget) for name, widget in self.param_widgets.items()}

    def rule_spec(self) -> tuple[str, dict[str, Any]]:
        """(spec, thresholds) for core.labels.rules.rule_from_spec."""
        kind = self.rule.currentData()
        if kind == "expression":
            return self.builder.text(), {}
        return kind, self.rule_params()

    def _show_rule(self, *_args) -> None:
        try:
            spec, params = self.rule_spec()
            rules = rule_from_spec(spec, **params) if spec else None
            # escaped: "HUE < 0 && NDVI > 0" is not markup (QLabel showed "(HUE 0) ? 1 : (0)")
            shown = f"Rule: <code>{html.escape(rules.to_expression())}</code>" if rules else ""
            self.rule_text.setText(shown)
        except GeedlError as exc:
            self.rule_text.setText(f"<span style='color:#b00000'>{html.escape(str(exc))}</span>")

    def _existing_box(self) -> QGroupBox:
        box = QGroupBox("Or: existing polygons as labels")
        form = QFormLayout(box)
        self.existing_layer = QgsMapLayerComboBox()
        self.existing_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.existing_field = QgsFieldComboBox()
        self.existing_field.setFilters(QgsFieldProxyModel.String | QgsFieldProxyModel.Int |
                                       QgsFieldProxyModel.LongLong)
        self.existing_layer.layerChanged.connect(self._existing_layer_changed)
        self._existing_layer_changed(self.existing_layer.currentLayer())
        self.use_existing_button = QPushButton("Use as labels")
        self.use_existing_button.clicked.connect(self.use_existing)
        form.addRow("Layer", self.existing_layer)
        form.addRow("Class field", self.existing_field)
        form.addRow(self.use_existing_button)
        return box

    def _existing_layer_changed(self, layer) -> None:
        """Offer the layer's fields with the likely class field chosen (not the first, "fid")."""
        self.existing_field.setLayer(layer)
        if layer is not None:
            found = likely_class_field([field.name() for field in layer.fields()])
            if found is not None:
                self.existing_field.setField(found)

    def _edit_box(self) -> QGroupBox:
        box = QGroupBox("Correct and export")
        layout = QVBoxLayout(box)
        self.edit_button = QPushButton("Edit labels")
        self.edit_button.setCheckable(True)
        self.edit_button.setToolTip("Toggle editing of the label layer; switching it off saves the edits")
        self.edit_button.toggled.connect(self.toggle_editing)
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip("Save the labels as a shapefile or GeoPackage")
        self.export_button.clicked.connect(self.export_dialog)
        self.chips_button = QPushButton("Export chips...")
        self.chips_button.setToolTip("GeoTIFF image and label tiles with a manifest, for training elsewhere")
        self.chips_button.clicked.connect(self.chips_dialog)
        self.chip_size = QSpinBox()
        self.chip_size.setRange(16, 4096)
        self.chip_size.setValue(256)
        self.chip_size.setSuffix(" px")
        self.chip_size.setToolTip("Chip size")
        buttons = [self.edit_button, self.export_button, self.chips_button, self.chip_size]
        layout.addLayout(grid_of(buttons, 2))
        self.form["chip_size"] = self.chip_size
        return box

    # -- state ---------------------------------------------------------------------------------

    def missing(self) -> str:
        return "" if self.ctx.has(COMPOSITE) else "a composite (step 2)"

    def refresh(self) -> None:
        super().refresh()
        composite = self.ctx.artifact(COMPOSITE) or {}
        if composite.get("bands") and self.builder.bands != composite["bands"]:
            self.builder.set_bands(composite["bands"])
        self.reference_box.refresh_products()
        layer = self.label_layer()
        for button in (self.edit_button, self.export_button):
            button.setEnabled(layer is not None)
        self.chips_button.setEnabled(bool((self.ctx.artifact(LABELS) or {}).get("path")))
        if layer is not None and self.edit_button.isChecked() != layer.isEditable():
            self.edit_button.blockSignals(True)
            self.edit_button.setChecked(layer.isEditable())
            self.edit_button.blockSignals(False)

    def label_layer(self) -> QgsVectorLayer | None:
        """The run's label layer, or the existing layer chosen as labels."""
        layer = self.ctx.layer(LABELS)
        if layer is None:
            layer = self.ctx.project.mapLayer((self.ctx.artifact(LABELS) or {}).get("layer_id", ""))
        return layer if isinstance(layer, QgsVectorLayer) else None

    # -- rule -> mask -> polygons --------------------------------------------------------------

    def preview_mask(self) -> None:
        composite = self.ctx.artifact(COMPOSITE)
        spec, params = self.rule_spec()
        if self.rule.currentData() == "expression" and not self.builder.valid:
            self.ctx.error("labels", "The expression is not valid yet: " + self.builder.message.text())
            return
        name = self.rule.currentData() if self.rule.currentData() != "expression" else "expression"
        out = self.ctx.path(f"mask_{name.replace('+', '_')}.tif")
        job = AutolabelParams(composite=composite["path"], out_mask=out, rule=spec, rule_params=params)
        self.status.setText("Computing the mask ...")
        task = self.ctx.start("label mask", lambda fb: run_autolabel(job, fb),
                              lambda result: self._mask_ready(result, name), "labels",
                              on_end=self.mask_row.done)
        self.mask_row.attach(task)

    def _mask_ready(self, result: Any, name: str) -> None:
        layer = layers.raster_layer(result.path, f"mask {name}")
        legend = result.legend
        style_paletted(layer, [(c.id, c.name, c.color) for c in legend.classes if c.id != legend.background],
                       opacity=0.7)
        self.ctx.add_layer(layer, MASK)
        self.ctx.set_artifact(MASK, {"path": str(result.path), "rule": result.rules.label(),
                                     "legend": legend.to_dict()})
        counts = ", ".join(f"{legend.name_of(k)} {100.0 * v / max(1, result.total):.1f} %"
                           for k, v in result.class_counts.items())
        self.status.setText(f"Mask {result.rules.label()}: {counts}. " + " ".join(result.warnings))

    def make_polygons(self) -> None:
        """Mask -> label polygons (document 000's reduceToVectors and 3000 m² filter) in a task."""
        mask = self.ctx.artifact(MASK)
        if not self.ctx.has(MASK):
            self.ctx.error("labels", "Preview a mask first: polygons are made from it.")
            return
        job = PolygonizeParams(mask=mask["path"], out_vector=self.ctx.path("labels.gpkg"),
                               min_area_m2=self.min_area.value(),
                               rule=mask.get("rule") if mask.get("reference") else None)
        self.status.setText("Making polygons ...")
        task = self.ctx.start("label polygons", lambda fb: run_polygonize(job, fb), self._polygons_ready,
                              "labels", on_end=self.polygons_row.done)
        self.polygons_row.attach(task)

    def _polygons_ready(self, result: Any) -> None:
        layer = layers.vector_layer(result.path, "labels", result.layer)
        if result.style_path and Path(result.style_path).is_file():
            apply_qml(layer, result.style_path)  # categorized by class, class_id as a dropdown
        self.ctx.add_layer(layer, LABELS)
        legend = read_layer_legend(result.path)
        classes = [c.name for c in legend.classes] if legend else []
        self.ctx.set_artifact(LABELS, {"path": str(result.path), "layer": result.layer, "field": CLASS_FIELD,
                                       "classes": classes, "schema": True})
        stats = result.stats.to_dict()
        self.status.setText(f"{result.features} polygons (dropped {result.dropped_small} under "
                            f"{self.min_area.value():,.0f} m²); area mean {stats.get('mean', 0):,.0f} m², "
                            f"total {stats.get('total', 0) / 1e6:,.2f} km². " + " ".join(result.warnings))

    # -- existing polygons ---------------------------------------------------------------------

    def use_existing(self) -> None:
        layer = self.existing_layer.currentLayer()
        field = self.existing_field.currentField()
        if not isinstance(layer, QgsVectorLayer) or not field:
            self.ctx.error("labels", "Choose a polygon layer and the field that holds the class.")
            return
        if layer.providerType() != "ogr":
            self.ctx.error("labels", f"{layer.name()} is not a file layer; save it as a GeoPackage first.")
            return
        unique = [v for v in layer.uniqueValues(layer.fields().indexOf(field)) if v is not None]
        values = sorted({str(v) for v in unique})
        set_class_dropdown(layer, field, sorted(((str(v), v) for v in unique), key=lambda pair: pair[0]))
        self.ctx.set_artifact(LABELS, {"path": layer_file(layer), "field": field, "classes": values,
                                       "layer_id": layer.id()})
        self.status.setText(f"Labels: {layer.name()}, {len(values)} classes in {field}: "
                            f"{', '.join(values[:10])}{' ...' if len(values) > 10 else ''}")

    # -- editing and export --------------------------------------------------------------------

    def toggle_editing(self, on: bool) -> None:
        layer = self.label_layer()
        if layer is None:
            self.edit_button.setChecked(False)
            return
        if on:
            layer.startEditing()
            self.ctx.iface.setActiveLayer(layer)
            self.status.setText("Editing: change a polygon's class in the attribute form (class dropdown), "
                                "reshape or delete polygons; click again to save.")
        elif layer.isEditable():
            if not layer.commitChanges():
                errors = "; ".join(layer.commitErrors())
                self.ctx.error("labels", f"The edits could not be saved: {errors}")
                return
            self.status.setText("Edits saved. Fast retrain (step 4) learns from them.")
            self.ctx.set_artifact(LABELS, dict(self.ctx.artifact(LABELS) or {}, edited=True))

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", str(self.ctx.path("labels.shp")),
                                              "Shapefile (*.shp);;GeoPackage (*.gpkg)")
        if path:
            self.export(path)

    def export(self, out: str) -> None:
        layer = self.label_layer()
        labels = self.ctx.artifact(LABELS) or {}
        if layer is not None and layer.isEditable():
            self.ctx.error("labels", "Save the edits first (switch off \"Edit labels\").")
            return
        source = labels.get("path")
        if not source:
            self.ctx.error("labels", "There are no labels to export yet.")
            return

        def done(path: Path) -> None:
            self.status.setText(f"Exported {path}.")
            self.ctx.info("labels", f"Labels exported to {path}.", Qgis.Success)

        if labels.get("schema"):  # geedl's label schema: fields, legend and style go along
            def work(_fb):
                return export_labels(source, out, labels.get("layer"))
        else:
            def work(_fb):
                return export_vector(source, out)
        self.ctx.start("export labels", work, done, "export")
