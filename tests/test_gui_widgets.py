"""Dependency check, settings dialog, expression builder, the loss plot and the dock's width."""

from __future__ import annotations

import stat
import sys

from fixtures_gui import dock_fixture, gui_settings_fixture, page_widths  # noqa: F401
from qgis.core import QgsSettings
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QImage, QPainter

from geedl_plugin.gui import dependencies
from geedl_plugin.gui.expression_builder import ExpressionBuilder
from geedl_plugin.gui.plot import LinePlot
from geedl_plugin.gui.settings_dialog import SettingsDialog
from geedl_plugin.gui.step_predict import PredictStep
from geedl_plugin.gui.step_train import TrainStep
from geedl_plugin.gui.widgets import DOCK_PAGE_WIDTH
from geedl_plugin.toolbelt.settings import PluginSettings


def test_dependency_check_real_and_missing(tmp_path):
    deps = {d.name: d for d in dependencies.check_all(sys.executable, timeout_s=60)}
    assert deps["torch"].present and deps["torch"].version.startswith("2.")
    assert deps["onnxruntime"].present and deps["earthengine-api"].present

    deps = {d.name: d for d in dependencies.check_all(str(tmp_path / "no-python"), timeout_s=5)}
    torch = deps["torch"]
    assert not torch.present and "does not exist" in torch.detail
    assert torch.install.startswith(str(tmp_path / "no-python") + " -m pip install torch==")
    assert "training" in torch.disables

    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    present, _, detail = dependencies.probe_runner(str(slow), timeout_s=0.5)
    assert not present and "more than" in detail


def test_dock_reports_missing_dependencies_and_disables_steps(qgis_iface, qgis_new_project, qtbot,
                                                               gui_settings, monkeypatch, tmp_path):
    from geedl_plugin.gui.dock import GeedlDock

    gui_settings.runner_python = str(tmp_path / "no-python")
    real = dependencies.find_in_process
    monkeypatch.setattr(dependencies, "find_in_process",
                        lambda module, dist: (False, "") if module == "onnxruntime" else real(module, dist))
    dock = GeedlDock(qgis_iface)
    qtbot.addWidget(dock)
    qtbot.waitUntil(lambda: bool(dock.dependencies), timeout=30000)
    text = dock.deps_label.text()
    assert "torch" in text and "onnxruntime" in text and "pip install onnxruntime==" in text
    train, predict = dock.step(TrainStep), dock.step(PredictStep)
    assert "torch is missing" in train.status.text() and not train.train_row.button.isEnabled()
    assert "onnxruntime is missing" in predict.model_info.text() and not predict.model_file.isEnabled()
    dock.unload()


def test_every_step_fits_a_narrow_dock(dock):
    for box in dock.findChildren(QgsCollapsibleGroupBox):  # measured open (Advanced, reference map)
        box.setCollapsed(False)
    widths = page_widths(dock)
    assert len(widths) == 5
    # before fit_narrow the Labels page needed 675 px (a 50-character rule description in a
    # drop-down) and Train 641 px: a dock of usual width hid the Cancel buttons
    assert max(widths.values()) <= DOCK_PAGE_WIDTH, widths


def test_train_advanced_options_reach_the_train_command(dock, tmp_path):
    from geedl_plugin.cli import command_parser
    from geedl_plugin.gui.context import COMPOSITE, LABELS

    dock.ctx.set_artifact(COMPOSITE, {"path": str(tmp_path / "composite.tif"), "bands": []})
    dock.ctx.set_artifact(LABELS, {"path": str(tmp_path / "labels.gpkg"), "field": "fclass",
                                   "classes": ["water", "farm"]})
    train = dock.step(TrainStep)
    parser = command_parser("train")
    out = tmp_path / "model.onnx"
    # the dock starts from the command's own defaults
    args = parser.parse_args(train.arguments(out, fast=False))
    chosen = (args.loss, args.keep, args.patience, args.balance, args.augment, args.device)
    assert chosen == ("auto", "best", 6, "auto", "all", "auto")
    assert train.patience.isEnabled()
    # and passes what the analyst chose, in values the command accepts
    for name, value in (("loss", "ce+lovasz"), ("keep", "last"), ("balance", "sampling"),
                        ("augment", "mirror"), ("device", "cpu")):
        train.advanced[name].setCurrentIndex(train.advanced[name].findData(value))
    assert not train.patience.isEnabled(), "no early stopping when the last epoch is kept"
    args = parser.parse_args(train.arguments(out, fast=False))
    chosen = (args.loss, args.keep, args.balance, args.augment, args.device)
    assert chosen == ("ce+lovasz", "last", "sampling", "mirror", "cpu")
    assert train.advanced["loss"].currentText() == "cross-entropy + Lovász (IoU)"
    assert {"loss", "keep", "balance", "augment", "device", "patience", "tune_threshold"} <= set(train.form)
    # a project saved when augmentation was a check box (off) turns it off again
    train.restore_form({"augment": False})
    assert parser.parse_args(train.arguments(out, fast=False)).augment == "none"


