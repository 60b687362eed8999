"""Request bodies captured at the REST boundary: what earthengine-api 1.7.50 would send.

The Cloud API resource is replaced by a mock (``apitestcase.UsingCloudApi``), so the real
library builds and encodes every request: computePixels for download tiles, maps.create for
previews, image/table exports, operations.get for task status, value.compute for the scene
summary. The computePixels mock answers with real GeoTIFFs cut for the requested grid, so the
whole download path (ee_fetcher -> downloader -> stitched file) runs through the real client.
"""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
from ee import apitestcase
from ee_harness import PROJECT, Graph, no_network, offline_ee
from osgeo import gdal, osr

from geedl_plugin.core.earthengine import export, masks, preview
from geedl_plugin.core.earthengine.collections import scene_summary
from geedl_plugin.core.earthengine.compile import DOWNLOAD_FILL, compile_recipe
from geedl_plugin.core.earthengine.download import download, ee_fetcher
from geedl_plugin.core.earthengine.query import SceneQuery
from geedl_plugin.core.earthengine.tiling import plan_tiles
from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.progress import Feedback
from geedl_plugin.core.recipe import CompositeRecipe

gdal.UseExceptions()
REGION = [13.00, 52.40, 13.03, 52.42]


@pytest.fixture(scope="module", autouse=True)
def offline():
    with offline_ee() as ee:
        yield ee


@pytest.fixture(scope="module")
def compiled():
    query = SceneQuery(region=REGION, start="2024-06-01", end="2024-07-01", collection="S2_SR",
                       max_cloud=10, cloud_mask="scl")
    return compile_recipe(CompositeRecipe(bands=["B3", "B4", "B8"], indices=["NDVI"]), query)


def geotiff_for(body: dict) -> bytes:
    """What computePixels would return for ``body``: a GeoTIFF on exactly the requested grid,
    pixel value = 1000 * band number + row, with the fill value in the first column."""
    grid = body["grid"]
    width, height = grid["dimensions"]["width"], grid["dimensions"]["height"]
    a = grid["affineTransform"]
    path = f"/vsimem/cp_{id(body)}.tif"
    ds = gdal.GetDriverByName("GTiff").Create(path, width, height, len(body["bandIds"]), gdal.GDT_Float32)
    ds.SetGeoTransform((a["translateX"], a["scaleX"], a["shearX"], a["translateY"], a["shearY"], a["scaleY"]))
    srs = osr.SpatialReference()
    srs.SetFromUserInput(grid["crsCode"])
    ds.SetProjection(srs.ExportToWkt())
    for i, _ in enumerate(body["bandIds"]):
        values = np.tile((1000.0 * (i + 1) + np.arange(height, dtype=np.float32))[:, None], (1, width))
        values[:, 0] = DOWNLOAD_FILL["float32"]
        ds.GetRasterBand(i + 1).WriteArray(values)
    ds = None
    data = bytes(gdal.VSIFReadL(1, gdal.VSIStatL(path).size, gdal.VSIFOpenL(path, "rb")))
    gdal.Unlink(path)
    return data


