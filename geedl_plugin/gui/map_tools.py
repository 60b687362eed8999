"""Map tools that let the analyst draw the region of interest on the canvas.

Both tools show a rubber band while drawing and emit ``regionDrawn(QgsGeometry)`` in the
canvas CRS when done; the dock turns that geometry into a layer. Escape cancels. A drawing that
is too small to be a region (a click without a drag, a polygon with fewer than three vertices)
is ignored rather than reported, as QGIS's own tools do.
"""

from __future__ import annotations

from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

FILL = QColor(255, 128, 0, 60)
STROKE = QColor(255, 100, 0, 230)


def _rubber_band(canvas: QgsMapCanvas) -> QgsRubberBand:
    band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
    band.setColor(STROKE)
    band.setFillColor(FILL)
    band.setStrokeColor(STROKE)
    band.setWidth(2)
    return band


class _RegionTool(QgsMapTool):
    regionDrawn = pyqtSignal(QgsGeometry)  # noqa: N815 - Qt naming
    cancelled = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.band = _rubber_band(canvas)
        self.setCursor(Qt.CrossCursor)

    def reset(self) -> None:
        self.band.reset(QgsWkbTypes.PolygonGeometry)

    def deactivate(self) -> None:
        self.reset()
        super().deactivate()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key_Escape:
            self.reset()
            self.cancelled.emit()
            event.accept()

    def remove_band(self) -> None:
        """Take the rubber band off the canvas (on unload)."""
        scene = self.band.scene()
        if scene is not None:
            scene.removeItem(self.band)


class RectangleMapTool(_RegionTool):
    """Press, drag, release: a rectangle."""

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.start: QgsPointXY | None = None

    def reset(self) -> None:
        self.start = None
        super().reset()

    def rectangle(self, end: QgsPointXY) -> QgsRectangle | None:
        if self.start is None or self.start.x() == end.x() or self.start.y() == end.y():
            return None
        return QgsRectangle(self.start, end)

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.LeftButton:
            self.start = event.mapPoint()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        rect = self.rectangle(event.mapPoint())
        if rect is not None:
            self.band.setToGeometry(QgsGeometry.fromRect(rect), None)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.LeftButton:
            return
        rect = self.rectangle(event.mapPoint())
        self.reset()
        if rect is not None:
            self.regionDrawn.emit(QgsGeometry.fromRect(rect))


class PolygonMapTool(_RegionTool):
    """Left click adds a vertex; right click (or a double click) closes the polygon."""

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.points: list[QgsPointXY] = []

    def reset(self) -> None:
        self.points = []
        super().reset()

    def _show(self, hover: QgsPointXY | None = None) -> None:
        ring = self.points + ([hover] if hover is not None else [])
        if len(ring) >= 2:
            self.band.setToGeometry(QgsGeometry.fromPolygonXY([ring]), None)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.LeftButton:
            self.points.append(event.mapPoint())
            self._show()
        elif event.button() == Qt.RightButton:
            self.finish()

    def canvasDoubleClickEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        self.finish()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self.points:
            self._show(event.mapPoint())

    def finish(self) -> None:
        points = _dedupe(self.points)
        self.reset()
        if len(points) < 3:
            return
        geometry = QgsGeometry.fromPolygonXY([points])
        if not geometry.isGeosValid():
            geometry = geometry.makeValid()
        if geometry.area() > 0:
            self.regionDrawn.emit(geometry)


def _dedupe(points: list[QgsPointXY]) -> list[QgsPointXY]:
    """Drop consecutive repeats (a double click adds the last vertex twice)."""
    kept: list[QgsPointXY] = []
    for point in points:
        if not kept or point != kept[-1]:
            kept.append(point)
    return kept