def test_train_tuned_threshold_offers_the_classes_being_trained(dock, tmp_path):
    from geedl_plugin.cli import command_parser
    from geedl_plugin.gui.context import COMPOSITE, LABELS

    dock.ctx.set_artifact(COMPOSITE, {"path": str(tmp_path / "composite.tif"), "bands": []})
    dock.ctx.set_artifact(LABELS, {"path": str(tmp_path / "labels.gpkg"), "field": "fclass",
                                   "classes": ["water", "farm"]})
    train = dock.step(TrainStep)
    train.refresh()
    parser = command_parser("train")
    out = tmp_path / "model.onnx"
    offered = [train.tune.itemData(i) for i in range(train.tune.count())]
    assert offered == ["", "water", "farm"]
    assert parser.parse_args(train.arguments(out, fast=False)).tune_threshold is None  # arg-max
    train.tune.setCurrentIndex(train.tune.findData("water"))
    train.tune.activated.emit(train.tune.currentIndex())  # as a click does
    assert parser.parse_args(train.arguments(out, fast=False)).tune_threshold == "water"
    train.other_class.setText("other")  # the class list changes: the choice stays
    assert train.tune.currentData() == "water" and train.tune.findData("other") > 0
    train.classes.setText("farm")  # water is no longer trained: back to arg-max
    assert train.tune.currentData() == ""
    # a project saved with a tuned class gets it back once its classes are offered
    train.restore_form({"tune_threshold": "water", "classes": "water,farm"})
    train.refresh()
    assert train.classes.text() == "water,farm" and train.tune.currentData() == "water"


def test_trained_status_says_which_epoch_was_kept():
    from geedl_plugin.gui.step_train import kept_epoch_text

    assert kept_epoch_text({"best_epoch": 10, "epochs_run": 10}) == ""  # the last one: nothing to say
    text = kept_epoch_text({"best_epoch": 7, "epochs_run": 13, "stopped_early": True})
    assert "kept epoch 7" in text and "stopped early" in text and "optimistic" in text


def test_settings_dialog_saves_to_qgssettings(qgis_app, qtbot):
    saved = PluginSettings.load()
    try:
        dialog = SettingsDialog(settings=PluginSettings(ee_project="old-project"))
        qtbot.addWidget(dialog)
        dialog.ee_project.setText("my-ee-project")
        dialog.tile_size.setValue(256)
        dialog.accept()
        assert QgsSettings().value("geedl/ee_project") == "my-ee-project"
        assert PluginSettings.load().tile_size == 256
    finally:
        saved.save()


def test_expression_builder_inserts_and_validates(qgis_app, qtbot):
    builder = ExpressionBuilder()
    qtbot.addWidget(builder)
    builder.set_bands(["B3", "B8", "B11", "NDVI"])
    buttons = builder.buttons
    assert buttons["&&"].text() == "&&&&", "shown as && (a single & would be a mnemonic)"
    for label in ("NDVI", ">"):
        qtbot.mouseClick(buttons[label], Qt.LeftButton)
    assert not builder.valid and builder.message.text()  # "NDVI >" is incomplete: error shown inline
    qtbot.keyClicks(builder.edit, "0.3 ")
    qtbot.mouseClick(buttons["&&"], Qt.LeftButton)
    qtbot.mouseClick(buttons["B11"], Qt.LeftButton)
    qtbot.mouseClick(buttons["<"], Qt.LeftButton)
    qtbot.keyClicks(builder.edit, "2000")
    assert builder.text() == "NDVI > 0.3 && B11 < 2000"
    assert builder.valid and "B11" in builder.message.text()
    builder.setText("NDVI > 0.3 && B12 < 2000")
    assert not builder.valid and "B12" in builder.message.text()
    builder.setText("__import__('os')")
    assert not builder.valid


def test_line_plot_paints_series(qgis_app, qtbot):
    plot = LinePlot()
    qtbot.addWidget(plot)
    plot.resize(320, 180)
    for epoch, (loss, iou) in enumerate([(1.2, 0.2), (0.8, 0.45), (0.5, 0.6)], start=1):
        plot.add_point("train loss", epoch, loss)
        plot.add_point("val mIoU", epoch, iou)
    plot.add_point("val mIoU", 4, float("nan"))  # ignored, not drawn
    assert not plot.series["train loss"].unit_interval and plot.series["val mIoU"].unit_interval
    assert len(plot.series["val mIoU"].points) == 3
    image = QImage(320, 180, QImage.Format_ARGB32)
    image.fill(0xFFFFFFFF)
    painter = QPainter(image)
    plot.render(painter)
    painter.end()
    blue = sum(1 for x in range(0, 320, 2) for y in range(0, 180, 2)
               if image.pixelColor(x, y).blue() > 150 and image.pixelColor(x, y).red() < 80)
    assert blue > 20, "the loss line is drawn"
