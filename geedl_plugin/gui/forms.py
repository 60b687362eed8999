"""Read and write form widget values generically, so each step's form is saved in the project.

Each step registers the widgets worth remembering under stable keys; the dock stores
``{key: value}`` per step as JSON in the project and puts the values back on reopen.
"""

from __future__ import annotations

from typing import Any

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QDate
from qgis.PyQt.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)


def widget_value(widget: QWidget) -> Any:
    if isinstance(widget, QgsFileWidget):
        return widget.filePath()
    if isinstance(widget, QLineEdit):
        return widget.text()
    if isinstance(widget, QPlainTextEdit):
        return widget.toPlainText()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    if isinstance(widget, QComboBox):
        data = widget.currentData()
        return data if isinstance(data, (str, int, float)) else widget.currentText()
    if isinstance(widget, QDateEdit):
        return widget.date().toString("yyyy-MM-dd")
    if isinstance(widget, QAbstractButton):
        return widget.isChecked()
    if isinstance(widget, QListWidget):
        return [widget.item(i).text() for i in range(widget.count())]
    raise TypeError(f"no value for {type(widget).__name__}")


def set_widget_value(widget: QWidget, value: Any) -> None:
    """Put a stored value back; values of the wrong type are ignored (an older project)."""
    try:
        if isinstance(widget, QgsFileWidget):
            widget.setFilePath(str(value))
        elif isinstance(widget, QLineEdit):
            widget.setText(str(value))
        elif isinstance(widget, QPlainTextEdit):
            widget.setPlainText(str(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(value))
        elif isinstance(widget, QDoubleSpinBox):
            widget.setValue(float(value))
        elif isinstance(widget, QComboBox):
            index = widget.findData(value)
            if index < 0:
                index = widget.findText(str(value))
            if index >= 0:
                widget.setCurrentIndex(index)
            elif widget.isEditable():
                widget.setEditText(str(value))
        elif isinstance(widget, QDateEdit):
            date = QDate.fromString(str(value), "yyyy-MM-dd")
            if date.isValid():
                widget.setDate(date)
        elif isinstance(widget, QAbstractButton):
            if widget.isCheckable():
                widget.setChecked(bool(value))
        elif isinstance(widget, QListWidget):
            widget.clear()
            widget.addItems([str(v) for v in value])
    except (TypeError, ValueError):
        pass


def read_form(widgets: dict[str, QWidget]) -> dict[str, Any]:
    return {key: widget_value(widget) for key, widget in widgets.items()}


def write_form(widgets: dict[str, QWidget], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if key in widgets:
            set_widget_value(widgets[key], value)
