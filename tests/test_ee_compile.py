"""The recipe and the label rules compiled to Earth Engine graphs, checked offline.

The graphs are built by the real earthengine-api (pinned 1.7.50) initialised offline as its own
tests do (tests/ee_harness.py) and read back from their REST JSON: the algorithms invoked and
their key arguments are what the server would receive.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest
from ee_harness import Call, Graph, known_algorithms, no_network, offline_ee

from geedl_plugin.core.earthengine import masks
from geedl_plugin.core.earthengine.catalog import CLOUD_SCORE_PLUS, SCL_CLEAR_CLASSES
from geedl_plugin.core.earthengine.collections import filtered_collection, prepared_collection
from geedl_plugin.core.earthengine.compile import compile_recipe, compile_time_stack
from geedl_plugin.core.earthengine.query import SceneQuery
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.recipe import CompositeRecipe

REGION = [-16.45, 16.0, -16.35, 16.08]  # west, south, east, north (Senegal, as document 000)
DOC000_BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
GRAPHS: list[Graph] = []  # every graph built here, checked against the algorithm list at the end


@pytest.fixture(scope="module", autouse=True)
def offline():
    with offline_ee() as ee:
        yield ee


def graph(obj) -> Graph:
    built = Graph(obj.serialize(for_cloud_api=True))
    GRAPHS.append(built)
    return built


def doc000_query(**changes) -> SceneQuery:
    options = dict(region=REGION, start="2024-01-01", end="2024-01-30", collection="S2",
                   max_cloud=1, cloud_mask="none")
    options.update(changes)
    return SceneQuery(**options)


def rename_targets(g: Graph) -> list[list[str]]:
    return [call.arg("names") for call in g.find("Image.rename")]


# -- document 000 -------------------------------------------------------------------------------

def test_document_000_composite_graph():
    compiled = compile_recipe(CompositeRecipe(bands=DOC000_BANDS, indices=["NDVI", "HUE"]),
                              doc000_query())
    g = graph(compiled.image)
    assert compiled.band_names == DOC000_BANDS + ["NDVI", "HUE"]

    assert g.one("ImageCollection.load").arg("id") == "COPERNICUS/S2_HARMONIZED"
    date_range = g.one("DateRange")
    assert (date_range.arg("start"), date_range.arg("end")) == ("2024-01-01", "2024-01-30")
    cloud = g.one("Filter.lessThan")
    assert cloud.arg("leftField") == "CLOUDY_PIXEL_PERCENTAGE" and cloud.arg("rightValue") == 1
    assert g.find("Filter.intersects"), "filterBounds(region) missing"

    selects = [call.arg("bandSelectors") for call in g.find("Image.select")]
    assert DOC000_BANDS in selects
    nd = g.one("Image.normalizedDifference")
    assert nd.arg("bandNames") == ["B8", "B4"]
    assert ["NDVI"] in rename_targets(g) and ["HUE"] in rename_targets(g)
    hue = g.one("Image.parseExpression")
    assert "atan(" in hue.arg("expression")
    assert {"B2", "B3", "B4"} <= set(hue.arg("vars"))
    assert "30.5" in hue.arg("expression")

    reduce_max = g.one("reduce.max")
    assert reduce_max.arg("collection").name == "Collection.map"
    clip = g.one("Image.clip")
    ring = clip.arg("geometry").arg("coordinates")[0]
    assert {tuple(p) for p in ring} >= {(-16.45, 16.0), (-16.35, 16.08)}
    assert g.find("Image.toFloat")  # document 000 exports mosaic.toFloat()


def test_document_000_masks_and_polygons():
    compiled = compile_recipe(CompositeRecipe(bands=DOC000_BANDS, indices=["NDVI", "HUE"]),
                              doc000_query())
    crop = masks.crop_mask(compiled.image, compiled.band_names)
    soil = masks.soil_mask(compiled.image, compiled.band_names)
    polygons = masks.vectorize(crop, doc000_query().region)
    stats = masks.area_statistics(polygons)
    kept = masks.drop_small(polygons)

    g_soil = graph(soil)
    assert g_soil.one("Image.gt").arg("image1").arg("bandSelectors") == ["HUE"]

    g = graph(kept)
    lt, gt = g.one("Image.lt"), g.one("Image.gt")
    assert lt.arg("image1").arg("bandSelectors") == ["HUE"]
    assert lt.arg("image2").arg("value") == 0.0
    assert gt.arg("image1").arg("bandSelectors") == ["NDVI"]
    assert g.find("Image.and") and g.find("Image.selfMask")

    vectors = g.one("Image.reduceToVectors")
    assert vectors.arg("scale") == 10.0
    assert vectors.arg("geometryType") == "polygon"
    assert vectors.arg("maxPixels") == 1e13
    assert vectors.arg("labelProperty") == "label"
    assert vectors.arg("geometry").name == "GeometryConstructors.Polygon"
    label = g.one("Filter.equals")
    assert (label.arg("leftField"), label.arg("rightValue")) == ("label", 1)
    setter = g.one("Element.set")
    assert setter.arg("key") == "area"
    area = setter.arg("value")
    assert area.name == "Feature.area" and area.arg("maxError").arg("value") == 1
    minimum = g.one("Filter.greaterThan")
    assert (minimum.arg("leftField"), minimum.arg("rightValue")) == ("area", 3000.0)

    g_stats = graph(stats)
    assert g_stats.one("AggregateFeatureCollection.stats").arg("property") == "area"
    assert not g_stats.find("Filter.greaterThan"), "statistics are taken before the area filter"


def test_boxes_instead_of_polygons_and_bad_vector_options():
    compiled = compile_recipe(CompositeRecipe(bands=["B4", "B8"], indices=["NDVI"]), doc000_query())
    mask = masks.expression_mask(compiled.image, compiled.band_names, "NDVI > 0.3 && B8 > 1500")
    boxes = masks.label_polygons(mask, doc000_query().region, geometry_type="bb", min_area_m2=5000)
    g = graph(boxes)
    assert g.one("Image.reduceToVectors").arg("geometryType") == "bb"
    assert g.one("Filter.greaterThan").arg("rightValue") == 5000.0
    expression = g.one("Image.parseExpression")
    assert expression.arg("expression") == "((NDVI > 0.3) && (B8 > 1500))"
    assert set(expression.arg("vars")) >= {"NDVI", "B8"}
    with pytest.raises(GeedlError, match="polygon"):
        masks.vectorize(mask, doc000_query().region, geometry_type="points")
    with pytest.raises(GeedlError, match="B11"):
        masks.expression_mask(compiled.image, compiled.band_names, "B11 > 100")


# -- water ----------------------------------------------------------------------------------------

def test_water_index_rules_compute_missing_indices():
    compiled = compile_recipe(CompositeRecipe(bands=["B3", "B8", "B11"]), doc000_query())
    mndwi = graph(masks.water_index_mask(compiled.image, compiled.band_names, "MNDWI", 0.0))
    assert mndwi.one("Image.normalizedDifference").arg("bandNames") == ["B3", "B11"]
    assert mndwi.one("Image.gt").arg("image2").arg("value") == 0.0
    ndwi = graph(masks.water_index_mask(compiled.image, compiled.band_names, "NDWI", 0.2))
    assert ndwi.one("Image.normalizedDifference").arg("bandNames") == ["B3", "B8"]
    assert ndwi.one("Image.gt").arg("image2").arg("value") == 0.2
    with pytest.raises(GeedlError, match="MNDWI"):
        masks.water_index_mask(compiled.image, ["B4", "B8"], "MNDWI", 0.0)
    rule = graph(masks.expression_mask(compiled.image, compiled.band_names, "MNDWI > 0.1 && B8 < 1500"))
    assert rule.one("Image.normalizedDifference").arg("bandNames") == ["B3", "B11"]
    assert rule.one("Image.parseExpression").arg("expression") == "((MNDWI > 0.1) && (B8 < 1500))"


def test_landsat_quality_water_rule():
    query = doc000_query(collection="L8", max_cloud=20, cloud_mask="auto")
    g = graph(masks.quality_water_mask(query, min_fraction=0.5))
    assert g.one("ImageCollection.load").arg("id") == "LANDSAT/LC08/C02/T1_L2"
    assert g.one("Filter.lessThan").arg("leftField") == "CLOUD_COVER"
    flags = sorted(call.arg("image2").arg("value") for call in g.find("Image.bitwiseAnd"))
    assert flags == [1 << 3 | 1 << 4 | 1 << 5, 1 << 7]  # bits 3,4,5 masked; bit 7 water
    assert g.one("Image.neq").arg("image2").arg("value") == 0
    assert g.one("Image.eq").arg("image2").arg("value") == 0
    assert g.find("Image.updateMask") and g.find("reduce.mean")
    assert g.one("Image.gte").arg("image2").arg("value") == 0.5


def test_sentinel2_scl_water_rule_and_l1c_refused():
    g = graph(masks.quality_water_mask(doc000_query(collection="S2_SR", cloud_mask="scl")))
    assert g.one("ImageCollection.load").arg("id") == "COPERNICUS/S2_SR_HARMONIZED"
    assert g.one("Image.eq").arg("image2").arg("value") == 6
    remap = g.one("Image.remap")
    assert remap.arg("from") == list(SCL_CLEAR_CLASSES)
    with pytest.raises(GeedlError, match="S2_SR"):
        masks.quality_water_mask(doc000_query(collection="S2"))


# -- collections: Landsat, cloud masks ----------------------------------------------------------

def test_landsat_scale_factors_and_common_band_names():
    query = doc000_query(collection="L9", max_cloud=30, cloud_mask="qa_pixel")
    compiled = compile_recipe(CompositeRecipe(bands=["B4", "B8", "B11"], indices=["NDVI"]), query)
    g = graph(compiled.image)
    assert g.one("ImageCollection.load").arg("id") == "LANDSAT/LC09/C02/T1_L2"
    renaming = [call for call in g.find("Image.select") if call.arg("newNames")]
    assert renaming[0].arg("bandSelectors") == ["SR_B4", "SR_B5", "SR_B6"]
    assert renaming[0].arg("newNames") == ["B4", "B8", "B11"]
    factor = g.one("Image.multiply").arg("image2").arg("value")
    offset = g.one("Image.add").arg("image2").arg("value")
    assert factor == pytest.approx(0.0000275 * 10000)  # reflectance x 10000, as Sentinel-2
    assert offset == pytest.approx(-0.2 * 10000)
    assert g.one("Image.bitwiseAnd").arg("image2").arg("value") == 56  # QA_PIXEL bits 3,4,5
    assert g.one("Image.normalizedDifference").arg("bandNames") == ["B8", "B4"]


def test_sentinel2_cloud_masks():
    qa60 = graph(prepared_collection(doc000_query(cloud_mask="qa60"), ["B4"]))
    assert sorted(c.arg("image2").arg("value") for c in qa60.find("Image.bitwiseAnd")) == [1024, 2048]

    cs = graph(prepared_collection(doc000_query(collection="S2_SR", cloud_mask="csplus",
                                                cs_threshold=0.65), ["B4"]))
    link = cs.one("Image.linkCollection")
    assert link.arg("imageCollection").arg("id") == CLOUD_SCORE_PLUS
    assert link.arg("linkedBands") == ["cs_cdf"]
    assert cs.one("Image.gte").arg("image2").arg("value") == 0.65

    scl = graph(prepared_collection(doc000_query(collection="S2_SR", cloud_mask="scl"), ["B4"]))
    assert scl.one("Image.remap").arg("from") == list(SCL_CLEAR_CLASSES)

    none = graph(prepared_collection(doc000_query(cloud_mask="none"), ["B4"]))
    assert not none.find("Image.updateMask")


@pytest.mark.parametrize("collection, mask", [("S2", "scl"), ("S2", "qa_pixel"), ("L8", "csplus"),
                                              ("L9", "qa60"), ("S2_SR", "cloudy")])
def test_cloud_mask_that_does_not_fit_the_sensor_is_refused(collection, mask):
    with pytest.raises(GeedlError, match="cloud mask|Cloud mask"):
        doc000_query(collection=collection, cloud_mask=mask)


def test_max_cloud_none_keeps_all_scenes():
    g = graph(filtered_collection(doc000_query(max_cloud=None)))
    assert not g.find("Filter.lessThan")


# -- reducers, user indices, time stacks --------------------------------------------------------

@pytest.mark.parametrize("reducer, algorithm", [("max", "reduce.max"), ("min", "reduce.min"),
                                                 ("mean", "reduce.mean"), ("median", "reduce.median"),
                                                 ("first", "ImageCollection.mosaic"),
                                                 ("percentile", "ImageCollection.reduce")])
def test_reducers(reducer, algorithm):
    recipe = CompositeRecipe(bands=["B4", "B8"], reducer=reducer, percentile=25)
    g = graph(compile_recipe(recipe, doc000_query()).image)
    assert g.find(algorithm)
    if reducer == "percentile":
        assert g.one("Reducer.percentile").arg("percentiles") == [25.0]
        assert ["B4", "B8"] in rename_targets(g)
    if reducer == "first":
        order = g.one("Collection.limit")
        assert (order.arg("key"), order.arg("ascending")) == ("system:time_start", False)


def test_user_expression_index_and_dtype():
    recipe = CompositeRecipe(bands=["B4"], indices=["WET=(B3-B11)/(B3+B11)"], dtype="int16")
    g = graph(compile_recipe(recipe, doc000_query(collection="S2_SR")).image)
    wet = g.one("Image.parseExpression")
    assert wet.arg("expression") == "((B3 - B11) / (B3 + B11))"
    assert set(wet.arg("vars")) >= {"B3", "B11"}
    assert ["WET"] in rename_targets(g)
    assert g.find("Image.toInt16")


def test_monthly_time_stack_band_names():
    query = doc000_query(start="2024-01-15", end="2024-04-01")
    stack = compile_time_stack(CompositeRecipe(bands=["B4", "B8"], indices=["NDVI"]), query, "month")
    assert stack.periods == ["2024_01", "2024_02", "2024_03"]
    assert stack.band_names == [f"{b}_{m}" for m in stack.periods for b in ("B4", "B8", "NDVI")]
    g = graph(stack.image)
    assert ["B4_2024_02", "B8_2024_02", "NDVI_2024_02"] in rename_targets(g)
    ranges = sorted((c.arg("start"), c.arg("end")) for c in g.find("DateRange"))
    assert ("2024-01-15", "2024-02-01") in ranges and ("2024-03-01", "2024-04-01") in ranges
    assert len(g.find("reduce.max")) == 3


def test_n_day_time_stack_and_too_many_windows():
    query = doc000_query(start="2024-01-01", end="2024-02-01")
    stack = compile_time_stack(CompositeRecipe(bands=["B8"], reducer="first"), query, 16)
    assert stack.band_names == ["B8_2024_01_01", "B8_2024_01_17"]
    graph(stack.image)
    with pytest.raises(GeedlError, match="too many"):
        compile_time_stack(CompositeRecipe(bands=["B8"]), doc000_query(start="2020-01-01",
                                                                       end="2024-01-01"), 1)


@pytest.mark.parametrize("collection, bands, indices, missing", [
    ("S2_SR", ["B4", "B10"], [], "B10"),
    ("L8", ["B4", "B5"], [], "B5"),
    ("L9", ["B4"], ["RE=(B5-B4)/(B5+B4)"], "B5"),
])
def test_unknown_band_for_the_collection(collection, bands, indices, missing):
    recipe = CompositeRecipe(bands=bands, indices=indices)
    with pytest.raises(GeedlError, match=f"{missing}.*{collection}"):
        compile_recipe(recipe, doc000_query(collection=collection))


# -- dry run ------------------------------------------------------------------------------------

def test_cli_dry_run_prints_query_and_graph_without_network(tmp_path):
    import ee

    from geedl_plugin.cli import main

    out = io.StringIO()
    args = ["composite", "--source", "gee", "--bbox", "12.55,52.47,12.65,52.51,EPSG:4326",
            "--start", "2024-01-01", "--end", "2024-01-30", "--collection", "S2_SR",
            "--max-cloud", "1", "--indices", "NDVI,HUE", "--out", str(tmp_path / "c.tif"), "--dry-run"]
    ee.Reset()  # the CLI must initialise by itself, offline
    try:
        with no_network(), redirect_stdout(out):
            assert main(args) == 0
    finally:
        ee.Reset()
        ee.Initialize(None, "", project="geedl-test")  # back to this module's offline state
    payload = json.loads(out.getvalue())
    assert payload["dry_run"] is True
    assert payload["query"]["asset_id"] == "COPERNICUS/S2_SR_HARMONIZED"
    assert payload["query"]["cloud_mask"] == "csplus"
    assert payload["bands"][-2:] == ["NDVI", "HUE"]
    assert payload["grid"]["crs"] == "EPSG:32633"
    assert payload["decision"]["mode"] == "download"
    g = Graph(payload["expression"])
    assert g.find("Image.clip") and g.find("Image.normalizedDifference")
    scenes = Graph(payload["scene_query"])
    assert scenes.one("Filter.lessThan").arg("leftField") == "CLOUDY_PIXEL_PERCENTAGE"
    assert not (tmp_path / "c.tif").exists()
    GRAPHS.extend([g, scenes])


def test_dry_run_keeps_a_live_session():
    import ee

    from geedl_plugin.core.earthengine.connection import offline_session

    assert ee.data.is_initialized()
    with offline_session("some-other-project"):
        pass
    assert ee.data.is_initialized()
    assert ee.data._get_state().cloud_api_user_project == "geedl-test"


def test_every_algorithm_used_exists_on_the_server():
    """Runs last in this module: all graphs above use only algorithms of the shipped list."""
    assert len(GRAPHS) >= 15
    used = set().union(*(g.names for g in GRAPHS))
    unknown = used - known_algorithms()
    assert not unknown, f"not in ee/tests/algorithms.json: {sorted(unknown)}"
    assert isinstance(GRAPHS[0].calls[0], Call)
