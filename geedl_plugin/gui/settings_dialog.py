"""The settings dialog: a form over :class:`~geedl_plugin.toolbelt.settings.PluginSettings`.

Values are stored with QgsSettings by the dataclass itself; this dialog only edits them, and
checks the runner interpreter on demand (in a background task: importing torch takes seconds).
"""

from __future__ import annotations

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..toolbelt.settings import PluginSettings, default_runner_python
from .dependencies import probe_runner
from .tasks import CoreTask, TaskRunner


class SettingsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, settings: PluginSettings | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("geedl settings")
        self.settings = settings or PluginSettings.load()
        self.tasks = TaskRunner()
        form = QFormLayout()

        self.ee_project = QLineEdit(self.settings.ee_project)
        self.ee_project.setPlaceholderText("my-cloud-project (registered for Earth Engine)")
        form.addRow("Earth Engine project", self.ee_project)

        self.runner_python = QgsFileWidget()
        self.runner_python.setFilePath(self.settings.runner_python)
        self.runner_python.setDialogTitle("Python interpreter with torch")
        self.check_button = QPushButton("Check")
        self.check_button.setToolTip("Import torch in this interpreter (in the background)")
        self.check_button.clicked.connect(self.check_runner)
        row = QHBoxLayout()
        row.addWidget(self.runner_python, 1)
        row.addWidget(self.check_button)
        form.addRow("Python for training", row)
        self.runner_status = QLabel("")
        self.runner_status.setWordWrap(True)
        form.addRow("", self.runner_status)

        self.data_folder = self._folder_widget(self.settings.data_folder, "Folder with Sentinel-2 scenes")
        form.addRow("Scenes folder", self.data_folder)
        self.output_folder = self._folder_widget(self.settings.output_folder,
                                                 "Where runs are written (empty: beside the project)")
        form.addRow("Output folder", self.output_folder)

        self.tile_size = self._spin(self.settings.tile_size, 64, 8192, 64)
        form.addRow("Tile size (px)", self.tile_size)
        self.overlap = self._spin(self.settings.overlap, 0, 1024, 8)
        form.addRow("Tile overlap (px)", self.overlap)
        self.batch = self._spin(self.settings.batch, 1, 256, 1)
        form.addRow("Batch size", self.batch)

        buttons = QDialogButtonBox(
            QDialogButtonBox.Ok | QDialogButtonBox.Cancel | QDialogButtonBox.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    @staticmethod
    def _folder_widget(path: str, title: str) -> QgsFileWidget:
        widget = QgsFileWidget()
        widget.setStorageMode(QgsFileWidget.GetDirectory)
        widget.setDialogTitle(title)
        widget.setFilePath(path)
        return widget

    @staticmethod
    def _spin(value: int, low: int, high: int, step: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setValue(int(value))
        return spin

    def values(self) -> PluginSettings:
        return PluginSettings(
            ee_project=self.ee_project.text().strip(),
            runner_python=self.runner_python.filePath().strip() or default_runner_python(),
            data_folder=self.data_folder.filePath().strip(),
            output_folder=self.output_folder.filePath().strip(),
            tile_size=self.tile_size.value(), overlap=self.overlap.value(), batch=self.batch.value())

    def restore_defaults(self) -> None:
        defaults = PluginSettings()
        self.ee_project.setText(defaults.ee_project)
        self.runner_python.setFilePath(defaults.runner_python)
        self.data_folder.setFilePath(defaults.data_folder)
        self.output_folder.setFilePath(defaults.output_folder)
        self.tile_size.setValue(defaults.tile_size)
        self.overlap.setValue(defaults.overlap)
        self.batch.setValue(defaults.batch)

    def check_runner(self) -> None:
        python = self.runner_python.filePath().strip() or default_runner_python()
        self.runner_status.setText(f"Checking torch in {python} ...")
        self.check_button.setEnabled(False)
        task = CoreTask("geedl: check the training Python", lambda _fb: probe_runner(python))
        task.succeeded.connect(self._runner_checked)
        task.failed.connect(lambda message, _details: self._runner_checked((False, "", message)))
        self.tasks.start(task)

    def _runner_checked(self, result: tuple[bool, str, str]) -> None:
        present, version, detail = result
        self.check_button.setEnabled(True)
        self.runner_status.setText(f"torch {version}: training works." if present
                                   else f"No usable torch: {detail}")

    def accept(self) -> None:
        self.settings = self.values()
        self.settings.save()
        super().accept()

    def done(self, result: int) -> None:
        self.tasks.cancel_all()
        super().done(result)
