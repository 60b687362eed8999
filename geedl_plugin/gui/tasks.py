"""Background work for the dock: QgsTasks that never raise and never touch the GUI from a thread.

Two kinds:

- :class:`CoreTask` runs a ``core`` function ``work(feedback)`` in the task manager's thread.
  :class:`~geedl_plugin.core.progress.Feedback` is adapted to ``setProgress`` / ``isCanceled``, so
  the core code reports progress and honours cancel without knowing about QGIS.
- :class:`RunnerTask` runs a command of the CLI runner (training: ``python -m geedl_plugin train
  --progress jsonl``) in another interpreter, so torch never loads inside QGIS and a crash there
  cannot take QGIS down. Each JSON line becomes a signal on the main thread; cancel ends the
  process group (the runner's last checkpoint stays on disk).

``run()`` catches everything (as QGIS requires: an exception escaping ``run`` is lost or worse),
stores the message and traceback and returns False; ``finished()`` runs on the main thread and
emits ``succeeded`` / ``failed`` / ``cancelled`` there, which is where layers are added and
errors shown.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton

from ..core.errors import CancelledError, GeedlError
from ..core.progress import Feedback
from ..toolbelt.threads import call_in_python_thread

LOG_TAG = "geedl"


def log(message: str, level: Qgis.MessageLevel = Qgis.Info) -> None:
    """Write to the QGIS log panel under the plugin's tag (thread-safe)."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class CoreTask(QgsTask):
    """Run ``work(feedback)`` in a worker thread; ``result`` is what it returns."""

    succeeded = pyqtSignal(object)  # the result, on the main thread
    failed = pyqtSignal(str, str)  # user message, details (traceback or stderr)
    cancelled = pyqtSignal()
    message = pyqtSignal(str)  # info lines, queued to the main thread

    def __init__(self, description: str, work: Callable[[Feedback], Any]) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self._work = work
        self.result: Any = None
        self.error: str = ""
        self.details: str = ""
        self.was_cancelled = False

    def _store_exception(self, exc: BaseException) -> None:
        if isinstance(exc, CancelledError):
            self.was_cancelled = True
            self.error = str(exc)
        elif isinstance(exc, GeedlError):
            self.error = str(exc)
            self.details = traceback.format_exc()
        else:
            self.error = f"Unexpected error ({type(exc).__name__}: {exc}). See the geedl log for details."
            self.details = traceback.format_exc()

    def finished(self, ok: bool) -> None:  # noqa: D401 - Qt override, main thread
        if ok:
            log(f"{self.description()}: done in {self.elapsedTime() / 1000:.1f} s")
            self.succeeded.emit(self.result)
        elif self.was_cancelled or (self.isCanceled() and not self.error):
            log(f"{self.description()}: cancelled")
            self.cancelled.emit()
        else:
            log(f"{self.description()}: {self.error}\n{self.details}".rstrip(), Qgis.Critical)
            self.failed.emit(self.error or "The task failed.", self.details)

    def _run_work(self) -> None:
        try:
            self.result = self._work(self.feedback())
        except BaseException as exc:  # noqa: BLE001 - run() must never raise
            self._store_exception(exc)

    def feedback(self) -> Feedback:
        def on_progress(percent: float, _text: str) -> None:
            self.setProgress(percent)

        def on_message(text: str) -> None:
            log(f"{self.description()}: {text}")
            self.message.emit(text)

        return Feedback(on_progress=on_progress, on_message=on_message, is_cancelled=self.isCanceled)

    def run(self) -> bool:
        # not in the task manager's QThread: see toolbelt.threads (onnxruntime aborts there)
        call_in_python_thread(self._run_work, name=f"geedl {self.description()}")
        if self.error:
            return False
        if self.isCanceled():
            self.was_cancelled = True
            return False
        return True


class RunnerTask(CoreTask):
    """Run a CLI command in the runner interpreter (``toolbelt.runner.run_cli``).

    Every JSON line the command prints is re-emitted as ``line`` (queued to the main thread),
    which is how the Train step plots losses live. Cancel ends the subprocess group.
    """

    line = pyqtSignal(object)  # toolbelt.runner.RunnerEvent (not "event": QObject.event exists)

    def __init__(self, description: str, command: str, args: Sequence[str],
                 python: str | None = None) -> None:
        super().__init__(description, self._run_cli)
        self.command = command
        self.args = [str(a) for a in args]
        self.python = python

    def _run_cli(self, feedback: Feedback) -> Any:
        from ..toolbelt.runner import run_cli

        lower_thread_priority()  # the runner inherits it: training must not starve QGIS's UI
        log(f"{self.description()}: {self.command} {' '.join(self.args)}")
        return run_cli(self.command, self.args, feedback, python=self.python, on_event=self.line.emit)


def lower_thread_priority(niceness: int = 10) -> None:
    """Lower the priority of the calling thread, and so of the processes it starts.

    On Linux the nice value belongs to the thread (this is a worker thread of one task, which
    ends with it) and a child process inherits it. Elsewhere ``nice`` would apply to all of
    QGIS, so nothing is done there.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + niceness))
    except OSError:
        pass


class TaskRunner:
    """Starts tasks in QGIS's task manager and keeps them alive until they end.

    Holding the Python object matters: without it the wrapper of a running task can be
    collected and QGIS crashes when the thread calls back.
    """

    def __init__(self) -> None:
        self.active: list[QgsTask] = []

    def start(self, task: QgsTask) -> QgsTask:
        self.active.append(task)
        task.taskCompleted.connect(lambda: self._forget(task))
        task.taskTerminated.connect(lambda: self._forget(task))
        QgsApplication.taskManager().addTask(task)
        return task

    def _forget(self, task: QgsTask) -> None:
        if task in self.active:
            self.active.remove(task)

    def cancel_all(self) -> None:
        for task in list(self.active):
            task.cancel()

    def busy(self) -> bool:
        return bool(self.active)


def show_error(iface, title: str, message: str, details: str = "") -> None:
    """Message bar entry with a "Details" button that opens the full text and the log panel."""
    bar = iface.messageBar()
    widget = bar.createMessage(title, message)
    if details:
        button = QPushButton("Details", widget)

        def open_details() -> None:
            box = QMessageBox(QMessageBox.Critical, f"geedl: {title}", message, QMessageBox.Close,
                              iface.mainWindow())
            box.setDetailedText(details)
            box.setModal(False)
            box.show()
            try:
                iface.openMessageLog()
            except AttributeError:
                pass

        button.clicked.connect(open_details)
        widget.layout().addWidget(button)
    bar.pushWidget(widget, Qgis.Critical, 0)
    log(f"{title}: {message}\n{details}".rstrip(), Qgis.Critical)


def show_info(iface, title: str, message: str, level: Qgis.MessageLevel = Qgis.Info,
              duration: int = 8) -> None:
    iface.messageBar().pushMessage(title, message, level, duration)
    log(f"{title}: {message}", level)
