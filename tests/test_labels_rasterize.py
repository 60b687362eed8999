"""Label polygons -> class raster on a composite's exact grid, with the real OSM land-use polygons."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_labels import (  # noqa: F401
    brandenburg_composite,
    labels_dir,
    layer_features,
    osm_gpkg,
    read_mask,
    window_composite,
    write_polygons,
)
from osgeo import gdal, ogr, osr

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.labels.legend import IGNORE, Legend, LegendClass, read_legend
from geedl_plugin.core.labels.polygons import PolygonizeParams, run_polygonize
from geedl_plugin.core.labels.rasterize import RasterizeParams, rasterize_to_array, run_rasterize
from geedl_plugin.core.labels.rules import AutolabelParams, run_autolabel

OSM_CLASSES = ["farm", "forest", "grass", "meadow", "residential", "scrub", "water", "wetland"]


def _utm33() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs


def test_osm_text_field_is_enumerated_on_the_exact_grid(window_composite, osm_gpkg):  # noqa: F811
    array, legend = rasterize_to_array(osm_gpkg, window_composite, class_field="fclass")
    grid = gdal.Open(str(window_composite))
    assert array.shape == (grid.RasterYSize, grid.RasterXSize) and array.dtype == np.uint8
    assert [legend.names[i] for i in range(8)] == OSM_CLASSES
    counts = np.bincount(array.ravel(), minlength=256)
    assert counts[IGNORE] > 0 and (counts[:8] > 0).sum() >= 6  # unlabelled land stays ignore
    assert set(np.unique(array)) <= set(range(8)) | {IGNORE}


def test_class_map_keeps_only_mapped_values(window_composite, osm_gpkg):  # noqa: F811
    full, legend = rasterize_to_array(osm_gpkg, window_composite, class_field="fclass")
    mapped, mapped_legend = rasterize_to_array(
        osm_gpkg, window_composite, class_field="fclass", class_map={"water": 1, "farm": 2, "meadow": 2}
    )
    assert mapped_legend.names == {1: "water", 2: "farm/meadow"}
    ids = {name: cid for cid, name in legend.names.items()}
    for got, want in (
        (mapped == 1, full == ids["water"]),
        (mapped == 2, (full == ids["farm"]) | (full == ids["meadow"])),
    ):
        # OSM polygons overlap: a pixel claimed by two classes is ignore in one raster and may be
        # labelled in the other (farm over forest: ignore in full, farm when forest is unmapped)
        assert np.all(full[got & ~want] == IGNORE) and np.all(mapped[want & ~got] == IGNORE)
        assert (got != want).sum() < 0.02 * want.sum()
    assert np.all(mapped[np.isin(full, [ids["forest"], ids["residential"]])] == IGNORE)


def test_polygonize_rasterize_round_trip_is_exact(window_composite, tmp_path):  # noqa: F811
    mask = run_autolabel(AutolabelParams(window_composite, tmp_path / "cs.tif", "crop+soil")).path
    polygons = run_polygonize(PolygonizeParams(mask, tmp_path / "cs.gpkg", min_area_m2=0))
    array, legend = rasterize_to_array(polygons.path, window_composite)
    original = read_mask(mask)
    assert legend.names == {0: "other", 1: "crop", 2: "soil"}
    assert np.array_equal(array == 1, original == 1) and np.array_equal(array == 2, original == 2)
    assert np.all(array[original == 0] == IGNORE)  # the background was not vectorised


def test_rasterize_polygonize_round_trip_keeps_areas(window_composite, osm_gpkg, tmp_path):  # noqa: F811
    """OSM polygons -> pixels -> polygons: each area within one pixel width along its boundary."""
    array, _ = rasterize_to_array(
        osm_gpkg, window_composite, class_field="fclass", class_map={"water": 1, "forest": 2}
    )
    raster = tmp_path / "osm.tif"
    grid = gdal.Open(str(window_composite))
    out = gdal.GetDriverByName("GTiff").Create(
        str(raster), grid.RasterXSize, grid.RasterYSize, 1, gdal.GDT_Byte
    )
    out.SetGeoTransform(grid.GetGeoTransform())
    out.SetProjection(grid.GetProjection())
    out.GetRasterBand(1).SetNoDataValue(IGNORE)
    out.GetRasterBand(1).WriteArray(np.where(array == IGNORE, 0, array))
    out = None
    back = run_polygonize(PolygonizeParams(raster, tmp_path / "back.gpkg", min_area_m2=0))
    source = ogr.Open(str(osm_gpkg))
    layer = source.GetLayer(0)
    layer.SetAttributeFilter("fclass IN ('water', 'forest')")
    x0, dx, _, y0, _, dy = grid.GetGeoTransform()
    frame = ogr.CreateGeometryFromWkt(
        f"POLYGON(({x0} {y0},{x0 + dx * grid.RasterXSize} {y0},{x0 + dx * grid.RasterXSize} "
        f"{y0 + dy * grid.RasterYSize},{x0} {y0 + dy * grid.RasterYSize},{x0} {y0}))"
    )
    originals = [f.GetGeometryRef().Intersection(frame) for f in layer]
    originals = [g for g in originals if g is not None and g.GetArea() > 0]
    rows = layer_features(back.path)
    shapes = [ogr.CreateGeometryFromWkt(r["_wkt"]) for r in rows]
    checked = 0
    for original in originals:
        touching = [s for s in shapes if s.Intersects(original)]
        partners = [o for o in originals if touching and o.Intersects(touching[0])]
        if len(touching) != 1 or len(partners) != 1:
            continue  # adjoining polygons merge into one shape; compare isolated ones only
        perimeter = original.Boundary().Length()
        assert abs(touching[0].GetArea() - original.GetArea()) <= perimeter * abs(dx), original.GetArea()
        checked += 1
    assert checked >= 10
    total_original = sum(g.GetArea() for g in originals)
    total_perimeter = sum(g.Boundary().Length() for g in originals)
    assert abs(back.stats_all.total - total_original) <= 0.5 * total_perimeter * abs(dx)


def test_inward_buffer_labels_only_interiors(window_composite, osm_gpkg):  # noqa: F811
    plain, _ = rasterize_to_array(osm_gpkg, window_composite, class_field="fclass")
    shrunk, _ = rasterize_to_array(osm_gpkg, window_composite, class_field="fclass", inward_buffer_m=20)
    labelled, inner = plain != IGNORE, shrunk != IGNORE
    assert inner.sum() < 0.8 * labelled.sum()
    assert np.all(plain[inner] == shrunk[inner])  # interiors keep their class; no new pixels appear


def test_layer_in_another_crs_is_reprojected(window_composite, osm_gpkg, tmp_path):  # noqa: F811
    geographic = tmp_path / "osm_4326.gpkg"
    gdal.VectorTranslate(str(geographic), str(osm_gpkg), dstSRS="EPSG:4326", reproject=True)
    utm, _ = rasterize_to_array(osm_gpkg, window_composite, class_field="fclass")
    wgs, _ = rasterize_to_array(geographic, window_composite, class_field="fclass")
    assert (utm != wgs).mean() < 0.002  # only pixel centres right on a boundary may flip


def test_invalid_geometries_are_repaired_and_reported(window_composite, tmp_path):  # noqa: F811
    x0, _, _, y0, _, _ = gdal.Open(str(window_composite)).GetGeoTransform()
    bow_tie = (
        f"POLYGON(({x0 + 100} {y0 - 100},{x0 + 600} {y0 - 600},{x0 + 600} {y0 - 100},"
        f"{x0 + 100} {y0 - 600},{x0 + 100} {y0 - 100}))"
    )
    square = (
        f"POLYGON(({x0 + 1000} {y0 - 1000},{x0 + 1500} {y0 - 1000},{x0 + 1500} {y0 - 1500},{x0 + 1000} "
        f"{y0 - 1500},{x0 + 1000} {y0 - 1000}))"
    )
    path = write_polygons(
        tmp_path / "bad.gpkg", _utm33(), [(bow_tie, {"class_id": 1}), (square, {"class_id": 2})]
    )
    result = run_rasterize(RasterizeParams(path, window_composite, tmp_path / "bad.tif"))
    assert result.report.repaired == 1 and result.report.used == 2
    assert any("repaired" in w for w in result.warnings)
    array = read_mask(result.path)
    assert (array == 1).sum() > 0 and (array == 2).sum() == 50 * 50


def test_class_ids_outside_the_legend_are_a_clear_error(window_composite, tmp_path):  # noqa: F811
    mask = run_autolabel(AutolabelParams(window_composite, tmp_path / "w.tif", "water")).path
    polygons = run_polygonize(PolygonizeParams(mask, tmp_path / "w.gpkg"))
    dataset = ogr.Open(str(polygons.path), 1)  # an analyst types 7 into a feature
    layer = dataset.GetLayer(0)
    feature = layer.GetNextFeature()
    feature.SetField("class_id", 7)
    layer.SetFeature(feature)
    feature = layer = dataset = None
    out = tmp_path / "labels.tif"
    with pytest.raises(GeedlError, match=r"class id\(s\) 7 .*legend"):
        run_rasterize(RasterizeParams(polygons.path, window_composite, out))
    assert not out.exists()
    with pytest.raises(GeedlError, match="legend"):
        rasterize_to_array(polygons.path, window_composite, legend=Legend([LegendClass(1, "water")]))
    x0, _, _, y0, _, _ = gdal.Open(str(window_composite)).GetGeoTransform()
    square = f"POLYGON(({x0} {y0},{x0 + 50} {y0},{x0 + 50} {y0 - 50},{x0} {y0 - 50},{x0} {y0}))"
    big = write_polygons(tmp_path / "big.gpkg", _utm33(), [(square, {"class_id": 300})])
    with pytest.raises(GeedlError, match="outside 0..254"):
        rasterize_to_array(big, window_composite)
    with pytest.raises(GeedlError, match="no field 'kind'.*class_id"):
        rasterize_to_array(big, window_composite, class_field="kind")


def test_overlapping_classes_become_ignore(window_composite, tmp_path):  # noqa: F811
    x0, _, _, y0, _, _ = gdal.Open(str(window_composite)).GetGeoTransform()

    def square(a: int, b: int) -> str:
        return (
            f"POLYGON(({x0 + a} {y0 - a},{x0 + b} {y0 - a},{x0 + b} {y0 - b},{x0 + a} {y0 - b},"
            f"{x0 + a} {y0 - a}))"
        )

    path = write_polygons(
        tmp_path / "overlap.gpkg",
        _utm33(),
        [(square(0, 300), {"class_id": 1}), (square(200, 500), {"class_id": 2})],
    )
    array, _ = rasterize_to_array(path, window_composite)
    assert (array[20:30, 20:30] == IGNORE).all()  # 200..300 m: both classes claim it
    assert (array[:20, :20] == 1).all() and (array[30:50, 30:50] == 2).all()
    last, _ = rasterize_to_array(path, window_composite, overlap="last")
    assert (last[20:30, 20:30] == 2).all()


def test_run_rasterize_writes_the_grid_legend_and_backs_up(window_composite, osm_gpkg, tmp_path):  # noqa: F811
    out = tmp_path / "osm.tif"
    first = run_rasterize(
        RasterizeParams(osm_gpkg, window_composite, out, class_field="fclass", block_size=512)
    )
    dataset = gdal.Open(str(out))
    grid = gdal.Open(str(window_composite))
    assert dataset.GetGeoTransform() == grid.GetGeoTransform()
    assert dataset.GetProjection() == grid.GetProjection()
    assert read_legend(dataset).names == first.legend.names
    assert first.class_counts[first.legend.id_of("water")] > 0
    array, _ = rasterize_to_array(osm_gpkg, window_composite, class_field="fclass")
    assert np.array_equal(dataset.GetRasterBand(1).ReadAsArray(), array)  # windows == one piece
    dataset = None
    run_rasterize(RasterizeParams(osm_gpkg, window_composite, out, class_field="fclass"))
    assert len(list(tmp_path.glob("osm.bak-*.tif"))) == 1
