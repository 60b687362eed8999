"""What the dock's steps share: the current run, the files each step produced, tasks, messages.

Steps never talk to each other directly. Each one reads what it needs from the context
(``artifacts``: region file, composite, labels, model, ...) and records what it makes; the
context emits ``changed`` so the dock can enable the steps whose inputs now exist, and saves
itself in the project so a reopened project continues where the analyst stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMapLayer, QgsProject
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core.errors import GeedlError
from ..core.progress import Feedback
from ..toolbelt.settings import PluginSettings
from . import layers
from .forms import read_form, write_form
from .tasks import CoreTask, TaskRunner, log, show_error, show_info

# artifact keys, in workflow order
REGION = "region"
COMPOSITE = "composite"
EE_PREVIEW = "ee_preview"
MASK = "mask"
LABELS = "labels"
CHIPS = "chips"
MODEL = "model"
PREDICTION = "prediction"


class DockContext(QObject):
    changed = pyqtSignal()
    produced = pyqtSignal(str)  # an artifact key, when a step has just made it

    def __init__(self, iface, project: QgsProject | None = None) -> None:
        super().__init__()
        self.iface = iface
        self.project = project or QgsProject.instance()
        self.tasks = TaskRunner()
        self.run: layers.RunInfo | None = None
        self.artifacts: dict[str, Any] = {}
        self.restoring = False

    # -- settings and run ----------------------------------------------------------------------

    def settings(self) -> PluginSettings:
        return PluginSettings.load()

    def ensure_run(self) -> layers.RunInfo:
        if self.run is None or not Path(self.run.folder).is_dir():
            self.run = layers.RunInfo.create(self.settings().output_folder or None, self.project)
            log(f"new run {self.run.name} in {self.run.folder}")
        return self.run

    def new_run(self) -> None:
        self.run = None
        self.artifacts = {}
        self.changed.emit()

    def path(self, file_name: str) -> Path:
        return self.ensure_run().path(file_name)

    # -- artifacts -----------------------------------------------------------------------------

    def artifact(self, key: str) -> Any:
        return self.artifacts.get(key)

    def has(self, key: str) -> bool:
        value = self.artifacts.get(key)
        if isinstance(value, dict):
            value = value.get("path")
        return bool(value) and Path(str(value)).exists()

    def set_artifact(self, key: str, value: Any) -> None:
        self.artifacts[key] = value
        self.changed.emit()
        if not self.restoring:
            self.produced.emit(key)

    def add_layer(self, layer: QgsMapLayer, role: str) -> QgsMapLayer:
        return layers.add_layer(layer, self.ensure_run(), role, self.project)

    def layer(self, role: str) -> QgsMapLayer | None:
        return layers.layer_by_role(role, self.run, self.project)

    # -- tasks and messages --------------------------------------------------------------------

    def start(self, description: str, work: Callable[[Feedback], Any], on_done: Callable[[Any], None],
              title: str, on_end: Callable[[], None] | None = None) -> CoreTask:
        """Run ``work`` in a task; ``on_done(result)`` on the main thread; errors in the bar."""
        task = CoreTask(f"geedl: {description}", work)
        self._connect(task, on_done, title, on_end)
        self.tasks.start(task)
        return task

    def _connect(self, task, on_done, title: str, on_end) -> None:
        def succeeded(result: Any) -> None:
            try:
                on_done(result)
            except GeedlError as exc:
                self.error(title, str(exc))
            finally:
                if on_end:
                    on_end()

        def failed(message: str, details: str) -> None:
            self.error(title, message, details)
            if on_end:
                on_end()

        def cancelled() -> None:
            self.info(title, "Cancelled; nothing was written.", Qgis.Warning)
            if on_end:
                on_end()

        task.succeeded.connect(succeeded)
        task.failed.connect(failed)
        task.cancelled.connect(cancelled)

    def start_task(self, task, on_done, title: str, on_end=None):
        self._connect(task, on_done, title, on_end)
        self.tasks.start(task)
        return task

    def error(self, title: str, message: str, details: str = "") -> None:
        show_error(self.iface, f"geedl {title}", message, details)

    def info(self, title: str, message: str, level: Qgis.MessageLevel = Qgis.Info) -> None:
        show_info(self.iface, f"geedl {title}", message, level)

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The state to save; files inside the project's folder are stored relative to it, like
        the layers (QGIS's relative paths), so a moved or zipped project folder still continues."""
        return layers.portable_state(self.run, self.artifacts, self.project.homePath())

    def restore(self, data: dict[str, Any]) -> None:
        home = self.project.homePath()
        run = data.get("run")
        self.run = (layers.RunInfo(run["name"], layers.absolute_in(run["folder"], home))
                    if isinstance(run, dict) else None)
        artifacts = data.get("artifacts")
        artifacts = dict(artifacts) if isinstance(artifacts, dict) else {}
        self.artifacts = layers.map_artifact_paths(artifacts, lambda p: layers.absolute_in(p, home))
        self.changed.emit()


class Step(QWidget):
    """One page of the dock. Subclasses build ``self.body`` and register form widgets."""

    title = ""

    def __init__(self, ctx: DockContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.form: dict[str, QWidget] = {}
        self.unavailable = ""  # set when a dependency this step needs is missing
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.needs = QLabel("")
        self.needs.setWordWrap(True)
        self.needs.setStyleSheet("color: #a05000;")
        outer.addWidget(self.needs)
        self.body = QWidget()
        self.layout_ = QVBoxLayout(self.body)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.body)
        outer.addStretch(1)

    def missing(self) -> str:
        """What this step still needs from the earlier ones ('' when ready)."""
        return ""

    def refresh(self) -> None:
        """Re-evaluate what is enabled after the context changed."""
        need = self.missing()
        self.needs.setText(f"Needs {need}." if need else "")
        self.needs.setVisible(bool(need))

    def form_state(self) -> dict[str, Any]:
        return read_form(self.form)

    def restore_form(self, values: dict[str, Any]) -> None:
        write_form(self.form, values)

    def dependencies_missing(self, names: set[str]) -> None:
        """Called by the dock's dependency check with the missing distribution names."""

    def unload(self) -> None:
        """Release map tools and connections (plugin unload)."""
