"""An editable remap table: product classes (rows) -> the project's classes, in the dock.

Two tables: the project's classes (id, name, colour: add, rename, recolour, remove) and the
product's classes (value, name, colour swatch) each with a combo of the project classes or
"ignore". "Everything else" says where the product's values not listed go (``others``: CORINE
rice is "213 -> rice, the rest -> other"). The widget holds no logic of its own beyond the form:
:meth:`RemapTableWidget.table` builds a :class:`~geedl_plugin.core.reference.remap.RemapTable`
through its ``from_dict`` (so every check of the core applies and its message is shown), and the
mapping keeps the order a loaded table had, so an unedited preset comes back equal to itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qgis.gui import QgsColorButton
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import GeedlError
from ..core.reference.legends import IGNORE
from ..core.reference.remap import DEFAULT_COLORS, FORMAT_VERSION, RemapTable
from .widgets import grid_of

IGNORE_TEXT = "ignore"

# (value, name, colour) of a product class; colour may be ""
Row = tuple[Any, str, str]


class RemapTableWidget(QWidget):
    """Project classes and the product-class -> project-class mapping, editable."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._updating = False
        self._order: list[str] = []  # mapping order of the loaded table (text of the values)
        self._meta: dict[str, Any] = {"source": "local", "field": None, "ignore": IGNORE, "name": "",
                                      "description": "", "extra": {}}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        layout.addWidget(QLabel("Project classes"))
        self.classes = QTableWidget(0, 3)
        self.classes.setHorizontalHeaderLabels(["Id", "Name", "Colour"])
        self.classes.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.classes.verticalHeader().setVisible(False)
        self.classes.setMaximumHeight(130)
        self.classes.itemChanged.connect(self._classes_edited)
        layout.addWidget(self.classes)
        buttons = QHBoxLayout()
        self.add_class_button = QPushButton("Add class")
        self.add_class_button.clicked.connect(lambda: self.add_class())
        self.remove_class_button = QPushButton("Remove class")
        self.remove_class_button.clicked.connect(self.remove_selected_class)
        buttons.addWidget(self.add_class_button)
        buttons.addWidget(self.remove_class_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        layout.addWidget(QLabel("Product classes -> project class"))
        self.rows = QTableWidget(0, 4)
        self.rows.setHorizontalHeaderLabels(["Value", "Name", "", "Project class"])
        self.rows.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.rows.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.rows.verticalHeader().setVisible(False)
        self.rows.setMinimumHeight(160)
        layout.addWidget(self.rows)
        self.others = QComboBox()
        self.others.setToolTip("Where the product's classes not mapped above go (usually ignore)")
        self.others.currentIndexChanged.connect(self._emit)
        self.add_value_button = QPushButton("Add value...")
        self.add_value_button.setToolTip("A class value the list lacks (a local raster's own codes)")
        self.add_value_button.clicked.connect(self._ask_value)
        layout.addLayout(grid_of([QLabel("Everything else"), self.others, self.add_value_button], 2))

    # -- project classes -------------------------------------------------------------------------

    def class_list(self) -> list[dict[str, Any]]:
        """The project classes as the table JSON writes them (ids as typed; checked by the core)."""
        out = []
        for row in range(self.classes.rowCount()):
            id_item, name_item = self.classes.item(row, 0), self.classes.item(row, 1)
            button = self.classes.cellWidget(row, 2)
            text = id_item.text().strip() if id_item else ""
            try:
                class_id: Any = int(text)
            except ValueError:
                class_id = text
            out.append({"id": class_id, "name": name_item.text().strip() if name_item else "",
                        "color": button.color().name() if isinstance(button, QgsColorButton) else ""})
        return out

    def class_names(self) -> list[str]:
        return [c["name"] for c in self.class_list()]

    def add_class(self, name: str = "", color: str = "", class_id: int | None = None) -> int:
        """Append a project class (next free id, a default colour); returns its row."""
        current = self.class_list()
        ids = {c["id"] for c in current if isinstance(c["id"], int)}
        if class_id is None:
            class_id = next(i for i in range(255) if i not in ids)
        if not name:
            taken = {c["name"] for c in current}
            name = next(f"class {n}" for n in range(1, 1000) if f"class {n}" not in taken)
        row = self.classes.rowCount()
        self._updating = True
        try:
            self.classes.insertRow(row)
            self.classes.setItem(row, 0, QTableWidgetItem(str(class_id)))
            self.classes.setItem(row, 1, QTableWidgetItem(name))
            button = QgsColorButton()
            button.setColor(QColor(color or DEFAULT_COLORS[row % len(DEFAULT_COLORS)]))
            button.setShowNoColor(False)
            button.colorChanged.connect(self._emit)
            self.classes.setCellWidget(row, 2, button)
        finally:
            self._updating = False
        self._refresh_choices()
        self._emit()
        return row

    def remove_selected_class(self) -> None:
        rows = sorted({index.row() for index in self.classes.selectedIndexes()}, reverse=True)
        if not rows and self.classes.currentRow() >= 0:
            rows = [self.classes.currentRow()]
        for row in rows:
            self.remove_class(row)

    def remove_class(self, row: int) -> None:
        """Drop a project class; values mapped to it become ignore."""
        combos = [*self._combos(), self.others]
        chosen = [combo.currentData() for combo in combos]
        self.classes.removeRow(row)
        self._refresh_choices()
        for combo, position in zip(combos, chosen):
            if position is not None and position >= row:
                position = None if position == row else position - 1
            self._choose(combo, position)
        self._emit()

    def rename_class(self, row: int, name: str) -> None:
        self.classes.item(row, 1).setText(name)

    def _classes_edited(self, item: QTableWidgetItem) -> None:
        if self._updating:
            return
        self._refresh_choices()
        self._emit()

    def _refresh_choices(self) -> None:
        """Keep each combo's choice (by position: a renamed class stays chosen) with the new names."""
        names = self.class_names()
        self._updating = True
        try:
            for combo in [*self._combos(), self.others]:
                index = combo.currentIndex()
                combo.blockSignals(True)
                combo.clear()
                combo.addItem(IGNORE_TEXT, None)
                for position, name in enumerate(names):
                    combo.addItem(name, position)
                combo.setCurrentIndex(index if 0 <= index < combo.count() else 0)
                combo.blockSignals(False)
        finally:
            self._updating = False

    # -- product rows ----------------------------------------------------------------------------

    def _combos(self) -> list[QComboBox]:
        return [self.rows.cellWidget(row, 3) for row in range(self.rows.rowCount())]

    def row_values(self) -> list[Any]:
        return [self.rows.item(row, 0).data(Qt.UserRole) for row in range(self.rows.rowCount())]

    def set_rows(self, rows: Sequence[Row], field_name: str | None = None) -> None:
        """Show these product classes, keeping the current choice of each value; ``field_name``
        set means the values are a polygon layer's attribute (text)."""
        current = self.mapping_by_text()
        self._meta["field"] = field_name
        seen = set()
        unique = []
        for value, name, color in rows:
            if str(value) not in seen:
                seen.add(str(value))
                unique.append((value, name, color))
        for value, target in current.items():  # mapped values the new list lacks stay visible
            if value not in seen and target is not None:
                unique.append((value, "(not in the list)", ""))
                seen.add(value)
        self._fill_rows(unique, current)

    def _fill_rows(self, rows: Sequence[Row], choices: dict[str, int | None]) -> None:
        self._updating = True
        try:
            self.rows.setRowCount(0)
            self.rows.setRowCount(len(rows))
            for row, (value, name, color) in enumerate(rows):
                value_item = QTableWidgetItem(str(value))
                value_item.setData(Qt.UserRole, value)
                value_item.setFlags(value_item.flags() & ~Qt.ItemIsEditable)
                self.rows.setItem(row, 0, value_item)
                name_item = QTableWidgetItem(str(name))
                name_item.setFlags(name_item.flags() & ~Qt.ItemIsEditable)
                self.rows.setItem(row, 1, name_item)
                swatch = QTableWidgetItem("")
                swatch.setFlags(swatch.flags() & ~Qt.ItemIsEditable)
                if color:
                    swatch.setBackground(QColor(color))
                self.rows.setItem(row, 2, swatch)
                combo = QComboBox()
                combo.currentIndexChanged.connect(self._emit)
                self.rows.setCellWidget(row, 3, combo)
        finally:
            self._updating = False
        self._refresh_choices()
        self._updating = True
        try:
            for row, (value, _name, _color) in enumerate(rows):
                self._choose(self.rows.cellWidget(row, 3), choices.get(str(value)))
        finally:
            self._updating = False
        self.rows.resizeColumnToContents(0)
        self.rows.setColumnWidth(2, 24)

    def _choose(self, combo: QComboBox, position: int | None) -> None:
        index = combo.findData(position) if position is not None else 0
        combo.blockSignals(True)
        combo.setCurrentIndex(max(0, index))
        combo.blockSignals(False)

    def add_value_row(self, value: Any, name: str = "", color: str = "") -> int:
        rows = [(v, self.rows.item(r, 1).text(), "") for r, v in enumerate(self.row_values())]
        colors = [self.rows.item(r, 2).background().color() for r in range(self.rows.rowCount())]
        current = self.mapping_by_text()
        rows.append((value, name, color))
        self._fill_rows(rows, current)
        for r, colour in enumerate(colors):
            self.rows.item(r, 2).setBackground(colour)
        if color:
            self.rows.item(len(rows) - 1, 2).setBackground(QColor(color))
        self._emit()
        return len(rows) - 1

    def _ask_value(self) -> None:
        text, ok = QInputDialog.getText(self, "Add a class value", "Value (an integer for a raster):")
        if ok and text.strip():
            value: Any = text.strip()
            if not self._meta.get("field"):
                try:
                    value = int(value)
                except ValueError:
                    pass
            self.add_value_row(value)

    def set_choice(self, value: Any, class_name: str | None) -> None:
        """Map one product value to a project class by name (None: ignore)."""
        for row, found in enumerate(self.row_values()):
            if str(found) == str(value):
                combo = self.rows.cellWidget(row, 3)
                combo.setCurrentIndex(0 if class_name is None else combo.findText(class_name))
                return
        raise KeyError(value)

    def choice(self, value: Any) -> str | None:
        for row, found in enumerate(self.row_values()):
            if str(found) == str(value):
                text = self.rows.cellWidget(row, 3).currentText()
                return None if text == IGNORE_TEXT else text
        raise KeyError(value)

    def mapping_by_text(self) -> dict[str, int | None]:
        """{value text: class position or None} for every row."""
        return {str(value): self.rows.cellWidget(row, 3).currentData()
                for row, value in enumerate(self.row_values())}

    # -- the table -------------------------------------------------------------------------------

    def set_table(self, table: RemapTable, rows: Sequence[Row] = ()) -> None:
        """Show ``table`` on ``rows`` (product classes); values it maps that ``rows`` lacks are added."""
        self._meta = {"source": table.source, "field": table.field, "ignore": table.ignore,
                      "name": table.name, "description": table.description, "extra": dict(table.extra)}
        self._order = [str(v) for v in table.mapping]
        self._updating = True
        try:
            self.classes.setRowCount(0)
        finally:
            self._updating = False
        position = {}
        for index, project_class in enumerate(table.classes):
            self.add_class(project_class.name, project_class.color, project_class.id)
            position[project_class.id] = index
        shown = [(v, n, c) for v, n, c in rows]
        listed = {str(v) for v, _n, _c in shown}
        shown += [(v, "(not in the product's list)" if rows else "", "") for v in table.mapping
                  if str(v) not in listed]
        self._fill_rows(shown, {str(v): position[t] for v, t in table.mapping.items()})
        self._choose(self.others, None if table.others is None else position[table.others])
        self._emit()

    def set_meta(self, **values: Any) -> None:
        """Source, field, name or description of the table (not shown in the form)."""
        self._meta.update(values)

    def meta(self, key: str) -> Any:
        return self._meta.get(key)

    def to_dict(self) -> dict[str, Any]:
        """The table JSON of the form as it stands (not checked: see :meth:`table`)."""
        classes = self.class_list()
        names = [c["name"] for c in classes]
        chosen = {text: position for text, position in self.mapping_by_text().items() if position is not None}
        values = {str(v): v for v in self.row_values()}
        order = [t for t in self._order if t in chosen] + [t for t in values if t in chosen and
                                                           t not in self._order]
        grouped: dict[int, list[Any]] = {}
        for text in order:
            grouped.setdefault(chosen[text], []).append(values[text])
        others = self.others.currentData()
        data = {"geedl_remap": FORMAT_VERSION, "name": self._meta["name"],
                "description": self._meta["description"], "source": self._meta["source"],
                "field": self._meta["field"], "ignore": self._meta["ignore"],
                "others": None if others is None else names[others],
                "classes": classes,
                "mapping": [{"from": vals, "to": names[position]} for position, vals in grouped.items()]}
        if self._meta.get("extra"):
            data["extra"] = self._meta["extra"]
        return data

    def table(self) -> RemapTable:
        """The checked table; a :class:`GeedlError` says what is wrong with the form."""
        data = self.to_dict()
        bad = [c["id"] for c in data["classes"] if not isinstance(c["id"], int)]
        if bad:
            raise GeedlError(f"Class ids must be whole numbers (0-254); got {', '.join(map(str, bad))}.")
        if not data["mapping"] and data["others"] is None:
            raise GeedlError("No product class is mapped to a project class yet: choose a class for at "
                             "least one row (or for everything else).")
        return RemapTable.from_dict(data, "the remap table")

    def _emit(self, *_args) -> None:
        if not self._updating:
            self.changed.emit()
