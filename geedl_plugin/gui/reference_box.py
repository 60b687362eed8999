"""Labels step: "Or: labels from a reference map" (CORINE, CDL, AAFC, WorldCover, Dynamic World,
JRC water from Earth Engine, or any local class raster / polygon layer).

The analyst picks the product, a remap preset (or identity / custom) and edits the remap table
(:class:`~.remap_table.RemapTableWidget`); "Make reference labels" runs
:func:`geedl_plugin.core.reference.run.run_reference` in a task (the CLI's ``reference`` command
runs the same function), which writes the label raster on the composite's grid and the table
beside it (an older table is backed up). The raster then becomes the run's *mask* (styled with
the project's classes): "Make polygons", editing, rasterize and chips work on it exactly as on a
rule mask. Earth Engine products are offered only while Earth Engine is signed in (step 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from ..core.atomic import backup
from ..core.errors import GeedlError
from ..core.reference.legends import PRODUCTS, product_spec
from ..core.reference.local import field_values, is_vector
from ..core.reference.remap import PRESETS, RemapTable, check_table_for_product, identity_table, preset
from ..core.reference.run import (
    LOCAL,
    ReferenceJob,
    ReferenceOutcome,
    run_reference,
    value_table,
    vector_fields,
)
from . import layers
from .context import COMPOSITE, MASK, DockContext
from .remap_table import RemapTableWidget, Row
from .step_source import ee_signed_in
from .styles import style_paletted
from .widgets import ProgressRow

IDENTITY = "identity"
CUSTOM = "custom"
LOCAL_TITLE = "Local raster or polygon file"
OUT_NAME = "reference_labels.tif"


def product_rows(product: str) -> list[Row]:
    """A product's classes as rows of the remap editor (value, name, colour)."""
    return [(e.value, e.name, e.color) for e in product_spec(product).legend.entries]


