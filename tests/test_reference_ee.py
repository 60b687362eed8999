"""Reference products as label sources in Earth Engine, checked offline (tests/ee_harness.py).

The graphs are built by the real earthengine-api (pinned 1.7.50, initialised offline as its own
tests do) for the grid of a real composite built from the sample scenes, and read back from
their REST JSON: the band each product's graph selects, the reprojection onto the composite's
grid (nearest: no ``resample``), the remap into the project's classes and its ignore value. The
download goes through the real client to a mocked computePixels that answers for the requested
grid; coverage answers are captured value.compute responses. Legends are checked against the
values and names the products document.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from ee import apitestcase
from ee_harness import Call, Graph, known_algorithms, no_network, offline_ee
from fixtures_reference import brandenburg_composite, virginia_composite
from osgeo import gdal, osr

from geedl_plugin.cli import main
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.reference import legends, remap
from geedl_plugin.core.reference.target import read_target

gdal.UseExceptions()
GRAPHS: list[Graph] = []


@pytest.fixture(scope="module", autouse=True)
def offline():
    with offline_ee() as ee:
        yield ee


@pytest.fixture(scope="module")
def brandenburg(tmp_path_factory) -> Path:
    return brandenburg_composite(tmp_path_factory.mktemp("bb") / "composite.tif")


@pytest.fixture(scope="module")
def virginia(tmp_path_factory) -> Path:
    return virginia_composite(tmp_path_factory.mktemp("va") / "composite.tif", col=400, row=400, size=160)


def ee_reference():
    from geedl_plugin.core.earthengine import reference

    return reference


def request_for(composite: Path, product: str, table: remap.RemapTable, **options):
    R = ee_reference()
    target = read_target(composite)
    start, end = options.pop("start", None), options.pop("end", None)
    if legends.product_spec(product).temporal == "per_scene" and not start:
        start, end = target.dates()
    return R.ReferenceRequest(
        legends.product_spec(product),
        table,
        R.grid_of(target),
        target.lonlat_region(),
        start=start,
        end=end,
        **options,
    )


def graph(image) -> Graph:
    built = Graph(image.serialize(for_cloud_api=True))
    GRAPHS.append(built)
    return built


# -- legends --------------------------------------------------------------------------------------


def test_legends_match_the_products_documentation():
    wc = legends.product_spec("worldcover")
    assert (wc.asset_id, wc.band) == ("ESA/WorldCover/v200", "Map")
    assert set(wc.legend.values) == {10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}
    assert wc.legend.name_of(10) == "Tree cover" and wc.legend.name_of(100) == "Moss and lichen"
    assert wc.legend.color_of(80) == "#0064c8"

    dw = legends.product_spec("dynamicworld")
    assert (dw.asset_id, dw.band, dw.temporal) == ("GOOGLE/DYNAMICWORLD/V1", "label", "per_scene")
    assert dw.legend.values == list(range(9))
    assert dw.legend.names == [
        "water",
        "trees",
        "grass",
        "flooded_vegetation",
        "crops",
        "shrub_and_scrub",
        "built",
        "bare",
        "snow_and_ice",
    ]

    clc = legends.product_spec("corine")
    assert (clc.asset_id, clc.band) == ("COPERNICUS/CORINE/V20/100m", "landcover")
    assert len(clc.legend) == 44 and min(clc.legend.values) == 111 and max(clc.legend.values) == 523
    assert clc.legend.name_of(213) == "Rice fields" and clc.legend.color_of(213) == "#e6e600"
    assert all(v // 100 in (1, 2, 3, 4, 5) for v in clc.legend.values)
    assert legends.CORINE_GRID_CODES[14] == 213  # EEA raster grid code 14 = rice fields

    cdl = legends.product_spec("cdl")
    assert (cdl.asset_id, cdl.band) == ("USDA/NASS/CDL", "cropland")
    assert cdl.legend.name_of(1) == "Corn" and cdl.legend.name_of(5) == "Soybeans"
    assert cdl.legend.color_of(1) == "#ffd400" and cdl.nodata_values == (0,)
    assert len(cdl.legend) > 100  # every class of the catalog legend, not a subset

    aafc = legends.product_spec("aafc")
    assert (aafc.asset_id, aafc.band) == ("AAFC/ACI", "landcover")
    assert aafc.legend.name_of(147) == "Corn" and aafc.legend.name_of(20) == "Water"

    jrc = legends.product_spec("jrc")
    assert (jrc.asset_id, jrc.band, jrc.kind) == ("JRC/GSW1_4/GlobalSurfaceWater", "occurrence", "continuous")
    assert jrc.legend.names == ["not water", "water"]
    for spec in legends.PRODUCTS.values():
        assert all(len(c) == 7 and c.startswith("#") for c in spec.legend.colors), spec.key


def test_every_preset_is_valid_for_its_product():
    for name, table in remap.PRESETS.items():
        if table.field:  # the OSM table reads a vector field, checked on the real layer elsewhere
            continue
        remap.check_table_for_product(remap.preset(name), table.source)


# -- graphs ---------------------------------------------------------------------------------------


def _upstream(node, predicate) -> bool:
    """Whether a call feeding ``node`` (itself included) satisfies ``predicate``."""
    if isinstance(node, Call):
        return predicate(node) or any(_upstream(v, predicate) for v in node.args.values())
    if isinstance(node, list):
        return any(_upstream(v, predicate) for v in node)
    return False


def _check_grid_and_remap(g: Graph, composite: Path, table: remap.RemapTable, band: str | None) -> None:
    target = read_target(composite)
    x0, dx, _, y0, _, dy = target.geotransform
    reproject = g.one("Image.reproject")
    assert reproject.arg("crs").arg("crs") == target.epsg
    assert reproject.arg("crsTransform") == [dx, 0.0, x0, 0.0, dy, y0]
    assert not g.find("Image.resample"), "class values must be resampled with nearest (the default)"
    if band is not None:  # (a band selected inside a mapped function is checked by the caller)
        assert _upstream(
            reproject.arg("image"),
            lambda c: c.name == "Image.select" and band in (c.arg("bandSelectors") or []),
        ), f"the {band} band is what gets reprojected"
    call = g.one("Image.remap")
    assert call.arg("defaultValue") == 255
    pairs = dict(zip(call.arg("from"), call.arg("to")))
    for value, target_id in table.mapping.items():
        assert pairs[int(value)] == target_id
    assert call.arg("image").name == "Image.reproject", "remap runs on the composite grid"
    assert g.find("Image.toUint8") and g.find("Image.clip")
    assert ["class"] in [c.arg("names") for c in g.find("Image.rename")]


@pytest.mark.parametrize(
    "product,preset_name,year",
    [
        ("corine", "corine-rice", 2018),
        ("worldcover", "worldcover-water-cropland-tree", None),
        ("cdl", "cdl-crops", 2023),
        ("aafc", "aafc-crops", 2022),
    ],
)
def test_annual_products_select_band_reproject_and_remap(brandenburg, product, preset_name, year):
    R = ee_reference()
    table = remap.preset(preset_name)
    request = request_for(brandenburg, product, table, year=year)
    g = graph(R.reference_image(request))
    spec = legends.product_spec(product)
    assert g.one("ImageCollection.load").arg("id") == spec.asset_id
    assert [spec.band] in [c.arg("bandSelectors") for c in g.find("Image.select")]
    _check_grid_and_remap(g, brandenburg, table, spec.band)
    if year is not None:
        dates = g.one("DateRange")
        assert (dates.arg("start"), dates.arg("end")) == (f"{year}-01-01", f"{year + 1}-01-01")
    assert g.find("Filter.intersects"), "images filtered to the composite's footprint"


def test_corine_rice_maps_every_other_class_to_other(brandenburg):
    R = ee_reference()
    request = request_for(brandenburg, "corine", remap.preset("corine-rice"))
    call = graph(R.reference_image(request)).one("Image.remap")
    pairs = dict(zip(call.arg("from"), call.arg("to")))
    assert pairs.pop(213) == 1
    assert set(pairs) == set(legends.CORINE_LEGEND.values) - {213} and set(pairs.values()) == {0}


def test_dynamic_world_takes_the_mode_over_the_composite_dates(brandenburg):
    R = ee_reference()
    table = remap.preset("dynamicworld-water-crops-trees")
    request = request_for(brandenburg, "dynamicworld", table)
    assert (request.start, request.end) == ("2017-02-16", "2017-02-17")  # from the composite's scenes
    g = graph(R.reference_image(request))
    assert g.one("ImageCollection.load").arg("id") == "GOOGLE/DYNAMICWORLD/V1"
    dates = g.one("DateRange")
    assert (dates.arg("start"), dates.arg("end")) == ("2017-02-16", "2017-02-17")
    mode = g.one("reduce.mode")
    assert mode.arg("collection").name == "Collection.map"  # select('label') on every image
    assert ["label"] in [c.arg("bandSelectors") for c in g.find("Image.select")]
    assert _upstream(g.one("Image.reproject").arg("image"), lambda c: c.name == "reduce.mode")
    _check_grid_and_remap(g, brandenburg, table, None)
    with pytest.raises(GeedlError, match="mode over"):
        R.ReferenceRequest(legends.product_spec("dynamicworld"), table, request.grid, request.region)


def test_jrc_water_thresholds_occurrence(brandenburg):
    R = ee_reference()
    table = remap.preset("jrc-water")
    request = request_for(brandenburg, "jrc", table, threshold=75.0)
    g = graph(R.reference_image(request))
    assert g.one("Image.load").arg("id") == "JRC/GSW1_4/GlobalSurfaceWater"
    assert ["occurrence"] in [c.arg("bandSelectors") for c in g.find("Image.select")]
    gte = g.one("Image.gte")
    assert gte.arg("image2").arg("value") == 75.0
    assert gte.arg("image1").name == "Image.unmask"  # never-water pixels are masked in the product
    _check_grid_and_remap(g, brandenburg, table, "occurrence")
    with pytest.raises(GeedlError, match="percentage"):
        request_for(brandenburg, "jrc", table, threshold=150)


def test_previews_use_the_products_own_colours(brandenburg):
    R = ee_reference()
    request = request_for(brandenburg, "corine", remap.preset("corine-rice"))
    image, vis = R.product_preview(request)
    assert vis.palette == [c.lstrip("#") for c in legends.CORINE_LEGEND.colors]
    assert (vis.min, vis.max) == (0, 43)
    dense = graph(image).one("Image.remap")
    assert dense.arg("from") == legends.CORINE_LEGEND.values and dense.arg("to") == list(range(44))
    _, labels_vis = R.labels_preview(request)
    assert labels_vis.palette == ["cccccc", "e6e600"]  # other, rice (CORINE's rice colour)
    jrc_image, jrc_vis = R.product_preview(request_for(brandenburg, "jrc", remap.preset("jrc-water")))
    assert jrc_vis.palette == ["ffffff", "ffbbbb", "0000ff"] and (jrc_vis.min, jrc_vis.max) == (0, 100)

    resource = mock.MagicMock()
    resource.projects().maps().create().execute.return_value = {"name": "projects/geedl-test/maps/ref1"}
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        urls = R.preview_urls(request)
    assert urls["product"]["url"].endswith("/maps/ref1/tiles/{z}/{x}/{y}")
    body = resource.projects().maps().create.call_args.kwargs["body"]
    visualize = Graph(body["expression"]).one("Image.visualize")
    assert visualize.arg("palette") == ["cccccc", "e6e600"]


# -- download on the composite's grid -------------------------------------------------------------


def _server_labels(composite: Path):
    """What the 'server' answers: a real 0/1 label (NDVI > 0.3) from the composite's own pixels,
    for whatever window of the composite grid computePixels asks; 255 where B8 is 0."""
    ds = gdal.Open(str(composite))
    gt = ds.GetGeoTransform()
    b4 = ds.GetRasterBand(3).ReadAsArray().astype(np.float64)
    b8 = ds.GetRasterBand(4).ReadAsArray().astype(np.float64)
    ndvi = (b8 - b4) / np.maximum(b8 + b4, 1e-6)
    full = np.where(ndvi > 0.3, 1, 0).astype(np.uint8)
    full[b8 <= 0] = 255
    bodies: list[dict] = []

    def compute_pixels(project, body):
        bodies.append(body)
        grid = body["grid"]
        a = grid["affineTransform"]
        col = round((a["translateX"] - gt[0]) / gt[1])
        row = round((a["translateY"] - gt[3]) / gt[5])
        w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
        path = f"/vsimem/ref_{len(bodies)}.tif"
        out = gdal.GetDriverByName("GTiff").Create(path, w, h, 1, gdal.GDT_Byte)
        out.SetGeoTransform((a["translateX"], a["scaleX"], 0.0, a["translateY"], 0.0, a["scaleY"]))
        srs = osr.SpatialReference()
        srs.SetFromUserInput(grid["crsCode"])
        out.SetProjection(srs.ExportToWkt())
        out.GetRasterBand(1).WriteArray(full[row : row + h, col : col + w])
        out = None
        data = bytes(gdal.VSIFReadL(1, gdal.VSIStatL(path).size, gdal.VSIFOpenL(path, "rb")))
        gdal.Unlink(path)
        request = mock.MagicMock()
        request.execute.return_value = data
        return request

    return full, bodies, compute_pixels


def test_download_lands_on_the_composite_grid_with_the_projects_legend(brandenburg, tmp_path):
    R = ee_reference()
    table = remap.preset("worldcover-cropland")
    request = request_for(brandenburg, "worldcover", table)
    full, bodies, compute_pixels = _server_labels(brandenburg)
    raw = mock.MagicMock()
    raw.projects().image().computePixels.side_effect = compute_pixels
    out = tmp_path / "labels.tif"
    with (
        no_network(),
        apitestcase.UsingCloudApi(cloud_api_resource=mock.MagicMock(), cloud_api_resource_raw=raw),
    ):
        result = R.fetch_reference(request, out, tile_size=96, workers=2, check=False)
    target = read_target(brandenburg)
    assert result["tiles_total"] == len(bodies) == 9  # 256 px in 96 px tiles: 3 x 3
    for body in bodies:
        assert body["bandIds"] == ["class"] and body["fileFormat"] == "GEO_TIFF"
        assert body["grid"]["crsCode"] == "EPSG:32633"
        assert body["grid"]["affineTransform"]["scaleX"] == 10.0
        g = Graph(body["expression"])
        unmask = g.one("Image.unmask")
        assert unmask.arg("value").arg("value") == 255 and unmask.arg("sameFootprint") is False
        assert g.one("Image.remap").arg("defaultValue") == 255
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == target.geotransform
    assert (ds.RasterXSize, ds.RasterYSize) == (target.width, target.height)
    assert np.array_equal(ds.GetRasterBand(1).ReadAsArray(), full)
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    assert json.loads(ds.GetMetadataItem("GEEDL_CLASSES")) == {"0": "other", "1": "cropland"}
    legend = json.loads(ds.GetMetadataItem("GEEDL_LEGEND"))
    assert [c["name"] for c in legend["classes"]] == ["other", "cropland"] and legend["background"] == 0
    assert band.GetColorTable().GetColorEntry(1)[:3] == (0xF0, 0x96, 0xFF)  # WorldCover's cropland colour
    assert band.GetCategoryNames()[1] == "cropland"
    assert json.loads(ds.GetMetadataItem("GEEDL_REFERENCE"))["product"] == "worldcover"


# -- coverage ---------------------------------------------------------------------------------------


def test_product_without_coverage_is_a_clear_error(brandenburg, virginia):
    R = ee_reference()
    cdl = request_for(brandenburg, "cdl", remap.preset("cdl-crops"))
    with pytest.raises(GeedlError, match="conterminous United States"):
        R.check_extent(cdl, read_target(brandenburg).lonlat_bounds())
    R.check_extent(
        request_for(virginia, "cdl", remap.preset("cdl-crops")), read_target(virginia).lonlat_bounds()
    )

    # inside the catalog's box but without data: the captured answers of the coverage request
    corine_in_virginia = request_for(virginia, "corine", remap.preset("corine-rice"), year=2018)
    R.check_extent(corine_in_virginia, read_target(virginia).lonlat_bounds())  # the box is too coarse
    for answer, message in (
        ({"images": 0, "pixels": 0}, "has no image over the region for 2018"),
        ({"images": 1, "pixels": 0}, "no valid pixel"),
    ):
        resource = mock.MagicMock()
        resource.projects().value().compute().execute.return_value = {"result": answer}
        with apitestcase.UsingCloudApi(cloud_api_resource=resource):
            with pytest.raises(GeedlError, match=message):
                R.check_coverage(corine_in_virginia)
    body = resource.projects().value().compute.call_args.kwargs["body"]
    g = Graph(body["expression"])
    assert g.find("Collection.size") and g.one("Reducer.count")
    assert g.one("Image.reduceRegion").arg("bestEffort") is True

    resource = mock.MagicMock()
    resource.projects().value().compute().execute.return_value = {"result": {"images": 1, "pixels": 4000}}
    with apitestcase.UsingCloudApi(cloud_api_resource=resource):
        assert R.check_coverage(corine_in_virginia) == {"images": 1, "pixels": 4000}


# -- bad input ----------------------------------------------------------------------------------------


def test_remap_with_classes_the_product_lacks_lists_the_valid_values(brandenburg):
    bad = remap.RemapTable.from_dict(
        {
            "source": "worldcover",
            "classes": [{"id": 1, "name": "water"}],
            "mapping": [{"from": [80, 85], "to": "water"}],
        }
    )
    with pytest.raises(GeedlError, match=r"85.*does not have.*10 Tree cover.*100 Moss and lichen"):
        request_for(brandenburg, "worldcover", bad)
    with pytest.raises(GeedlError, match="made for USDA NASS Cropland"):
        request_for(brandenburg, "corine", remap.preset("cdl-crops"))
    with pytest.raises(GeedlError, match="no 2019 edition"):
        request_for(brandenburg, "corine", remap.preset("corine-rice"), year=2019)


# -- CLI ---------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> tuple[int, str]:
    stream = io.StringIO()
    with redirect_stdout(stream):
        code = main(argv)
    return code, stream.getvalue()


def test_cli_dry_run_builds_the_graph_offline(brandenburg, tmp_path, capsys):
    out = tmp_path / "labels.tif"
    with no_network():
        code, text = _cli(
            [
                "reference",
                "--product",
                "corine",
                "--preset",
                "corine-rice",
                "--composite",
                str(brandenburg),
                "--out-mask",
                str(out),
                "--year",
                "2018",
                "--dry-run",
            ]
        )
    assert code == 0 and not out.exists()
    payload = json.loads(text)
    assert payload["request"]["product"] == "corine" and payload["request"]["year"] == 2018
    assert payload["request"]["grid"]["crs"] == "EPSG:32633" and payload["plan"]["tiles"] == 1
    assert payload["preview"]["palette"] == ["cccccc", "e6e600"]
    g = Graph(payload["expression"])
    GRAPHS.append(g)
    assert g.one("ImageCollection.load").arg("id") == "COPERNICUS/CORINE/V20/100m"
    assert g.one("Image.remap").arg("defaultValue") == 255

    # CDL over Brandenburg: refused before anything is built or sent
    with no_network():
        code, _ = _cli(
            [
                "reference",
                "--product",
                "cdl",
                "--preset",
                "cdl-crops",
                "--composite",
                str(brandenburg),
                "--out-mask",
                str(out),
                "--dry-run",
            ]
        )
    assert code == 2 and "covers the conterminous United States only" in capsys.readouterr().err

    bad = tmp_path / "bad.remap.json"
    bad.write_text(
        json.dumps(
            {
                "source": "corine",
                "classes": [{"id": 1, "name": "rice"}],
                "mapping": [{"from": [214], "to": "rice"}],
            }
        )
    )
    code, _ = _cli(
        [
            "reference",
            "--product",
            "corine",
            "--remap",
            str(bad),
            "--composite",
            str(brandenburg),
            "--out-mask",
            str(out),
            "--dry-run",
        ]
    )
    assert code == 2 and "214" in capsys.readouterr().err


# -- the labels step's rules compiled to Earth Engine ----------------------------------------------


def _where_chain(g: Graph) -> list[int]:
    """Class ids written by the chain of ``Image.where`` calls, in the order they are applied."""
    wheres = g.find("Image.where")
    inner = [w.arg("input") for w in wheres]
    outer = [w for w in wheres if not any(w == i for i in inner)]
    assert len(outer) == 1
    chain, node = [], outer[0]
    while isinstance(node, Call) and node.name == "Image.where":
        chain.append(node.arg("value").arg("value"))
        node = node.arg("input")
    return chain[::-1]


def _constants_of(call: Call) -> list[float]:
    out = []
    for value in call.args.values():
        if isinstance(value, Call) and value.name == "Image.constant":
            out.append(value.arg("value"))
    return out


def test_label_rules_compile_with_the_local_thresholds():
    import re

    from geedl_plugin.core.earthengine.compile import compile_recipe
    from geedl_plugin.core.earthengine.label_rules import compile_rule, compile_rules
    from geedl_plugin.core.earthengine.query import SceneQuery
    from geedl_plugin.core.expression import parse
    from geedl_plugin.core.labels.legend import LegendClass
    from geedl_plugin.core.labels.rules import (
        ClassRule,
        CropRule,
        ExpressionRule,
        RuleSet,
        SoilRule,
        WaterRule,
        crop_soil_rules,
    )
    from geedl_plugin.core.recipe import CompositeRecipe

    query = SceneQuery(
        region=[13.0, 52.4, 13.03, 52.42],
        start="2024-06-01",
        end="2024-07-01",
        collection="S2_SR",
        cloud_mask="scl",
    )
    bands = ["B2", "B3", "B4", "B8", "B11", "B12"]
    image = compile_recipe(CompositeRecipe(bands=bands), query).image

    def numbers(rule) -> list[float]:
        return [float(n) for n in re.findall(r"-?\d+\.?\d*", rule.to_expression())]

    crop = CropRule(t_hue=-0.2, t_ndvi=0.35)
    g = graph(compile_rule(crop, image, bands)[0])
    lt, gt = g.one("Image.lt"), g.one("Image.gt")
    assert _constants_of(lt) + _constants_of(gt) == numbers(crop) == [-0.2, 0.35]
    assert lt.arg("image1").arg("names") == ["HUE"] and "atan(" in g.one("Image.parseExpression").arg(
        "expression"
    )  # HUE < t_hue, HUE computed from the bands as the local engine does
    assert _upstream(
        gt.arg("image1"),
        lambda c: c.name == "Image.normalizedDifference" and c.arg("bandNames") == ["B8", "B4"],
    )  # NDVI = nd(B8, B4)

    soil = SoilRule(t_hue=0.1)
    assert _constants_of(graph(compile_rule(soil, image, bands)[0]).one("Image.gt")) == numbers(soil)

    for method, pair, threshold in (("mndwi", ["B3", "B11"], 0.15), ("ndwi", ["B3", "B8"], -0.05)):
        rule = WaterRule(method, threshold)
        water = graph(compile_rule(rule, image, bands)[0]).one("Image.gt")
        assert _constants_of(water) == numbers(rule) == [threshold]
        assert _upstream(
            water.arg("image1"),
            lambda c, pair=pair: c.name == "Image.normalizedDifference" and c.arg("bandNames") == pair,
        )

    text = "NDVI > 0.3 && B11 < 2000"
    expression = graph(compile_rule(ExpressionRule(text), image, bands)[0]).one("Image.parseExpression")
    assert expression.arg("expression") == parse(text).to_ee_text()

    # quality-band rules: on the composite's SCL band when it has one (with the rule's ignore
    # pixels), else from the scenes' SCL over the query
    with_scl = image.addBands(image.select("B2").rename("SCL"))
    positive, ignore = compile_rule(WaterRule("scl"), with_scl, bands + ["SCL"])
    assert graph(positive).one("Image.parseExpression").arg("expression") == parse("SCL == 6").to_ee_text()
    assert (
        graph(ignore).one("Image.parseExpression").arg("expression")
        == parse(WaterRule("scl").ignore_expression()).to_ee_text()
    )
    scenes = graph(compile_rule(WaterRule("scl"), image, bands, query)[0])
    assert scenes.one("Image.gte").arg("image2").arg("value") == 0.5  # water in >= half the clear scenes
    with pytest.raises(GeedlError, match="SCL"):
        compile_rule(WaterRule("scl"), image, bands)

    # a rule set: first rule wins, background where none matches, as RuleSet.apply
    rules = crop_soil_rules(t_hue=0.05, t_ndvi=0.25)
    g = graph(compile_rules(rules, image, bands))
    assert _where_chain(g) == [1, 2]
    assert g.find("Image.constant") and 0 in [c.arg("value") for c in g.find("Image.constant")]
    assert sorted(c for call in g.find("Image.lt") + g.find("Image.gt") for c in _constants_of(call)) == [
        0.05,
        0.05,
        0.25,
    ]
    water_first = RuleSet(
        [ClassRule(3, "water", WaterRule("mndwi", 0.0)), ClassRule(1, "crop", CropRule())],
        LegendClass(0, "other"),
    )
    assert _where_chain(graph(compile_rules(water_first, image, bands))) == [3, 1]


def test_every_algorithm_exists_on_the_server():
    assert GRAPHS, "run with the other tests of this module"
    known = known_algorithms()
    for g in GRAPHS:
        assert g.names <= known, sorted(g.names - known)