def test_computepixels_request_body_and_download_through_the_client(compiled, tmp_path):
    raw = mock.MagicMock()
    bodies: list[dict] = []

    def compute_pixels(project, body):
        bodies.append(body)
        request = mock.MagicMock()
        request.execute.return_value = geotiff_for(body)
        return request

    raw.projects().image().computePixels.side_effect = compute_pixels
    grid = compiled.grid()
    plan = plan_tiles(grid, compiled.band_names, "float32", tile_size=128)
    with apitestcase.UsingCloudApi(cloud_api_resource=mock.MagicMock(), cloud_api_resource_raw=raw):
        result = download(plan, ee_fetcher(compiled.download_image()), tmp_path / "c.tif",
                          metadata=compiled.metadata(), workers=2,
                          fill_value=DOWNLOAD_FILL["float32"])
    assert len(bodies) == len(plan.tiles) == result.tiles_fetched > 1
    call = raw.projects().image().computePixels.call_args
    assert call.kwargs["project"] == f"projects/{PROJECT}"
    first = min(bodies, key=lambda b: (-b["grid"]["affineTransform"]["translateY"],
                                       b["grid"]["affineTransform"]["translateX"]))
    assert first["fileFormat"] == "GEO_TIFF"
    assert first["bandIds"] == ["B3", "B4", "B8", "NDVI"]
    assert first["grid"]["crsCode"] == "EPSG:32633"
    assert first["grid"]["dimensions"] == {"width": min(128, grid.width), "height": min(128, grid.height)}
    assert first["grid"]["affineTransform"] == {"scaleX": 10.0, "shearX": 0.0, "translateX": grid.x0,
                                                "shearY": 0.0, "scaleY": -10.0, "translateY": grid.y0}
    g = Graph(first["expression"])
    unmask = g.one("Image.unmask")
    assert unmask.arg("value").arg("value") == DOWNLOAD_FILL["float32"]
    assert unmask.arg("sameFootprint") is False
    assert g.find("Image.clip") and g.find("Image.normalizedDifference")

    ds = gdal.Open(str(result.path))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (grid.width, grid.height, 4)
    assert ds.GetGeoTransform() == grid.geotransform
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(4)] == compiled.band_names
    assert json.loads(ds.GetMetadataItem("GEEDL_RECIPE"))["indices"] == ["NDVI"]
    band2 = ds.GetRasterBand(2).ReadAsArray()
    assert np.isnan(ds.GetRasterBand(2).GetNoDataValue())
    # every tile's first column was the fill value -> NaN; elsewhere 2000 + row within the tile
    rows = np.arange(grid.height) % plan.tile_size
    for tile in plan.tiles:
        assert np.isnan(band2[tile.row_off:tile.row_off + tile.height, tile.col_off]).all()
    inside = np.ones_like(band2, dtype=bool)
    for tile in plan.tiles:
        inside[:, tile.col_off] = False
    assert np.array_equal(band2[inside], np.broadcast_to((2000.0 + rows)[:, None], band2.shape)[inside])


def test_getmapid_request_and_rebuilt_url(compiled):
    resource = mock.MagicMock()
    resource.projects().maps().create().execute.return_value = {
        "name": f"projects/{PROJECT}/maps/abc123"}
    vis = preview.vis_for("false_colour", compiled.band_names + ["B11"])
    image = compiled.image.addBands(compiled.image.select("B8").rename("B11"))
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        url, serialized = preview.tile_url(image, vis)
        first = resource.projects().maps().create.call_args.kwargs
        rebuilt = preview.rebuild_tile_url(serialized)
        second = resource.projects().maps().create.call_args.kwargs
    # offline the tile base URL is '' (ee.Initialize(None, '') as in the library's tests)
    assert url.endswith(f"/v1/projects/{PROJECT}/maps/abc123/tiles/{{z}}/{{x}}/{{y}}")
    assert rebuilt == url
    assert first["parent"] == f"projects/{PROJECT}"
    body = first["body"]
    g = Graph(body["expression"])
    visualize = g.one("Image.visualize")
    assert visualize.arg("bands") == ["B11", "B8", "B3"]
    assert visualize.arg("max") == [4500, 5000, 3000]
    assert body["expression"] == second["body"]["expression"], "the stored layer rebuilds the same map"
    assert json.loads(serialized)["vis"]["bands"] == ["B11", "B8", "B3"]
    uri = preview.qgis_xyz_uri("https://earthengine.googleapis.com" + url)
    assert uri.startswith("type=xyz&url=https://earthengine.googleapis.com/") and "{z}/{x}/{y}" in uri