class ReferenceBox(QgsCollapsibleGroupBox):
    """Product, remap preset and table, and the run button; reports in ``status``."""

    def __init__(self, ctx: DockContext, status: QLabel, parent: QWidget | None = None) -> None:
        super().__init__("Or: labels from a reference map", parent)
        # the table makes the box tall: folded until wanted, and QGIS remembers the choice
        self.setObjectName("geedlReferenceBox")
        self.setCollapsed(True)
        self.setSaveCollapsedState(True)
        self.ctx = ctx
        self.status = status
        self.field_values: list[str] = []  # distinct values of the chosen field (local polygons)
        self._loading = False
        form = QFormLayout(self)

        self.product = QComboBox()
        self.product.addItem(LOCAL_TITLE, LOCAL)
        for key, spec in PRODUCTS.items():
            self.product.addItem(f"{spec.title} (Earth Engine)", key)
        self.product.currentIndexChanged.connect(self._product_changed)
        form.addRow("Product", self.product)

        self.local_box = QWidget()
        local = QFormLayout(self.local_box)
        local.setContentsMargins(0, 0, 0, 0)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer | QgsMapLayerProxyModel.PolygonLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        self.layer_combo.layerChanged.connect(self._layer_chosen)
        local.addRow("Layer", self.layer_combo)
        self.source_file = QgsFileWidget()
        self.source_file.lineEdit().setMinimumWidth(80)
        self.source_file.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.source_file.setFilter("Class rasters and polygons (*.tif *.tiff *.gpkg *.shp *.geojson *.fgb "
                                   "*.vrt *.img);;All files (*)")
        self.source_file.fileChanged.connect(self._source_changed)
        local.addRow("File", self.source_file)
        self.field = QComboBox()
        self.field.setToolTip("The attribute that holds the class (OpenStreetMap land use: fclass)")
        self.field.currentIndexChanged.connect(self._field_changed)
        local.addRow("Class field", self.field)
        form.addRow(self.local_box)

        self.ee_box = QWidget()
        ee_form = QFormLayout(self.ee_box)
        ee_form.setContentsMargins(0, 0, 0, 0)
        self.year = QComboBox()
        ee_form.addRow("Edition", self.year)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0, 100)
        self.threshold.setValue(50)
        self.threshold.setSuffix(" %")
        self.threshold.setToolTip("JRC: water where the occurrence is at least this")
        ee_form.addRow("Water occurrence", self.threshold)
        self.ee_note = QLabel("")
        self.ee_note.setWordWrap(True)
        ee_form.addRow(self.ee_note)
        form.addRow(self.ee_box)

        self.preset = QComboBox()
        self.preset.setToolTip("A built-in table; the tooltip of each entry says what it maps")
        self.preset.currentIndexChanged.connect(self._preset_changed)
        form.addRow("Remap preset", self.preset)
        self.remap = RemapTableWidget()
        self.remap.changed.connect(self._table_edited)
        form.addRow(self.remap)
        files = QHBoxLayout()
        self.load_button = QPushButton("Load table...")
        self.load_button.clicked.connect(self._load_dialog)
        self.save_button = QPushButton("Save table...")
        self.save_button.clicked.connect(self._save_dialog)
        files.addWidget(self.load_button)
        files.addWidget(self.save_button)
        files.addStretch(1)
        form.addRow(files)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00000;")
        form.addRow(self.message)
        self.run_row = ProgressRow("Make reference labels")
        self.run_row.button.clicked.connect(self.make_labels)
        form.addRow(self.run_row)
        self._product_changed()

    # -- product and source ----------------------------------------------------------------------

    def product_key(self) -> str:
        return self.product.currentData()

    def refresh_products(self) -> None:
        """Earth Engine products are selectable only while Earth Engine is signed in."""
        signed_in = ee_signed_in()
        model = self.product.model()
        for row in range(self.product.count()):
            if self.product.itemData(row) != LOCAL:
                model.item(row).setEnabled(signed_in)
        self.validate()

    def ee_enabled(self, key: str) -> bool:
        return bool(self.product.model().item(self.product.findData(key)).isEnabled())

    def _product_changed(self, *_args) -> None:
        key = self.product_key()
        local = key == LOCAL
        self.local_box.setVisible(local)
        self.ee_box.setVisible(not local)
        if not local:
            spec = product_spec(key)
            self.year.clear()
            if spec.years:
                for year in reversed(spec.years):
                    self.year.addItem(str(year), year)
            else:
                self.year.addItem("latest", None)
            self.year.setEnabled(spec.temporal == "annual" and bool(spec.years))
            self.threshold.setVisible(spec.continuous)
            note = f"{spec.coverage}; {spec.attribution}."
            if spec.temporal == "per_scene":
                note = "Mode of the labels over the composite's dates. " + note
            self.ee_note.setText(note)
        self._fill_presets()

    def _layer_chosen(self, layer) -> None:
        if layer is not None:
            self.source_file.setFilePath(layer.source().split("|")[0])

    def source_path(self) -> str:
        return self.source_file.filePath().strip()

    def local_is_vector(self) -> bool:
        path = self.source_path()
        return bool(path) and Path(path).exists() and is_vector(path)

    def _source_changed(self, *_args) -> None:
        self.field.blockSignals(True)
        self.field.clear()
        self.field_values = []
        if self.local_is_vector():
            try:
                names = vector_fields(self.source_path())
            except GeedlError as exc:
                names = []
                self.message.setText(str(exc))
            self.field.addItems(names)
            # the table's field, else a field a preset reads (OSM land use: fclass)
            wanted = [self.remap.meta("field")] + [t.field for t in PRESETS.values() if t.field]
            found = next((name for name in wanted if name in names), None)
            if found:
                self.field.setCurrentIndex(names.index(found))
        self.field.setEnabled(self.field.count() > 0)
        self.field.blockSignals(False)
        self._fill_presets()
        self._field_changed()

    def _field_changed(self, *_args) -> None:
        """Read the field's distinct values in a task; they become the rows of the table."""
        field_name = self.field.currentText()
        if not (self.product_key() == LOCAL and field_name and self.local_is_vector()):
            self.validate()
            return
        path = self.source_path()
        self.remap.set_meta(field=field_name)

        def done(values: list[str]) -> None:
            if (self.source_path(), self.field.currentText()) != (path, field_name):
                return  # the choice changed while the values were read
            self.field_values = values
            if self.preset.currentData() == IDENTITY:
                self._apply_preset()
            else:
                self.remap.set_rows([(v, v, "") for v in values], field_name)
            self.validate()

        self.ctx.start("reference classes", lambda _fb: field_values(path, field_name), done, "labels")

    # -- presets and table -------------------------------------------------------------------------

    def preset_names(self) -> list[str]:
        """Presets fitting the product (a local polygon layer: the field presets)."""
        key = self.product_key()
        if key != LOCAL:
            return [name for name, t in PRESETS.items() if t.source == key]
        if self.local_is_vector():
            return [name for name, t in PRESETS.items() if t.field]
        if self.source_path():
            return [name for name, t in PRESETS.items() if not t.field]
        return list(PRESETS)

    def _fill_presets(self) -> None:
        current = self.preset.currentData()
        self.preset.blockSignals(True)
        self.preset.clear()
        for name in self.preset_names():
            self.preset.addItem(name, name)
            self.preset.setItemData(self.preset.count() - 1, PRESETS[name].description, 3)
        if self.product_key() != LOCAL or self.local_is_vector():
            self.preset.addItem("identity: every class its own", IDENTITY)
        self.preset.addItem("custom (edited)", CUSTOM)
        index = self.preset.findData(current)
        keep = index >= 0 and (current == CUSTOM or current in self.preset_names())
        self.preset.setCurrentIndex(index if keep else 0)
        self.preset.blockSignals(False)
        if self._loading:
            return
        if keep:
            self.remap.set_rows(self.rows(), self.remap.meta("field"))
            self.validate()
        else:
            self._apply_preset()

    def rows(self) -> list[Row]:
        """The product classes the table is edited on."""
        key = self.product_key()
        if key != LOCAL:
            return product_rows(key)
        if self.local_is_vector():
            return [(v, v, "") for v in self.field_values]
        source = self.remap.meta("source")
        return product_rows(source) if source in PRODUCTS else []

    def _preset_changed(self, *_args) -> None:
        if not self._loading:
            self._apply_preset()

    def _apply_preset(self) -> None:
        name = self.preset.currentData()
        try:
            if name == IDENTITY:
                if self.product_key() != LOCAL:
                    table = identity_table(self.product_key())
                else:
                    table = value_table(self.field_values, self.field.currentText())
            elif name in PRESETS:
                table = preset(name)
            else:
                self.validate()
                return
        except GeedlError as exc:
            self._show_problem(str(exc))
            return
        if self.product_key() == LOCAL and self.local_is_vector() and self.field.currentText():
            table.field = self.field.currentText()
        self.set_table(table)

    def set_table(self, table: RemapTable) -> None:
        """Show a table in the editor on the current product's classes."""
        self._loading = True
        try:
            self.remap.set_meta(source=table.source)
            self.remap.set_table(table, self.rows())
        finally:
            self._loading = False
        self.validate()

    def _table_edited(self) -> None:
        if self._loading:
            return
        if self.preset.currentData() != CUSTOM:
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(self.preset.findData(CUSTOM))
            self.preset.blockSignals(False)
            self.remap.set_meta(name=CUSTOM)
        self.validate()

    def table(self) -> RemapTable:
        """The edited table, checked against the chosen product (GeedlError says what is wrong)."""
        table = self.remap.table()
        key = self.product_key()
        if key != LOCAL:
            check_table_for_product(table, key)
        elif self.local_is_vector():
            if self.field_values:
                table.validate_values(self.field_values, Path(self.source_path()).name)
        elif table.source in PRODUCTS:
            check_table_for_product(table, table.source)
        return table

    def problem(self) -> str:
        """Why the labels cannot be made now ('' when they can)."""
        key = self.product_key()
        try:
            self.table()
        except GeedlError as exc:
            return str(exc)
        if key == LOCAL:
            path = self.source_path()
            if not path:
                return "Choose the local reference: a class raster or a polygon file (or a layer)."
            if not Path(path).exists():
                return f"{path} does not exist."
            if self.local_is_vector() and not self.field.currentText():
                return "Choose the field that holds the classes."
        elif not self.ee_enabled(key):
            return (f"{product_spec(key).title} comes from Earth Engine: sign in (step 2) first, or "
                    "use a local reference.")
        if not self.ctx.has(COMPOSITE):
            return "Make a composite first (step 2): the labels take its grid."
        return ""

    def _show_problem(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self.run_row.button.setEnabled(not text and self.run_row.task is None)

    def validate(self) -> bool:
        text = self.problem()
        self._show_problem(text)
        return not text

    # -- files -------------------------------------------------------------------------------------

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a remap table", self.ctx.ensure_run().folder,
                                              "Remap tables (*.json)")
        if path:
            self.load_table(path)

    def load_table(self, path: str | Path) -> None:
        try:
            table = RemapTable.load(path)
        except GeedlError as exc:
            self._show_problem(str(exc))
            return
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(self.preset.findData(CUSTOM))
        self.preset.blockSignals(False)
        self.set_table(table)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the remap table", str(self.ctx.path("remap.json")),
                                              "Remap tables (*.json)")
        if path:
            self.save_table(path)

    def save_table(self, path: str | Path) -> Path | None:
        """Save the table as JSON; an existing file is backed up first."""
        try:
            table = self.remap.table()
            backup(path)
            saved = table.save(path)
        except (GeedlError, OSError) as exc:
            self.ctx.error("remap table", str(exc))
            return None
        self.status.setText(f"Remap table saved as {saved}.")
        return saved

    # -- run ---------------------------------------------------------------------------------------

    def job(self) -> ReferenceJob:
        problem = self.problem()
        if problem:
            raise GeedlError(problem)
        key = self.product_key()
        settings = self.ctx.settings()
        common = {"product": key, "composite": self.ctx.artifact(COMPOSITE)["path"],
                  "out_mask": str(self.ctx.path(OUT_NAME)), "table": self.table()}
        if key == LOCAL:
            return ReferenceJob(**common, source=self.source_path(),
                                field_name=self.field.currentText() if self.local_is_vector() else None)
        return ReferenceJob(**common, year=self.year.currentData(), threshold=self.threshold.value(),
                            project=settings.ee_project or None, tile_size=settings.tile_size)

    def make_labels(self) -> None:
        try:
            job = self.job()
        except GeedlError as exc:
            self._show_problem(str(exc))
            self.ctx.error("reference labels", str(exc))
            return
        self.status.setText("Making reference labels ...")
        task = self.ctx.start("reference labels", lambda fb: run_reference(job, fb), self._ready, "labels",
                              on_end=self._ended)
        self.run_row.attach(task)

    def _ended(self) -> None:
        self.run_row.done()
        self.validate()

    def _ready(self, outcome: ReferenceOutcome) -> None:
        table = outcome.table
        layer = layers.raster_layer(outcome.mask, f"reference {outcome.source.split(':')[0]}")
        style_paletted(layer, [(c.id, c.name, c.color) for c in sorted(table.classes, key=lambda c: c.id)],
                       opacity=0.7)
        self.ctx.add_layer(layer, MASK)
        self.ctx.set_artifact(MASK, {"path": str(outcome.mask), "rule": f"reference: {outcome.source}",
                                     "legend": outcome.legend(), "reference": True,
                                     "remap": str(outcome.table_path)})
        notes = " ".join(outcome.messages[:-1] if outcome.messages and
                         outcome.messages[-1].startswith("Reference labels:") else outcome.messages)
        self.status.setText(f"Reference labels from {outcome.source}: {outcome.describe()}. Remap table "
                            f"saved as {outcome.table_path.name}. {notes} Next: Make polygons.".strip())

    # -- state ---------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"product": self.product_key(), "source": self.source_path(),
                "field": self.field.currentText(), "preset": self.preset.currentData(),
                "year": self.year.currentData(),
                "threshold": self.threshold.value(), "table": self.remap.to_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        """Put a saved form back (an unreadable part is skipped: an older project)."""
        if not isinstance(state, dict):
            return
        index = self.product.findData(state.get("product"))
        if index >= 0:
            self.product.setCurrentIndex(index)
        if state.get("source"):
            self.source_file.setFilePath(str(state["source"]))
        if state.get("field"):
            self.field.setCurrentIndex(max(0, self.field.findText(str(state["field"]))))
        year = self.year.findData(state.get("year"))
        if year >= 0:
            self.year.setCurrentIndex(year)
        try:
            self.threshold.setValue(float(state.get("threshold", self.threshold.value())))
            table = RemapTable.from_dict(state["table"]) if isinstance(state.get("table"), dict) else None
        except (GeedlError, TypeError, ValueError):
            table = None
        chosen = self.preset.findData(state.get("preset"))
        if chosen >= 0:
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(chosen)
            self.preset.blockSignals(False)
        if table is not None:
            self.set_table(table)
        self.validate()
