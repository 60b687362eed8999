"""The geedl dock: the whole workflow, region -> composite -> labels -> model -> map, in one panel.

Steps are pages of a QToolBox, in order. A step is enabled when what it needs from the earlier
ones exists (its title says what is missing otherwise). Everything slow runs in QgsTasks (see
:mod:`.tasks`); the dock only builds forms, starts tasks and adds their results as layers.
The dock's state (current run, what each step produced, form values) is written into the
project, and restored, together with Earth Engine preview layers, when the project is read.
"""

from __future__ import annotations

import html
from typing import Any

from qgis.core import Qgis, QgsProject
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPushButton, QScrollArea, QToolBox, QVBoxLayout, QWidget

from . import layers
from .context import COMPOSITE, LABELS, MODEL, REGION, DockContext, Step
from .dependencies import check_all, missing, report_html, warm_up
from .settings_dialog import SettingsDialog
from .step_labels import LabelsStep
from .step_predict import PredictStep
from .step_region import RegionStep
from .step_source import SourceStep
from .step_train import TrainStep
from .widgets import fit_narrow

DOCK_OBJECT_NAME = "GeedlDock"


class GeedlDock(QgsDockWidget):
    def __init__(self, iface, parent: QWidget | None = None, check_dependencies: bool = True) -> None:
        super().__init__("geedl", parent)
        self.setObjectName(DOCK_OBJECT_NAME)
        self.iface = iface
        self.ctx = DockContext(iface)
        self.dependencies: list = []

        content = QWidget()
        outer = QVBoxLayout(content)
        outer.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.run_label = QLabel("")
        self.run_label.setWordWrap(True)
        self.new_run_button = QPushButton("New run")
        self.new_run_button.setToolTip("Start a new layer group and output folder for the next results")
        self.new_run_button.clicked.connect(self.ctx.new_run)
        self.settings_button = QPushButton("Settings")
        self.settings_button.clicked.connect(self.open_settings)
        top.addWidget(self.run_label, 1)
        top.addWidget(self.new_run_button)
        top.addWidget(self.settings_button)
        outer.addLayout(top)
        self.deps_label = QLabel("Checking dependencies ...")
        self.deps_label.setWordWrap(True)
        self.deps_label.setVisible(check_dependencies)
        outer.addWidget(self.deps_label)

        self.toolbox = QToolBox()
        self.steps: list[Step] = [RegionStep(self.ctx), SourceStep(self.ctx), LabelsStep(self.ctx),
                                  TrainStep(self.ctx), PredictStep(self.ctx)]
        for step in self.steps:
            fit_narrow(step)
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(step)
            self.toolbox.addItem(scroll, step.title)
        outer.addWidget(self.toolbox, 1)
        self.setWidget(content)

        self.ctx.changed.connect(self.refresh)
        self.ctx.changed.connect(self.save_state)
        self.ctx.produced.connect(self.open_next_step)
        project = QgsProject.instance()
        project.readProject.connect(self.on_project_read)
        project.writeProject.connect(self.on_project_write)
        project.cleared.connect(self.on_project_cleared)
        project.layersAdded.connect(self._layers_changed)
        project.layersRemoved.connect(self._layers_changed)
        self._connected = True
        self.refresh()
        if check_dependencies:
            QTimer.singleShot(0, self.check_dependencies)

    # -- steps ---------------------------------------------------------------------------------

    def step(self, cls: type) -> Any:
        return next(step for step in self.steps if isinstance(step, cls))

    def refresh(self) -> None:
        run = self.ctx.run
        self.run_label.setText(
            f"Run: <b>{html.escape(run.name)}</b>" if run else "No run yet: start with a region."
        )
        for index, step in enumerate(self.steps):
            step.refresh()
            need = step.missing()
            self.toolbox.setItemEnabled(index, not need)
            self.toolbox.setItemText(index, step.title + (f"  \u2013 needs {need}" if need else ""))
            self.toolbox.setItemToolTip(index, f"Needs {need}" if need else "")

    def open_next_step(self, key: str) -> None:
        """Region drawn -> open Source; composite -> Labels; labels -> Train; model -> Predict."""
        following = {REGION: 1, COMPOSITE: 2, LABELS: 3, MODEL: 4}.get(key)
        if following is not None and self.toolbox.isItemEnabled(following):
            self.toolbox.setCurrentIndex(following)

    def _layers_changed(self, *_args) -> None:
        if not self.ctx.restoring:
            self.refresh()

    def open_settings(self) -> None:
        dialog = SettingsDialog(self)
        if dialog.exec_():
            self.ctx.info("settings", "Settings saved.")

    # -- dependencies --------------------------------------------------------------------------

    def check_dependencies(self) -> None:
        python = self.ctx.settings().runner_python
        self.ctx.start("dependency check", lambda _fb: warm_up(check_all(python)), self._dependencies_checked,
                       "dependencies")

    def _dependencies_checked(self, deps: list) -> None:
        self.dependencies = deps
        absent = missing(deps)
        if not absent:
            self.deps_label.setText("Dependencies: " + ", ".join(d.summary for d in deps))
            self.deps_label.setVisible(False)
            return
        self.deps_label.setText("<b>Missing dependencies</b>" + report_html(absent))
        self.deps_label.setVisible(True)
        names = ", ".join(d.name for d in absent)
        self.ctx.info("dependencies", f"Missing: {names}. The dock lists what each disables and how to "
                      "install it.", Qgis.Warning)
        for step in self.steps:
            step.dependencies_missing({d.name for d in absent})

    # -- project -------------------------------------------------------------------------------

    def save_state(self) -> None:
        if self.ctx.restoring:
            return
        state = self.ctx.to_dict()
        state["forms"] = {type(step).__name__: step.form_state() for step in self.steps}
        layers.save_state(state)

    def on_project_write(self, *_args) -> None:
        """QGIS writes project entries after this signal, so the state lands in this save."""
        self.save_state()

    def on_project_read(self, *_args) -> None:
        state = layers.load_state()
        self.ctx.restoring = True
        try:
            for step in self.steps:
                step.restore_form(state.get("forms", {}).get(type(step).__name__, {}))
            self.ctx.restore(state)
        finally:
            self.ctx.restoring = False
        self.refresh()
        source = self.step(SourceStep)
        source.rebuild_ee_layers()

    def on_project_cleared(self) -> None:
        self.ctx.restoring = True
        try:
            self.ctx.new_run()
        finally:
            self.ctx.restoring = False
        self.refresh()

    # -- unload --------------------------------------------------------------------------------

    def unload(self) -> None:
        """Cancel tasks, remove map tools and disconnect from the project (plugin unload)."""
        self.ctx.tasks.cancel_all()
        for step in self.steps:
            step.unload()
        if self._connected:
            project = QgsProject.instance()
            for signal, slot in ((project.readProject, self.on_project_read),
                                 (project.writeProject, self.on_project_write),
                                 (project.cleared, self.on_project_cleared),
                                 (project.layersAdded, self._layers_changed),
                                 (project.layersRemoved, self._layers_changed)):
                try:
                    signal.disconnect(slot)
                except TypeError:
                    pass
            self._connected = False

