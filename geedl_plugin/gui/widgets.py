"""Small widgets the steps share."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

# the narrowest a dock page should need (px): QGIS docks open about 300-450 px wide, and a page
# wider than its dock hides its right edge (the Cancel buttons) behind a horizontal scroll bar
DOCK_PAGE_WIDTH = 400
# characters a drop-down shows when the dock is narrow (its list still shows whole entries)
COMBO_CHARACTERS = 10


def fit_narrow(page: QWidget) -> None:
    """Let a dock page shrink to :data:`DOCK_PAGE_WIDTH`: drop-downs stop sizing themselves to their
    longest entry (a model size or rule description is 50 characters) and form rows put a field
    under its label when both do not fit side by side. Call it before the page is first shown: a
    drop-down keeps the minimum width it computed once."""
    for combo in page.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)
    for form in page.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)


def grid_of(widgets: list[QWidget], columns: int) -> QGridLayout:
    """Widgets in rows of ``columns`` (check boxes, radio buttons, buttons that would make one
    row wider than a dock)."""
    grid = QGridLayout()
    grid.setContentsMargins(0, 0, 0, 0)
    for position, widget in enumerate(widgets):
        grid.addWidget(widget, position // columns, position % columns)
    return grid


class ProgressRow(QHBoxLayout):
    """A run button, a progress bar and a cancel button bound to the current task."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.button = QPushButton(label)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        self.bar.setMinimumWidth(60)  # its own hint (about 110 px) would widen a narrow dock
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.addWidget(self.button)
        self.addWidget(self.bar, 1)
        self.addWidget(self.cancel)
        self.task = None

    def attach(self, task) -> None:
        self.task = task
        self.bar.setValue(0)
        self.button.setEnabled(False)
        self.cancel.setEnabled(True)
        task.progressChanged.connect(lambda value: self.bar.setValue(int(value)))
        self.cancel.clicked.connect(task.cancel)

    def done(self) -> None:
        if self.task is not None:
            try:
                self.cancel.clicked.disconnect(self.task.cancel)
            except TypeError:
                pass
        self.task = None
        self.button.setEnabled(True)
        self.cancel.setEnabled(False)


class MetricsTable(QTableWidget):
    """Per-class scores (IoU, precision, recall, F1, support) and the overall figures.

    Takes the full metrics dict of ``core.training.metrics.scores`` (``per_class``) or its
    compact form (``iou`` / ``f1`` per class), whichever a command reports. A training's scores
    also carry the IoU away from label edges, shown as a last column: when it is much higher than
    the IoU, the model and the labels disagree on where edges run rather than on what is there.
    """

    COLUMNS = ("iou", "precision", "recall", "f1", "support")
    HEADERS = ["IoU", "Precision", "Recall", "F1", "Pixels"]
    EDGE_FREE_HEADER = "IoU off edges"
    EDGE_FREE_TIP = ("IoU without the pixels on either side of a label boundary (1 px): hand-drawn or "
                     "OpenStreetMap polygons rarely follow an edge to the pixel")

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(self.COLUMNS), parent)
        self.setHorizontalHeaderLabels(self.HEADERS)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.setEditTriggers(QTableWidget.NoEditTriggers)
        self.setMaximumHeight(180)
        self.summary = ""

    def show_metrics(self, metrics: dict[str, Any]) -> None:
        per_class = metrics.get("per_class")
        if not per_class:
            iou, f1 = metrics.get("iou", {}), metrics.get("f1", {})
            names = sorted(set(iou) | set(f1))
            per_class = {name: {"iou": iou.get(name), "f1": f1.get(name)} for name in names}
        edge_free = (metrics.get("away_from_edges") or {}).get("iou")
        self.setColumnCount(len(self.COLUMNS) + (1 if edge_free else 0))
        self.setHorizontalHeaderLabels(self.HEADERS + ([self.EDGE_FREE_HEADER] if edge_free else []))
        if edge_free:
            self.horizontalHeaderItem(len(self.COLUMNS)).setToolTip(self.EDGE_FREE_TIP)
        self.setRowCount(len(per_class))
        self.setVerticalHeaderLabels(list(per_class))
        for row, (name, values) in enumerate(per_class.items()):
            cells = [values.get(key) for key in self.COLUMNS] + ([edge_free.get(name)] if edge_free else [])
            for column, value in enumerate(cells):
                text = "" if value is None else (f"{value:,d}" if isinstance(value, int) else f"{value:.3f}")
                self.setItem(row, column, QTableWidgetItem(text))
        parts = [f"{label} {metrics[key]:.3f}" for key, label in
                 (("overall_accuracy", "overall accuracy"), ("mean_iou", "mean IoU"),
                  ("mean_f1", "mean F1"), ("kappa", "kappa")) if metrics.get(key) is not None]
        self.summary = ", ".join(parts)
        self.setToolTip(self.summary)
