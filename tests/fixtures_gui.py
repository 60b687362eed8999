"""Fixtures for the dock tests: a dock on pytest-qgis's canvas, settings in a temp folder.

The dock is driven as a user would: buttons clicked with qtbot, map tools fed real mouse
events on the canvas viewport. Plugin settings are replaced by an in-memory instance so the
tests never touch the user's QGIS profile.
"""

from __future__ import annotations

import time

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtTest import QTest

from geedl_plugin.toolbelt.settings import PluginSettings

# a 3 x 3 km view of the Virginia sample (EPSG:32618): fields, marsh and a tidal channel
VIRGINIA_CRS = "EPSG:32618"
VIRGINIA_VIEW = QgsRectangle(446000, 4168000, 449000, 4171000)
# a 3 x 3 km view of the Brandenburg sample (EPSG:32633) where OSM polygons of 7 classes meet
BRANDENBURG_CRS = "EPSG:32633"
BRANDENBURG_VIEW = QgsRectangle(337500, 5817500, 340500, 5820500)


def set_view(canvas, crs: str, view: QgsRectangle) -> None:
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem(crs))
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(crs))
    canvas.setExtent(view)


@pytest.fixture(name="gui_settings")
def gui_settings_fixture(tmp_path, monkeypatch):
    settings = PluginSettings(output_folder=str(tmp_path / "runs"))
    monkeypatch.setattr(PluginSettings, "load", classmethod(lambda cls: settings))
    return settings


@pytest.fixture(name="dock")
def dock_fixture(qgis_iface, qgis_new_project, qgis_canvas, qgis_parent, qtbot, gui_settings):
    from geedl_plugin.gui.dock import GeedlDock

    qgis_parent.show()
    qgis_canvas.show()  # a hidden canvas has a 98 x 28 viewport: clicks would land 100 m apart
    qgis_canvas.resize(600, 600)
    qtbot.waitUntil(lambda: qgis_canvas.viewport().width() > 500)
    set_view(qgis_canvas, VIRGINIA_CRS, VIRGINIA_VIEW)
    widget = GeedlDock(qgis_iface, check_dependencies=False)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.ctx.tasks.cancel_all()
    wait_for_tasks(qtbot, widget, timeout_ms=60000)
    widget.unload()


def page_widths(dock) -> dict[str, int]:
    """The narrowest each step page can be drawn (px) without a horizontal scroll bar."""
    return {step.title: step.minimumSizeHint().width() for step in dock.steps}


def wait_for_tasks(qtbot, dock, timeout_ms: int = 120000) -> None:
    qtbot.waitUntil(lambda: not dock.ctx.tasks.busy(), timeout=timeout_ms)


def canvas_point(canvas, x: float, y: float) -> QPoint:
    """Viewport pixel of a map coordinate."""
    point = canvas.getCoordinateTransform().transform(x, y)
    return QPoint(int(round(point.x())), int(round(point.y())))


def drag_rectangle(qtbot, canvas, x0: float, y0: float, x1: float, y1: float) -> None:
    """Press at (x0, y0), move, release at (x1, y1) on the canvas, as a mouse would."""
    viewport = canvas.viewport()
    start, end = canvas_point(canvas, x0, y0), canvas_point(canvas, x1, y1)
    QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, start)
    QTest.mouseMove(viewport, (start + end) / 2)
    QTest.mouseMove(viewport, end)
    QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, end)


def click_polygon(qtbot, canvas, points: list[tuple[float, float]]) -> None:
    viewport = canvas.viewport()
    for x, y in points:
        QTest.mouseClick(viewport, Qt.LeftButton, Qt.NoModifier, canvas_point(canvas, x, y))
    last = canvas_point(canvas, *points[-1])
    QTest.mouseClick(viewport, Qt.RightButton, Qt.NoModifier, last)


class Heartbeat:
    """Records the gaps between timer ticks on the main thread (how long the UI was blocked)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qgis.PyQt.QtCore import QTimer

        self.stamps: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.stamps.append(time.perf_counter()))

    def start(self) -> None:
        self.stamps = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def gaps_ms(self, end: float = float("inf")) -> list[float]:
        """Gaps (ms) between ticks that started before ``end`` (a time.perf_counter() value)."""
        return sorted(1000 * (b - a) for a, b in zip(self.stamps, self.stamps[1:]) if a <= end)

    def max_gap_until(self, end: float) -> float:
        return max(self.gaps_ms(end), default=0.0)

    def percentile_gap(self, q: float = 99.0, end: float = float("inf")) -> float:
        """The q-th percentile gap (ms): what the user feels, without the rare stall a busy 2-core
        machine's scheduler inflicts on any process (seen up to 1.5 s with the CPU 99 % contended)."""
        gaps = self.gaps_ms(end)
        return gaps[min(len(gaps) - 1, int(len(gaps) * q / 100.0))] if gaps else 0.0

    def report(self, what: str, end: float = float("inf")) -> str:
        return (f"UI heartbeat while {what}: max gap {self.max_gap_until(end):.0f} ms, "
                f"99th percentile {self.percentile_gap(99, end):.0f} ms over {len(self.gaps_ms(end))} ticks")


def draw_region(dock, qtbot, canvas, corners=(446500, 4168500, 447500, 4169300)):
    from geedl_plugin.gui.step_region import RegionStep

    qtbot.mouseClick(dock.step(RegionStep).rectangle_button, Qt.LeftButton)
    drag_rectangle(qtbot, canvas, *corners)
    wait_for_tasks(qtbot, dock)


def fetch_sample(dock, qtbot, sample="virginia"):
    from geedl_plugin.gui.step_source import SourceStep

    source = dock.step(SourceStep)
    index = source.sample_combo.findText(f"Sample: {sample}")
    assert index >= 0, "the sample scenes are offered"
    source.sample_combo.setCurrentIndex(index)
    qtbot.mouseClick(source.add_sample_button, Qt.LeftButton)
    qtbot.mouseClick(source.fetch.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    return source
