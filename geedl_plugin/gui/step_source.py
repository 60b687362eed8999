"""Step 2, Source and composite: scenes on disk or Earth Engine, one recipe, "Fetch" in a task.

The form builds a :class:`~geedl_plugin.core.recipe.CompositeRecipe` (validated on the main
thread: it is instant and its messages say what to change) and hands it to the core: local
scenes go to ``core.composite.build_composite``, Earth Engine to ``core.earthengine``. The
result is a GeoTIFF in the run folder, added as a false-colour layer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsRasterLayer
from qgis.PyQt.QtCore import QDate
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QRadioButton,
)

from ..core import samples
from ..core.composite import CompositeParams, build_composite
from ..core.errors import GeedlError
from ..core.indices import BUILTIN_INDICES
from ..core.raster_io import band_descriptions, open_raster
from ..core.recipe import DEFAULT_BANDS, REDUCERS, CompositeRecipe
from ..core.region import region_from_file
from . import layers
from .context import COMPOSITE, EE_PREVIEW, REGION, DockContext, Step
from .earthengine import EeRequest, decision_work, preview_work, rebuild_work
from .step_region import region_path
from .styles import percentile_stretch, rgb_band_indices, style_composite
from .tasks import RunnerTask
from .widgets import ProgressRow, grid_of

EE_COLLECTIONS = ("S2_SR", "S2", "L8", "L9")
EE_CLOUD_MASKS = ("auto", "qa60", "csplus", "scl", "qa_pixel", "none")


def ee_signed_in() -> bool:
    """Whether Earth Engine is initialised, without importing ``ee`` (a second on the UI thread)."""
    ee = sys.modules.get("ee")
    return bool(ee is not None and ee.data.is_initialized())


class SourceStep(Step):
    title = "2. Source and composite"

    def __init__(self, ctx: DockContext, parent=None) -> None:
        super().__init__(ctx, parent)
        mode_row = QHBoxLayout()
        self.local_radio = QRadioButton("Scenes on disk")
        self.ee_radio = QRadioButton("Earth Engine")
        self.local_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.local_radio)
        group.addButton(self.ee_radio)
        mode_row.addWidget(self.local_radio)
        mode_row.addWidget(self.ee_radio)
        self.layout_.addLayout(mode_row)

        self.local_box = self._local_box()
        self.ee_box = self._ee_box()
        self.layout_.addWidget(self.local_box)
        self.layout_.addWidget(self.ee_box)
        self.layout_.addWidget(self._recipe_box())
        self.fetch = ProgressRow("Fetch composite")
        self.fetch.button.clicked.connect(self.run_fetch)
        self.layout_.addLayout(self.fetch)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.layout_.addWidget(self.status)
        self.local_radio.toggled.connect(self._mode_changed)
        self._mode_changed()
        self.form.update({"mode_local": self.local_radio, "mode_ee": self.ee_radio})

    # -- form ----------------------------------------------------------------------------------

    def _local_box(self) -> QGroupBox:
        box = QGroupBox("Scenes")
        grid = QGridLayout(box)
        self.scene_list = QListWidget()
        self.scene_list.setMaximumHeight(70)
        self.scene_list.setToolTip("SAFE folders, folders of band files (*_B02.jp2) or multi-band GeoTIFFs; "
                                   "several scenes of one area are reduced per pixel")
        grid.addWidget(self.scene_list, 0, 0, 1, 3)
        add = QPushButton("Add folder...")
        add.clicked.connect(self.browse_scene)
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda: [self.scene_list.takeItem(self.scene_list.row(i))
                                        for i in self.scene_list.selectedItems()])
        self.sample_combo = QComboBox()
        self.sample_combo.setToolTip("Real Sentinel-2 sample scenes installed with the plugin's test data")
        for scene in samples.sample_scenes():
            self.sample_combo.addItem(f"Sample: {scene.name}", str(scene.path))
            self.sample_combo.setItemData(self.sample_combo.count() - 1, scene.description, 3)
        self.add_sample_button = add_sample = QPushButton("Add sample")
        add_sample.clicked.connect(self.add_sample)
        add_sample.setEnabled(self.sample_combo.count() > 0)
        grid.addWidget(add, 1, 0)
        grid.addWidget(remove, 1, 1)
        grid.addWidget(self.sample_combo, 2, 0, 1, 2)
        grid.addWidget(add_sample, 2, 2)
        self.form["scenes"] = self.scene_list
        return box

    def _ee_box(self) -> QGroupBox:
        box = QGroupBox("Earth Engine")
        form = QFormLayout(box)
        self.collection = QComboBox()
        for key in EE_COLLECTIONS:
            self.collection.addItem(key, key)
        form.addRow("Collection", self.collection)
        dates = QHBoxLayout()
        self.start_date = QDateEdit(QDate(2024, 1, 1))
        self.end_date = QDateEdit(QDate(2024, 1, 30))
        for edit in (self.start_date, self.end_date):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            dates.addWidget(edit)
        form.addRow("Dates (end excl.)", dates)
        self.max_cloud = QDoubleSpinBox()
        self.max_cloud.setRange(0, 100)
        self.max_cloud.setValue(1.0)  # document 000: CLOUDY_PIXEL_PERCENTAGE < 1
        self.max_cloud.setSuffix(" %")
        form.addRow("Max scene cloud", self.max_cloud)
        self.cloud_mask = QComboBox()
        for name in EE_CLOUD_MASKS:
            self.cloud_mask.addItem(name, name)
        form.addRow("Cloud mask", self.cloud_mask)
        self.ee_project = QLineEdit(self.ctx.settings().ee_project)
        self.ee_project.setPlaceholderText("Cloud project id registered for Earth Engine")
        form.addRow("Project", self.ee_project)
        sign_row = QHBoxLayout()
        self.ee_state = QLabel("not signed in")
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.clicked.connect(self.sign_in)
        sign_row.addWidget(self.ee_state, 1)
        sign_row.addWidget(self.sign_in_button)
        form.addRow("State", sign_row)
        self.preview_button = QPushButton("Preview layer")
        self.preview_button.setToolTip("Show the composite as an Earth Engine map layer (no download)")
        self.preview_button.clicked.connect(self.ee_preview)
        self.export_button = QPushButton("Export (batch)")
        self.export_button.setToolTip("For regions too large to download: an Earth Engine export task")
        self.export_button.clicked.connect(self.ee_export)
        row = QHBoxLayout()
        row.addWidget(self.preview_button)
        row.addWidget(self.export_button)
        form.addRow(row)
        self.form.update({"collection": self.collection, "start": self.start_date, "end": self.end_date,
                          "max_cloud": self.max_cloud, "cloud_mask": self.cloud_mask,
                          "ee_project": self.ee_project})
        return box

    def _recipe_box(self) -> QGroupBox:
        box = QGroupBox("Recipe")
        form = QFormLayout(box)
        self.bands = QLineEdit(",".join(DEFAULT_BANDS))
        form.addRow("Bands", self.bands)
        self.index_boxes: dict[str, QCheckBox] = {}
        for name, index in BUILTIN_INDICES.items():
            check = QCheckBox(name)
            check.setToolTip(f"{index.description}: {index.expression}")
            check.setChecked(name in ("NDVI", "HUE"))  # document 000
            self.index_boxes[name] = check
            self.form[f"index_{name}"] = check
        form.addRow("Indices", grid_of(list(self.index_boxes.values()), 3))
        self.custom_index = QLineEdit()
        self.custom_index.setPlaceholderText("optional: NAME=expression, e.g. WET=(B3-B11)/(B3+B11)")
        form.addRow("Own index", self.custom_index)
        reducer_row = QHBoxLayout()
        self.reducer = QComboBox()
        for name in REDUCERS:
            self.reducer.addItem(name, name)
        self.percentile = QDoubleSpinBox()
        self.percentile.setRange(0, 100)
        self.percentile.setValue(50)
        self.percentile.setPrefix("p")
        reducer_row.addWidget(self.reducer)
        reducer_row.addWidget(self.percentile)
        form.addRow("Reducer", reducer_row)
        self.scale = QDoubleSpinBox()
        self.scale.setRange(1, 10000)
        self.scale.setValue(10)
        self.scale.setSuffix(" m")
        form.addRow("Scale", self.scale)
        self.form.update({"bands": self.bands, "custom_index": self.custom_index, "reducer": self.reducer,
                          "percentile": self.percentile, "scale": self.scale})
        return box

    def _mode_changed(self) -> None:
        local = self.local_radio.isChecked()
        self.local_box.setVisible(local)
        self.ee_box.setVisible(not local)
        if not local:
            self.refresh_ee_state()

    # -- inputs --------------------------------------------------------------------------------

    def browse_scene(self) -> None:
        start = self.ctx.settings().data_folder or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Scene folder (SAFE, IMG_DATA or band files)", start)
        if folder:
            self.add_scene(folder)

    def add_scene(self, path: str) -> None:
        existing = [self.scene_list.item(i).text() for i in range(self.scene_list.count())]
        if path not in existing:
            self.scene_list.addItem(path)

    def add_sample(self) -> None:
        path = self.sample_combo.currentData()
        if path:
            self.add_scene(path)

    def scenes(self) -> list[str]:
        return [self.scene_list.item(i).text() for i in range(self.scene_list.count())]

    def recipe(self) -> CompositeRecipe:
        indices = [name for name, check in self.index_boxes.items() if check.isChecked()]
        if self.custom_index.text().strip():
            indices.append(self.custom_index.text().strip())
        return CompositeRecipe(bands=[b for b in self.bands.text().replace(" ", ",").split(",") if b],
                               indices=indices, reducer=self.reducer.currentData(),
                               percentile=self.percentile.value(), scale=self.scale.value())

    def missing(self) -> str:
        return "" if self.ctx.has(REGION) else "a region (step 1)"

    def refresh(self) -> None:
        super().refresh()
        if self.local_radio.isChecked() and not self.scenes() and self.sample_combo.count():
            self.status.setText("No scenes chosen: add a folder, or a sample scene to try the workflow.")

    # -- fetch (local) -------------------------------------------------------------------------

    def run_fetch(self) -> None:
        if self.ee_radio.isChecked():
            self.ee_fetch()
            return
        try:
            recipe = self.recipe()
            region = region_path(self.ctx)
        except GeedlError as exc:
            self.ctx.error("composite", str(exc))
            return
        scenes = self.scenes()
        if not scenes:
            self.ctx.error("composite", "Add at least one scene folder (or a sample scene) first.")
            return
        out = self.ctx.path("composite.tif")

        def work(feedback) -> dict[str, Any]:
            params = CompositeParams(scenes=scenes, recipe=recipe, out=out, region=region_from_file(region))
            result = build_composite(params, feedback)
            bands = rgb_band_indices(result.band_names)
            return {"path": str(result.path), "bands": result.band_names,
                    "stretch": percentile_stretch(result.path, sorted(set(bands))),
                    "summary": result.summary()}

        self.status.setText("Building the composite ...")
        task = self.ctx.start("composite", work, self._fetched, "composite", on_end=self.fetch.done)
        self.fetch.attach(task)

    def _fetched(self, result: dict[str, Any]) -> None:
        layer = layers.raster_layer(result["path"], "composite")
        shown = style_composite(layer, result["stretch"])
        self.ctx.add_layer(layer, COMPOSITE)
        self.ctx.set_artifact(COMPOSITE, {"path": result["path"], "bands": result["bands"]})
        summary = result.get("summary", {})
        self.status.setText(f"Composite {summary.get('size', '')}, bands {', '.join(result['bands'])}; "
                            f"shown as {'/'.join(shown)}.")

    # -- Earth Engine --------------------------------------------------------------------------

    def refresh_ee_state(self) -> None:
        self.ee_state.setText("signed in" if ee_signed_in() else "not signed in")

    def sign_in(self) -> None:
        from ..core.earthengine.connection import sign_in

        project = self.ee_project.text().strip() or self.ctx.settings().ee_project
        self.ee_state.setText("signing in (finish in the browser) ...")
        self.sign_in_button.setEnabled(False)

        def done(used_project: str) -> None:
            settings = self.ctx.settings()
            if settings.ee_project != used_project:
                settings.ee_project = used_project
                settings.save()
            self.ee_state.setText(f"signed in, project {used_project}")
            self.ctx.info("Earth Engine", f"Signed in with project {used_project}.", Qgis.Success)

        self.ctx.start("Earth Engine sign-in", lambda fb: sign_in(project, fb), done, "Earth Engine",
                       on_end=lambda: (self.sign_in_button.setEnabled(True), self.refresh_ee_state()))

    def ee_request(self) -> EeRequest:
        return EeRequest(region_path=region_path(self.ctx),
                         start=self.start_date.date().toString("yyyy-MM-dd"),
                         end=self.end_date.date().toString("yyyy-MM-dd"),
                         collection=self.collection.currentData(), max_cloud=self.max_cloud.value(),
                         cloud_mask=self.cloud_mask.currentData(),
                         project=self.ee_project.text().strip() or self.ctx.settings().ee_project)

    def ee_preview(self) -> None:
        try:
            recipe, request = self.recipe(), self.ee_request()
        except GeedlError as exc:
            self.ctx.error("Earth Engine", str(exc))
            return
        self.status.setText("Asking Earth Engine for the scenes and a map id ...")
        self.preview_button.setEnabled(False)
        self.ctx.start("Earth Engine preview", preview_work(recipe, request), self._previewed,
                       "Earth Engine", on_end=lambda: self.preview_button.setEnabled(True))

    def _previewed(self, result: dict[str, Any]) -> None:
        layer = QgsRasterLayer(result["uri"], f"Earth Engine composite ({result['vis']})", "wms")
        layer.setCustomProperty(layers.EE_OBJECT_PROPERTY, result["serialized"])
        self.ctx.add_layer(layer, EE_PREVIEW)
        summary = result["summary"]
        dates = summary.get("dates", [])
        self.status.setText(f"{summary.get('count', 0)} scene(s) on {len(dates)} date(s): "
                            f"{', '.join(dates[:8])}{' ...' if len(dates) > 8 else ''}.")
        self.refresh_ee_state()

    def rebuild_ee_layers(self) -> None:
        """Earth Engine preview layers of a reopened project get fresh tile URLs (tokens expire)."""
        stored = {layer.id(): layer.customProperty(layers.EE_OBJECT_PROPERTY)
                  for layer in layers.ee_layers(self.ctx.project)}
        if not stored:
            return
        project = self.ee_project.text().strip() or self.ctx.settings().ee_project
        self.ctx.start("refresh Earth Engine layers", rebuild_work(stored, project), self._rebuilt,
                       "Earth Engine")

    def _rebuilt(self, result: dict[str, dict[str, str]]) -> None:
        failed = []
        for layer_id, outcome in result.items():
            layer = self.ctx.project.mapLayer(layer_id)
            if layer is None:
                continue
            if "uri" in outcome:
                layers.set_data_source(layer, outcome["uri"], "wms")
            else:
                failed.append(f"{layer.name()}: {outcome['error']}")
        if failed:
            self.ctx.info("Earth Engine", "Some Earth Engine layers could not be refreshed; sign in "
                          "(step 2) and reopen the project. " + " ".join(failed), Qgis.Warning)
        self.refresh_ee_state()

    def ee_fetch(self) -> None:
        """Download when the grid is small enough, else say so and offer the export."""
        try:
            recipe, request = self.recipe(), self.ee_request()
        except GeedlError as exc:
            self.ctx.error("Earth Engine", str(exc))
            return

        def decided(decision) -> None:
            if decision.mode == "export":
                self.status.setText(f"<b>Too large to download</b> ({decision.reason}). Use "
                                    "\"Export (batch)\" to let Earth Engine write it to Drive.")
                self.ctx.info("Earth Engine", f"Too large to download: {decision.reason}. Use Export.",
                              Qgis.Warning)
                return
            self._ee_download(recipe, request, decision)

        self.ctx.start("Earth Engine size check", decision_work(recipe, request.region_path), decided,
                       "Earth Engine")

    def gee_arguments(self, recipe: CompositeRecipe, request: EeRequest) -> list[str]:
        """The ``composite --source gee`` command line of this form (the CLI does the download)."""
        builtin = [i for i in recipe.indices if "=" not in i]
        args = ["--source", "gee", "--region", request.region_path, "--start", request.start,
                "--end", request.end, "--collection", request.collection,
                "--max-cloud", f"{request.max_cloud:g}", "--cloud-mask", request.cloud_mask,
                "--bands", ",".join(recipe.bands), "--indices", ",".join(builtin),
                "--reducer", recipe.reducer, "--percentile", f"{recipe.percentile:g}",
                "--scale", f"{recipe.scale:g}", "--tile-size", str(self.ctx.settings().tile_size)]
        for index in recipe.indices:
            if "=" in index:
                args += ["--index", index]
        if request.project:
            args += ["--project", request.project]
        return args

    def _ee_download(self, recipe: CompositeRecipe, request: EeRequest, decision) -> None:
        out = self.ctx.path("composite.tif")
        args = self.gee_arguments(recipe, request) + ["--out", str(out)]
        task = RunnerTask("geedl: Earth Engine download", "composite", args,
                          python=self.ctx.settings().runner_python)
        task.message.connect(self.status.setText)
        self.status.setText(f"Downloading: {decision.reason} ...")
        self.ctx.start_task(task, lambda result: self._downloaded(out, result), "Earth Engine download",
                            on_end=self.fetch.done)
        self.fetch.attach(task)

    def _downloaded(self, out: Path, result: dict[str, Any]) -> None:
        def stretch(_feedback) -> dict[str, Any]:
            bands = band_descriptions(open_raster(out))
            return {"path": str(out), "bands": bands,
                    "stretch": percentile_stretch(out, sorted(set(rgb_band_indices(bands)))),
                    "summary": {"size": f"{result.get('scenes', '?')} scenes"}}

        self.ctx.start("style the composite", stretch, self._fetched, "composite")

    def ee_export(self) -> None:
        """A batch export to Drive (folder geedl) on the download grid, followed until it ends."""
        try:
            recipe, request = self.recipe(), self.ee_request()
        except GeedlError as exc:
            self.ctx.error("Earth Engine", str(exc))
            return
        run = self.ctx.ensure_run()
        description = "geedl_composite_" + Path(run.folder).name
        args = self.gee_arguments(recipe, request) + [
            "--export", "drive", "--folder", "geedl", "--description", description,
            "--out", str(self.ctx.path("composite-export.tif"))]
        task = RunnerTask("geedl: Earth Engine export", "composite", args,
                          python=self.ctx.settings().runner_python)
        task.message.connect(self.status.setText)
        self.export_button.setEnabled(False)

        def done(result: dict[str, Any]) -> None:
            status = result.get("status") or {}
            uris = ", ".join(status.get("destination_uris") or [])
            task_id = (result.get("export") or {}).get("task_id", "")
            self.status.setText(f"Export {task_id} {status.get('state', 'started')}. {uris}")
            self.ctx.info("Earth Engine", f"Export {task_id}: {status.get('state', 'started')} {uris}",
                          Qgis.Success)

        self.ctx.start_task(task, done, "Earth Engine export",
                            on_end=lambda: self.export_button.setEnabled(True))