def test_mask_and_index_previews_need_their_bands(compiled):
    assert preview.vis_for("index:NDVI", compiled.band_names).palette
    with pytest.raises(GeedlError, match="B11"):
        preview.vis_for("false_colour", compiled.band_names)
    with pytest.raises(GeedlError, match="Unknown preview"):
        preview.vis_for("rainbow", compiled.band_names)
    with pytest.raises(GeedlError, match="cannot be read"):
        preview.rebuild_tile_url("{not json")


def test_image_export_to_drive_uses_the_download_grid(compiled):
    resource = mock.MagicMock()
    resource.projects().image().export().execute.return_value = {
        "name": f"projects/{PROJECT}/operations/TASK1", "metadata": {}}
    grid = compiled.grid()
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        task = export.export_image(compiled.image, grid, "S2 bands/Senegal",
                                   export.ExportTarget("drive", folder="Senegal_DeepLearning"))
    assert task.task_id == "TASK1" and task.description == "S2_bands_Senegal"
    body = resource.projects().image().export.call_args.kwargs["body"]
    assert body["description"] == "S2_bands_Senegal"
    assert body["fileExportOptions"]["fileFormat"] == "GEO_TIFF"
    assert body["fileExportOptions"]["driveDestination"]["folder"] == "Senegal_DeepLearning"
    assert body["fileExportOptions"]["geoTiffOptions"]["cloudOptimized"] is True
    assert body["fileExportOptions"]["geoTiffOptions"]["noData"] == {"floatValue": export.EXPORT_FILL}
    assert int(body["maxPixels"]["value"]) == int(1e13)
    # earthengine-api 1.7.50 puts the exact grid into the expression: reproject to crs +
    # crsTransform, then clipToBoundsAndScale to a 0,0,W,H rectangle in that projection
    g = Graph(body["expression"])
    reproject = g.one("Image.reproject")
    assert reproject.arg("crs").arg("crs") == grid.crs
    assert reproject.arg("crsTransform") == [grid.scale, 0, grid.x0, 0, -grid.scale, grid.y0]
    rectangle = g.one("Image.clipToBoundsAndScale").arg("geometry")
    assert rectangle.arg("coordinates") == [0, 0, grid.width, grid.height]
    assert Graph(body["expression"]).find("Image.toFloat")


def test_table_export_of_label_polygons(compiled):
    resource = mock.MagicMock()
    resource.projects().table().export().execute.return_value = {
        "name": f"projects/{PROJECT}/operations/TASK2", "metadata": {}}
    crop = masks.crop_mask(compiled.image.addBands(compiled.image.select("NDVI").rename("HUE")),
                           compiled.band_names + ["HUE"])
    polygons = masks.label_polygons(crop, compiled.query.region)
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        task = export.export_table(polygons, "vector_DeepLearning_Senegal_Nord",
                                   export.ExportTarget("drive", folder="labels_Data"))
    assert task.kind == "table" and task.task_id == "TASK2"
    body = resource.projects().table().export.call_args.kwargs["body"]
    assert body["description"] == "vector_DeepLearning_Senegal_Nord"
    assert body["fileExportOptions"]["fileFormat"] == "GEO_JSON"
    assert body["fileExportOptions"]["driveDestination"]["folder"] == "labels_Data"
    g = Graph(body["expression"])
    assert g.one("Image.reduceToVectors").arg("scale") == 10.0
    assert g.one("Filter.greaterThan").arg("rightValue") == 3000.0


def test_asset_and_gcs_targets_need_their_names():
    with pytest.raises(GeedlError, match="bucket"):
        export.ExportTarget("gcs")
    with pytest.raises(GeedlError, match="asset"):
        export.ExportTarget("asset")
    with pytest.raises(GeedlError, match="drive, gcs or asset"):
        export.ExportTarget("dropbox")


