"""An expression editor for label rules: band and operator buttons, validated as you type.

The text is Earth Engine ``image.expression`` syntax, parsed by :mod:`geedl_plugin.core.expression`
(the same parser the local engine and the Earth Engine compiler use), so a rule that validates
here runs in both engines. Errors are shown inline under the field, never in a dialog.
"""

from __future__ import annotations

from collections.abc import Sequence

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QGridLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ..core.errors import GeedlError
from ..core.expression import parse

OPERATORS = ("+", "-", "*", "/", "(", ")", ">", "<", ">=", "<=", "==", "&&", "||", "!")
COLUMNS = 7
BUTTON_WIDTH = 44


class ExpressionBuilder(QWidget):
    validityChanged = pyqtSignal(bool)  # noqa: N815 - Qt naming

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bands: list[str] = []
        self.buttons: dict[str, QPushButton] = {}
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("e.g. NDVI > 0.3 && B11 < 2000")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.band_grid = QGridLayout()
        self.band_grid.setSpacing(2)
        operator_grid = QGridLayout()
        operator_grid.setSpacing(2)
        for i, op in enumerate(OPERATORS):
            button = self._button(op, op)
            operator_grid.addWidget(button, i // COLUMNS, i % COLUMNS)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit)
        layout.addWidget(self.message)
        layout.addLayout(self.band_grid)
        layout.addLayout(operator_grid)
        self.valid = False
        self.edit.textChanged.connect(self.validate)
        self.validate()

    def _button(self, label: str, text: str) -> QPushButton:
        button = QPushButton(label.replace("&", "&&"))  # a single & would be a keyboard mnemonic
        self.buttons[text] = button
        button.setMaximumWidth(BUTTON_WIDTH)
        button.setToolTip(f"insert {text}")
        button.clicked.connect(lambda: self.insert(text))
        return button

    def set_bands(self, bands: Sequence[str]) -> None:
        """One button per band of the composite; revalidate against the new names."""
        self.bands = list(bands)
        while self.band_grid.count():
            item = self.band_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.buttons = {op: button for op, button in self.buttons.items() if op in OPERATORS}
        for i, band in enumerate(self.bands):
            self.band_grid.addWidget(self._button(band, band), i // COLUMNS, i % COLUMNS)
        self.validate()

    def insert(self, text: str) -> None:
        """Insert at the cursor, with spaces around operators so the result stays readable."""
        current = self.edit.text()
        position = self.edit.cursorPosition()
        before = current[:position]
        padded = text if text in ("(", ")", "!") else f" {text} "
        if before.endswith(" ") and padded.startswith(" "):
            padded = padded[1:]
        self.edit.setText(before + padded + current[position:])
        self.edit.setCursorPosition(len(before) + len(padded))
        self.edit.setFocus()

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming
        self.edit.setText(text)

    def validate(self) -> bool:
        text = self.text()
        valid, message = False, ""
        if not text:
            message = "Type a rule, or build it with the buttons."
        else:
            try:
                expression = parse(text)
                if self.bands:
                    expression.check_names(self.bands)
                valid = True
                message = "OK: uses " + (", ".join(sorted(expression.names)) or "no band")
            except GeedlError as exc:
                message = str(exc)
        self.message.setText(message)
        self.message.setStyleSheet("color: #207020;" if valid else "color: #b00000;")
        if valid != self.valid:
            self.valid = valid
            self.validityChanged.emit(valid)
        return valid
