"""A small line chart painted with QPainter: training loss and validation metrics per epoch.

matplotlib is not part of QGIS's Python everywhere, and a chart of a few dozen points needs
none of it. Losses use the left axis (auto-scaled from zero); metrics such as IoU or accuracy,
which live in 0..1, use the right axis and are drawn dashed, so both stay readable together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPainterPath, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

COLORS = ("#1f78b4", "#e31a1c", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928")


@dataclass
class Series:
    name: str
    unit_interval: bool  # True: right axis 0..1 (metrics); False: left axis (losses)
    points: list[tuple[float, float]] = field(default_factory=list)


class LinePlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, Series] = {}
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.x_label = "epoch"

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(300, 170)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def add_point(self, name: str, x: float, y: float, unit_interval: bool | None = None) -> None:
        """Append a point; a metric whose name suggests 0..1 goes to the right axis."""
        if y is None or not math.isfinite(float(y)):
            return
        if name not in self.series:
            if unit_interval is None:
                unit_interval = "loss" not in name.lower()
            self.series[name] = Series(name, unit_interval)
        self.series[name].points.append((float(x), float(y)))
        self.update()

    def _ranges(self) -> tuple[float, float, float]:
        xs = [x for s in self.series.values() for x, _ in s.points]
        losses = [y for s in self.series.values() if not s.unit_interval for _, y in s.points]
        x_min = min(xs, default=0.0)
        x_max = max(xs, default=1.0)
        if x_max <= x_min:
            x_max = x_min + 1.0
        y_max = max(losses, default=1.0)
        return x_min, x_max, (y_max * 1.1 if y_max > 0 else 1.0)

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        metrics = painter.fontMetrics()
        left, right, top, bottom = metrics.width("0.000") + 10, metrics.width("1.0") + 12, 8, \
            metrics.height() + 8
        area = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        x_min, x_max, y_max = self._ranges()
        text_pen = QPen(self.palette().text().color())
        painter.setPen(QPen(QColor(160, 160, 160)))
        painter.drawRect(area)
        painter.setPen(text_pen)
        for frac in (0.0, 0.5, 1.0):
            y = area.bottom() - frac * area.height()
            painter.drawText(QRectF(0, y - 8, left - 4, 16), Qt.AlignRight | Qt.AlignVCenter,
                             f"{frac * y_max:.3g}")
            painter.drawText(QRectF(area.right() + 3, y - 8, right, 16), Qt.AlignLeft | Qt.AlignVCenter,
                             f"{frac:.1f}")
        painter.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), bottom),
                         Qt.AlignHCenter | Qt.AlignTop,
                         f"{self.x_label} {x_min:g}..{x_max:g}" if self.series else "no data yet")

        def to_screen(x: float, y: float, unit: bool) -> QPointF:
            fx = (x - x_min) / (x_max - x_min)
            fy = y if unit else y / y_max
            return QPointF(area.left() + fx * area.width(),
                           area.bottom() - max(0.0, min(1.0, fy)) * area.height())

        legend_y = area.top() + 2
        for i, series in enumerate(self.series.values()):
            color = QColor(COLORS[i % len(COLORS)])
            pen = QPen(color, 2, Qt.DashLine if series.unit_interval else Qt.SolidLine)
            painter.setPen(pen)
            path = QPainterPath()
            for j, (x, y) in enumerate(series.points):
                point = to_screen(x, y, series.unit_interval)
                if j == 0:
                    path.moveTo(point)
                else:
                    path.lineTo(point)
                painter.drawEllipse(point, 2, 2)
            painter.drawPath(path)
            last = series.points[-1][1] if series.points else float("nan")
            painter.drawText(QPointF(area.left() + 6, legend_y + metrics.ascent()),
                             f"{series.name} {last:.3g}")
            legend_y += metrics.height()
        painter.end()