def test_task_polling_reports_progress_and_failures():
    resource = mock.MagicMock()
    states = iter([
        {"name": "projects/p/operations/T", "metadata": {"state": "PENDING"}},
        {"name": "projects/p/operations/T", "metadata": {"state": "RUNNING", "progress": 0.5}},
        {"name": "projects/p/operations/T", "done": True,
         "metadata": {"state": "SUCCEEDED", "progress": 1.0, "destinationUris": ["https://drive"]}},
    ])
    resource.projects().operations().get().execute.side_effect = lambda **_: next(states)
    seen: list[float] = []
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        status = export.poll_task("T", Feedback(on_progress=lambda p, m: seen.append(p)),
                                  interval_s=0.01)
        name = resource.projects().operations().get.call_args.kwargs["name"]
    assert name == f"projects/{PROJECT}/operations/T"
    assert status["state"] == "SUCCEEDED" and status["destination_uris"] == ["https://drive"]
    assert seen == [0.0, 50.0, 100.0]

    failing = mock.MagicMock()
    failing.projects().operations().get().execute.return_value = {
        "name": "projects/p/operations/T", "done": True,
        "metadata": {"state": "FAILED"}, "error": {"message": "User memory limit exceeded."}}
    with apitestcase.UsingCloudApi(cloud_api_resource=failing):
        with pytest.raises(GeedlError, match="memory limit"):
            export.poll_task("T", interval_s=0.01)

    running = mock.MagicMock()
    running.projects().operations().get().execute.return_value = {
        "name": "projects/p/operations/T", "metadata": {"state": "RUNNING", "progress": 0.1}}
    with apitestcase.UsingCloudApi(cloud_api_resource=running):
        with pytest.raises(CancelledError, match="keeps running"):
            export.poll_task("T", Feedback(is_cancelled=lambda: True), interval_s=0.01)


def test_scene_summary_and_empty_collection(compiled):
    query = compiled.query
    empty = mock.MagicMock()
    empty.projects().value().compute().execute.return_value = {
        "result": {"count": 0, "ids": [], "times": [], "cloud": []}}
    with apitestcase.UsingCloudApi(cloud_api_resource=empty):
        with pytest.raises(GeedlError, match="No S2_SR scene.*2024-06-01.*2024-07-01.*max-cloud"):
            scene_summary(query)
        body = empty.projects().value().compute.call_args.kwargs["body"]
    g = Graph(body["expression"])
    assert g.find("Collection.size")
    assert {c.arg("property") for c in g.find("AggregateFeatureCollection.array")} >= {
        "system:index", "system:time_start", "CLOUDY_PIXEL_PERCENTAGE"}

    found = mock.MagicMock()
    found.projects().value().compute().execute.return_value = {"result": {
        "count": 2, "ids": ["20240603T101559_20240603T101602_T33UUU", "x"],
        "times": [1717409759000, 1717841759000], "cloud": [0.4, 0.8]}}
    with apitestcase.UsingCloudApi(cloud_api_resource=found):
        summary = scene_summary(query)
    assert summary["count"] == 2 and summary["dates"] == ["2024-06-03", "2024-06-08"]


def test_server_errors_become_clear_messages(compiled):
    import googleapiclient.errors
    import httplib2

    resource = mock.MagicMock()
    response = httplib2.Response({"status": 403})
    content = json.dumps({"error": {"code": 403, "message": "Project 'projects/geedl-test' is not "
                                    "registered to use Earth Engine."}}).encode()
    resource.projects().value().compute().execute.side_effect = googleapiclient.errors.HttpError(
        response, content)
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        with pytest.raises(GeedlError, match="register the project"):
            scene_summary(compiled.query)


# -- the CLI, end to end through the mocked REST boundary ---------------------------------------

def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from geedl_plugin.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


GEE_ARGS = ["composite", "--source", "gee", "--bbox", "13.0,52.4,13.02,52.41,EPSG:4326",
            "--start", "2024-06-01", "--end", "2024-07-01", "--collection", "S2_SR",
            "--bands", "B4,B8", "--indices", "NDVI", "--project", PROJECT, "--progress", "jsonl",
            "--tile-size", "100"]


def test_cli_composite_download_end_to_end(tmp_path, capsys, monkeypatch):
    from geedl_plugin.core.earthengine import connection

    monkeypatch.setattr(connection, "initialize", lambda project: project)  # stay offline
    resource, raw = mock.MagicMock(), mock.MagicMock()
    resource.projects().value().compute().execute.return_value = {"result": {
        "count": 1, "ids": ["20240603T101559_20240603T101602_T33UUU"], "times": [1717409759000],
        "cloud": [0.2]}}
    raw.projects().image().computePixels.side_effect = lambda project, body: mock.MagicMock(
        **{"execute.return_value": geotiff_for(body)})
    out = tmp_path / "gee.tif"
    with no_network(), apitestcase.UsingCloudApi(cloud_api_resource=resource, cloud_api_resource_raw=raw):
        code, stdout, _ = _cli(GEE_ARGS + ["--out", str(out)], capsys)
    assert code == 0
    lines = [json.loads(line) for line in stdout.splitlines()]
    result = lines[-1]
    assert result["type"] == "result" and result["scenes"] == 1 and result["dates"] == ["2024-06-03"]
    assert result["bands"] == ["B4", "B8", "NDVI"]
    assert any(line.get("type") == "message" and "1 S2_SR scenes" in line["message"] for line in lines)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (result["grid"]["width"], result["grid"]["height"])
    assert json.loads(ds.GetMetadataItem("GEEDL_RECIPE"))["crs"] == "EPSG:32633"
    assert json.loads(ds.GetMetadataItem("GEEDL_SCENES"))[0]["date"] == "2024-06-03"
    assert raw.projects().image().computePixels.call_count == result["tiles_total"] >= 2


def test_cli_region_too_large_offers_export_before_any_request(tmp_path, capsys, monkeypatch):
    from geedl_plugin.core.earthengine import connection

    monkeypatch.setattr(connection, "initialize", lambda project: pytest.fail("no connection"))
    args = [a if a != "13.0,52.4,13.02,52.41,EPSG:4326" else "9.0,50.0,15.0,54.0,EPSG:4326"
            for a in GEE_ARGS]
    with no_network():
        code, _, err = _cli(args + ["--out", str(tmp_path / "big.tif")], capsys)
    assert code == 2
    assert "too large to download" in err and "--export drive" in err


def test_cli_empty_collection_and_bad_input(tmp_path, capsys, monkeypatch):
    from geedl_plugin.core.earthengine import connection

    monkeypatch.setattr(connection, "initialize", lambda project: project)
    resource = mock.MagicMock()
    resource.projects().value().compute().execute.return_value = {"result": {
        "count": 0, "ids": [], "times": [], "cloud": []}}
    with no_network(), apitestcase.UsingCloudApi(cloud_api_resource=resource):
        code, _, err = _cli(GEE_ARGS + ["--out", str(tmp_path / "none.tif")], capsys)
    assert code == 2 and "No S2_SR scene" in err and "Widen the dates" in err
    assert not (tmp_path / "none.tif").exists()

    for collection, bands, missing in (("L8", "B4,B5", "B5"), ("S2_SR", "B4,B10", "B10")):
        args = list(GEE_ARGS)
        args[args.index("--collection") + 1] = collection
        args[args.index("--bands") + 1] = bands
        code, _, err = _cli(args + ["--out", str(tmp_path / "x.tif")], capsys)
        assert code == 2 and f"{missing} does not exist in {collection}" in err
    code, _, err = _cli([a if a != "2024-07-01" else "2024-05-01" for a in GEE_ARGS]
                        + ["--out", str(tmp_path / "x.tif")], capsys)
    assert code == 2 and "after the start date" in err
    code, _, err = _cli([a if a != PROJECT else "Not A Project" for a in GEE_ARGS]
                        + ["--out", str(tmp_path / "x.tif")], capsys)
    assert code == 2 and "not a valid Google Cloud project id" in err
