"""Built-in legends of the reference products, as the products document them.

Values, names and colours are those of each product's documentation (the Earth Engine data
catalog entries, which carry the producers' legends): a remap table that names a class the
product does not have is refused with the list of valid values (:mod:`.remap`), and previews use
the product's own colours so a layer looks like the product everyone knows.

* CORINE Land Cover (``COPERNICUS/CORINE/V20/100m``, band ``landcover``): the 44 CLC codes
  111..523 and the EEA colours. EEA's own GeoTIFF downloads store grid codes 1..44 (48 = no
  data) instead of the CLC codes; :data:`CORINE_GRID_CODES` translates them.
* USDA NASS Cropland Data Layer (``USDA/NASS/CDL``, band ``cropland``): every class of the
  catalog's legend (0 is background, i.e. outside the mapped area).
* Canada AAFC Annual Crop Inventory (``AAFC/ACI``, band ``landcover``).
* ESA WorldCover v200 (``ESA/WorldCover/v200``, band ``Map``): 10 tree cover ... 100 moss.
* Dynamic World V1 (``GOOGLE/DYNAMICWORLD/V1``, band ``label``, 0..8): one image per
  Sentinel-2 scene, so the label of a period is the per-pixel mode over the recipe's dates.
* JRC Global Surface Water v1.4 (``JRC/GSW1_4/GlobalSurfaceWater``, band ``occurrence``):
  continuous 0..100 % (masked where water was never seen); ``occurrence >= threshold`` gives the
  two classes 0 not water / 1 water that a remap sees.

Coverage (``extent``) is the catalog's bounding box in degrees: a region outside it is refused
before anything is sent. Inside the box a product can still be empty (CDL over southern
Ontario), which the Earth Engine side checks with a pixel count before downloading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GeedlError

IGNORE = 255


@dataclass(frozen=True)
class LegendEntry:
    value: int
    name: str
    color: str  # "#rrggbb"


@dataclass(frozen=True)
class Legend:
    """The classes of a categorical product: value -> (name, colour), in the product's order."""

    entries: tuple[LegendEntry, ...]

    def __post_init__(self) -> None:
        values = [e.value for e in self.entries]
        if len(set(values)) != len(values):
            raise GeedlError(f"Internal error: a legend repeats values {values}")

    @property
    def values(self) -> list[int]:
        return [e.value for e in self.entries]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def colors(self) -> list[str]:
        return [e.color for e in self.entries]

    def __contains__(self, value: object) -> bool:
        return any(e.value == value for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, value: int) -> LegendEntry:
        for e in self.entries:
            if e.value == value:
                return e
        raise KeyError(value)

    def name_of(self, value: int) -> str:
        return self.entry(value).name

    def color_of(self, value: int) -> str:
        return self.entry(value).color

    def describe(self, limit: int = 0) -> str:
        """``111 Continuous urban fabric, 112 ...`` for error messages (all, or the first N)."""
        shown = self.entries if not limit else self.entries[:limit]
        text = ", ".join(f"{e.value} {e.name}" for e in shown)
        return text + (f", ... ({len(self.entries)} classes)" if limit and len(self.entries) > limit else "")

    def to_list(self) -> list[dict[str, object]]:
        return [{"value": e.value, "name": e.name, "color": e.color} for e in self.entries]


def _legend(rows: list[tuple[int, str, str]]) -> Legend:
    return Legend(tuple(LegendEntry(int(v), n, "#" + c.lower().lstrip("#")) for v, c, n in rows))


# -- CORINE Land Cover ----------------------------------------------------------------------------
# CLC nomenclature level-3 codes and EEA colours. (The Earth Engine catalog lists a64dcc for 132
# "Dump sites"; EEA's legend, clc_legend.csv, gives 166-077-000 = a64d00, used here.)
CORINE_LEGEND = _legend(
    [
        (111, "e6004d", "Continuous urban fabric"),
        (112, "ff0000", "Discontinuous urban fabric"),
        (121, "cc4df2", "Industrial or commercial units"),
        (122, "cc0000", "Road and rail networks and associated land"),
        (123, "e6cccc", "Port areas"),
        (124, "e6cce6", "Airports"),
        (131, "a600cc", "Mineral extraction sites"),
        (132, "a64d00", "Dump sites"),
        (133, "ff4dff", "Construction sites"),
        (141, "ffa6ff", "Green urban areas"),
        (142, "ffe6ff", "Sport and leisure facilities"),
        (211, "ffffa8", "Non-irrigated arable land"),
        (212, "ffff00", "Permanently irrigated land"),
        (213, "e6e600", "Rice fields"),
        (221, "e68000", "Vineyards"),
        (222, "f2a64d", "Fruit trees and berry plantations"),
        (223, "e6a600", "Olive groves"),
        (231, "e6e64d", "Pastures"),
        (241, "ffe6a6", "Annual crops associated with permanent crops"),
        (242, "ffe64d", "Complex cultivation patterns"),
        (
            243,
            "e6cc4d",
            "Land principally occupied by agriculture, with significant areas of natural vegetation",
        ),
        (244, "f2cca6", "Agro-forestry areas"),
        (311, "80ff00", "Broad-leaved forest"),
        (312, "00a600", "Coniferous forest"),
        (313, "4dff00", "Mixed forest"),
        (321, "ccf24d", "Natural grasslands"),
        (322, "a6ff80", "Moors and heathland"),
        (323, "a6e64d", "Sclerophyllous vegetation"),
        (324, "a6f200", "Transitional woodland-shrub"),
        (331, "e6e6e6", "Beaches, dunes, sands"),
        (332, "cccccc", "Bare rocks"),
        (333, "ccffcc", "Sparsely vegetated areas"),
        (334, "000000", "Burnt areas"),
        (335, "a6e6cc", "Glaciers and perpetual snow"),
        (411, "a6a6ff", "Inland marshes"),
        (412, "4d4dff", "Peat bogs"),
        (421, "ccccff", "Salt marshes"),
        (422, "e6e6ff", "Salines"),
        (423, "a6a6e6", "Intertidal flats"),
        (511, "00ccf2", "Water courses"),
        (512, "80f2e6", "Water bodies"),
        (521, "00ffa6", "Coastal lagoons"),
        (522, "a6ffe6", "Estuaries"),
        (523, "e6f2ff", "Sea and ocean"),
    ]
)
#: EEA raster downloads: grid code 1..44 -> CLC code (the legend's order); 48 is no data.
CORINE_GRID_CODES = {i + 1: value for i, value in enumerate(CORINE_LEGEND.values)}
CORINE_GRID_NODATA = 48

# -- USDA NASS Cropland Data Layer ----------------------------------------------------------------
CDL_LEGEND = _legend(
    [
        (0, "000000", "Background"),
        (1, "ffd400", "Corn"),
        (2, "ff2626", "Cotton"),
        (3, "00a9e6", "Rice"),
        (4, "ff9e0f", "Sorghum"),
        (5, "267300", "Soybeans"),
        (6, "ffff00", "Sunflower"),
        (10, "70a800", "Peanuts"),
        (11, "00af4d", "Tobacco"),
        (12, "e0a60f", "Sweet Corn"),
        (13, "e0a60f", "Pop or Orn Corn"),
        (14, "80d4ff", "Mint"),
        (21, "e2007f", "Barley"),
        (22, "8a6453", "Durum Wheat"),
        (23, "d9b56c", "Spring Wheat"),
        (24, "a87000", "Winter Wheat"),
        (25, "d69dbc", "Other Small Grains"),
        (26, "737300", "Dbl Crop WinWht/Soybeans"),
        (27, "ae017e", "Rye"),
        (28, "a15889", "Oats"),
        (29, "73004c", "Millet"),
        (30, "d69dbc", "Speltz"),
        (31, "d1ff00", "Canola"),
        (32, "8099ff", "Flaxseed"),
        (33, "d6d600", "Safflower"),
        (34, "d1ff00", "Rape Seed"),
        (35, "00af4d", "Mustard"),
        (36, "ffa8e3", "Alfalfa"),
        (37, "a5f58d", "Other Hay/Non Alfalfa"),
        (38, "00af4d", "Camelina"),
        (39, "d69dbc", "Buckwheat"),
        (41, "a900e6", "Sugarbeets"),
        (42, "a80000", "Dry Beans"),
        (43, "732600", "Potatoes"),
        (44, "00af4d", "Other Crops"),
        (45, "b380ff", "Sugarcane"),
        (46, "732600", "Sweet Potatoes"),
        (47, "ff6666", "Misc Vegs & Fruits"),
        (48, "ff6666", "Watermelons"),
        (49, "ffcc66", "Onions"),
        (50, "ff6666", "Cucumbers"),
        (51, "00af4d", "Chick Peas"),
        (52, "00deb0", "Lentils"),
        (53, "55ff00", "Peas"),
        (54, "f5a27a", "Tomatoes"),
        (55, "ff6666", "Caneberries"),
        (56, "00af4d", "Hops"),
        (57, "80d4ff", "Herbs"),
        (58, "e8beff", "Clover/Wildflowers"),
        (59, "b2ffde", "Sod/Grass Seed"),
        (60, "00af4d", "Switchgrass"),
        (61, "bfbf7a", "Fallow/Idle Cropland"),
        (63, "95ce93", "Forest"),
        (64, "c7d79e", "Shrubland"),
        (65, "ccbfa3", "Barren"),
        (66, "ff00ff", "Cherries"),
        (67, "ff91ab", "Peaches"),
        (68, "b90050", "Apples"),
        (69, "704489", "Grapes"),
        (70, "007878", "Christmas Trees"),
        (71, "b39c70", "Other Tree Crops"),
        (72, "ffff80", "Citrus"),
        (74, "b6705c", "Pecans"),
        (75, "00a884", "Almonds"),
        (76, "ebd6b0", "Walnuts"),
        (77, "b39c70", "Pears"),
        (81, "f7f7f7", "Clouds/No Data"),
        (82, "9c9c9c", "Developed"),
        (83, "4d70a3", "Water"),
        (87, "80b3b3", "Wetlands"),
        (88, "e9ffbe", "Nonag/Undefined"),
        (92, "00ffff", "Aquaculture"),
        (111, "4d70a3", "Open Water"),
        (112, "d4e3fc", "Perennial Ice/Snow"),
        (121, "9c9c9c", "Developed/Open Space"),
        (122, "9c9c9c", "Developed/Low Intensity"),
        (123, "9c9c9c", "Developed/Med Intensity"),
        (124, "9c9c9c", "Developed/High Intensity"),
        (131, "ccbfa3", "Barren"),
        (141, "95ce93", "Deciduous Forest"),
        (142, "95ce93", "Evergreen Forest"),
        (143, "95ce93", "Mixed Forest"),
        (152, "c7d79e", "Shrubland"),
        (176, "e9ffbe", "Grass/Pasture"),
        (190, "80b3b3", "Woody Wetlands"),
        (195, "80b3b3", "Herbaceous Wetlands"),
        (204, "00ff8c", "Pistachios"),
        (205, "d69dbc", "Triticale"),
        (206, "ff6666", "Carrots"),
        (207, "ff6666", "Asparagus"),
        (208, "ff6666", "Garlic"),
        (209, "ff6666", "Cantaloupes"),
        (210, "ff91ab", "Prunes"),
        (211, "344a34", "Olives"),
        (212, "e67525", "Oranges"),
        (213, "ff6666", "Honeydew Melons"),
        (214, "ff6666", "Broccoli"),
        (215, "66994d", "Avocados"),
        (216, "ff6666", "Peppers"),
        (217, "b39c70", "Pomegranates"),
        (218, "ff91ab", "Nectarines"),
        (219, "ff6666", "Greens"),
        (220, "ff91ab", "Plums"),
        (221, "ff6666", "Strawberries"),
        (222, "ff6666", "Squash"),
        (223, "ff91ab", "Apricots"),
        (224, "00af4d", "Vetch"),
        (225, "ffd400", "Dbl Crop WinWht/Corn"),
        (226, "ffd400", "Dbl Crop Oats/Corn"),
        (227, "ff6666", "Lettuce"),
        (228, "ffd400", "Dbl Crop Triticale/Corn"),
        (229, "ff6666", "Pumpkins"),
        (230, "8a6453", "Dbl Crop Lettuce/Durum Wht"),
        (231, "ff6666", "Dbl Crop Lettuce/Cantaloupe"),
        (232, "ff2626", "Dbl Crop Lettuce/Cotton"),
        (233, "e2007f", "Dbl Crop Lettuce/Barley"),
        (234, "ff9e0f", "Dbl Crop Durum Wht/Sorghum"),
        (235, "ff9e0f", "Dbl Crop Barley/Sorghum"),
        (236, "a87000", "Dbl Crop WinWht/Sorghum"),
        (237, "ffd400", "Dbl Crop Barley/Corn"),
        (238, "a87000", "Dbl Crop WinWht/Cotton"),
        (239, "267300", "Dbl Crop Soybeans/Cotton"),
        (240, "267300", "Dbl Crop Soybeans/Oats"),
        (241, "ffd400", "Dbl Crop Corn/Soybeans"),
        (242, "000099", "Blueberries"),
        (243, "ff6666", "Cabbage"),
        (244, "ff6666", "Cauliflower"),
        (245, "ff6666", "Celery"),
        (246, "ff6666", "Radishes"),
        (247, "ff6666", "Turnips"),
        (248, "ff6666", "Eggplants"),
        (249, "ff6666", "Gourds"),
        (250, "ff6666", "Cranberries"),
        (254, "267300", "Dbl Crop Barley/Soybeans"),
    ]
)

# -- Canada AAFC Annual Crop Inventory -----------------------------------------------------------
AAFC_LEGEND = _legend(
    [
        (10, "000000", "Cloud"),
        (20, "3333ff", "Water"),
        (30, "996666", "Exposed Land and Barren"),
        (34, "cc6699", "Urban and Developed"),
        (35, "e1e1e1", "Greenhouses"),
        (50, "ffff00", "Shrubland"),
        (80, "993399", "Wetland"),
        (85, "501b50", "Peatland"),
        (110, "cccc00", "Grassland"),
        (120, "cc6600", "Agriculture (undifferentiated)"),
        (122, "ffcc33", "Pasture and Forages"),
        (130, "7899f6", "Too Wet to be Seeded"),
        (131, "ff9900", "Fallow"),
        (132, "660000", "Cereals"),
        (133, "dae31d", "Barley"),
        (134, "d6cc00", "Other Grains"),
        (135, "d2db25", "Millet"),
        (136, "d1d52b", "Oats"),
        (137, "cace32", "Rye"),
        (138, "c3c63a", "Spelt"),
        (139, "b9bc44", "Triticale"),
        (140, "a7b34d", "Wheat"),
        (141, "b9c64e", "Switchgrass"),
        (142, "999900", "Sorghum"),
        (143, "e9e2b1", "Quinoa"),
        (145, "92a55b", "Winter Wheat"),
        (146, "809769", "Spring Wheat"),
        (147, "ffff99", "Corn"),
        (148, "98887c", "Tobacco"),
        (149, "799b93", "Ginseng"),
        (150, "5ea263", "Oilseeds"),
        (151, "52ae77", "Borage"),
        (152, "41bf7a", "Camelina"),
        (153, "d6ff70", "Canola and Rapeseed"),
        (154, "8c8cff", "Flaxseed"),
        (155, "d6cc00", "Mustard"),
        (156, "ff7f00", "Safflower"),
        (157, "315491", "Sunflower"),
        (158, "cc9933", "Soybeans"),
        (160, "896e43", "Pulses"),
        (161, "996633", "Other Pulses"),
        (162, "8f6c3d", "Peas"),
        (163, "b6a472", "Chickpeas"),
        (167, "82654a", "Beans"),
        (168, "a39069", "Fababeans"),
        (174, "b85900", "Lentils"),
        (175, "b74b15", "Vegetables"),
        (176, "ff8a8a", "Tomatoes"),
        (177, "ffcccc", "Potatoes"),
        (178, "6f55ca", "Sugarbeets"),
        (179, "ffccff", "Other Vegetables"),
        (180, "dc5424", "Fruits"),
        (181, "d05a30", "Berries"),
        (182, "d20000", "Blueberry"),
        (183, "cc0000", "Cranberry"),
        (185, "dc3200", "Other Berry"),
        (188, "ff6666", "Orchards"),
        (189, "c5453b", "Other Fruits"),
        (190, "7442bd", "Vineyards"),
        (191, "ffcccc", "Hops"),
        (192, "b5fb05", "Sod"),
        (193, "ccff05", "Herbs"),
        (194, "07f98c", "Nursery"),
        (195, "00ffcc", "Buckwheat"),
        (196, "cc33cc", "Canaryseed"),
        (197, "8e7672", "Hemp"),
        (198, "b1954f", "Vetch"),
        (199, "749a66", "Other Crops"),
        (200, "009900", "Forest (undifferentiated)"),
        (210, "006600", "Coniferous"),
        (220, "00cc00", "Broadleaf"),
        (230, "cc9900", "Mixedwood"),
    ]
)

# -- ESA WorldCover v200 --------------------------------------------------------------------------
WORLDCOVER_LEGEND = _legend(
    [
        (10, "006400", "Tree cover"),
        (20, "ffbb22", "Shrubland"),
        (30, "ffff4c", "Grassland"),
        (40, "f096ff", "Cropland"),
        (50, "fa0000", "Built-up"),
        (60, "b4b4b4", "Bare / sparse vegetation"),
        (70, "f0f0f0", "Snow and ice"),
        (80, "0064c8", "Permanent water bodies"),
        (90, "0096a0", "Herbaceous wetland"),
        (95, "00cf75", "Mangroves"),
        (100, "fae6a0", "Moss and lichen"),
    ]
)

# -- Dynamic World V1 ------------------------------------------------------------------------------
DYNAMICWORLD_LEGEND = _legend(
    [
        (0, "419bdf", "water"),
        (1, "397d49", "trees"),
        (2, "88b053", "grass"),
        (3, "7a87c6", "flooded_vegetation"),
        (4, "e49635", "crops"),
        (5, "dfc35a", "shrub_and_scrub"),
        (6, "c4281b", "built"),
        (7, "a59b8f", "bare"),
        (8, "b39fe1", "snow_and_ice"),
    ]
)

# -- JRC Global Surface Water (after the occurrence threshold) ------------------------------------
JRC_LEGEND = _legend([(0, "ffffff", "not water"), (1, "0000ff", "water")])
JRC_OCCURRENCE_PALETTE = ("#ffffff", "#ffbbbb", "#0000ff")  # catalog visualisation, 0..100 %
DEFAULT_JRC_THRESHOLD = 50.0


@dataclass(frozen=True)
class ProductSpec:
    """One reference product: where it lives in Earth Engine and what its band means.

    ``kind`` is ``categorical`` (the band holds class values of ``legend``) or ``continuous``
    (JRC occurrence: thresholded into ``legend``'s classes). ``temporal`` says how an image is
    chosen: ``annual`` (one image per year: CDL, AAFC, CORINE epochs, WorldCover), or
    ``per_scene`` (Dynamic World: the mode over the dates), ``static`` (one image).
    """

    key: str
    title: str
    asset_id: str
    band: str
    legend: Legend
    scale_m: float
    kind: str = "categorical"
    temporal: str = "annual"
    is_collection: bool = True
    extent: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    coverage: str = "global"
    years: tuple[int, ...] = ()
    nodata_values: tuple[int, ...] = ()
    attribution: str = ""
    aliases: tuple[str, ...] = field(default=(), hash=False)

    @property
    def continuous(self) -> bool:
        return self.kind == "continuous"

    def check_year(self, year: int | None) -> None:
        if year is None or not self.years:
            return
        if int(year) not in self.years:
            shown = ", ".join(str(y) for y in self.years)
            raise GeedlError(f"{self.title} has no {year} edition; available: {shown}.")

    def default_year(self) -> int | None:
        return self.years[-1] if self.years else None

    def covers(self, bounds: tuple[float, float, float, float]) -> bool:
        """Whether lon/lat ``bounds`` (west, south, east, north) touch the product's extent."""
        west, south, east, north = bounds
        pw, ps, pe, pn = self.extent
        return not (east < pw or west > pe or north < ps or south > pn)


PRODUCTS: dict[str, ProductSpec] = {
    spec.key: spec
    for spec in (
        ProductSpec(
            "corine",
            "CORINE Land Cover (CLC, 100 m)",
            "COPERNICUS/CORINE/V20/100m",
            "landcover",
            CORINE_LEGEND,
            100.0,
            extent=(-81.77, -29.2, 94.13, 73.81),
            coverage="EEA39 countries (Europe) and the French overseas departments",
            years=(1990, 2000, 2006, 2012, 2018),
            attribution="Copernicus Land Monitoring Service, European Environment Agency (EEA)",
            aliases=("clc", "copernicus/corine/v20/100m"),
        ),
        ProductSpec(
            "cdl",
            "USDA NASS Cropland Data Layer (30 m)",
            "USDA/NASS/CDL",
            "cropland",
            CDL_LEGEND,
            30.0,
            extent=(-127.0, 24.0, -65.0, 51.0),
            coverage="the conterminous United States",
            nodata_values=(0,),
            attribution="USDA National Agricultural Statistics Service Cropland Data Layer",
            aliases=("usda", "nass", "usda/nass/cdl"),
        ),
        ProductSpec(
            "aafc",
            "Canada AAFC Annual Crop Inventory (30 m)",
            "AAFC/ACI",
            "landcover",
            AAFC_LEGEND,
            30.0,
            extent=(-135.17, 36.83, -51.24, 62.25),
            coverage="Canada's agricultural regions",
            attribution="Contains information licensed under the Open Government Licence - Canada",
            aliases=("aci", "aafc/aci"),
        ),
        ProductSpec(
            "worldcover",
            "ESA WorldCover 10 m v200 (2021)",
            "ESA/WorldCover/v200",
            "Map",
            WORLDCOVER_LEGEND,
            10.0,
            temporal="static",
            coverage="global land",
            years=(2021,),
            attribution="ESA WorldCover project 2021 / Contains modified Copernicus Sentinel data (2021)",
            aliases=("esa", "esa/worldcover/v200", "wc"),
        ),
        ProductSpec(
            "dynamicworld",
            "Dynamic World V1 (10 m, per Sentinel-2 scene)",
            "GOOGLE/DYNAMICWORLD/V1",
            "label",
            DYNAMICWORLD_LEGEND,
            10.0,
            temporal="per_scene",
            coverage="global, 2015-06-27 on",
            attribution="Dynamic World, produced by Google with the National Geographic Society and "
            "the World Resources Institute (CC-BY 4.0)",
            aliases=("dw", "google/dynamicworld/v1"),
        ),
        ProductSpec(
            "jrc",
            "JRC Global Surface Water v1.4, occurrence (30 m)",
            "JRC/GSW1_4/GlobalSurfaceWater",
            "occurrence",
            JRC_LEGEND,
            30.0,
            kind="continuous",
            temporal="static",
            is_collection=False,
            coverage="global",
            attribution="Source: EC JRC/Google",
            aliases=("gsw", "jrc/gsw1_4/globalsurfacewater"),
        ),
    )
}


def product_spec(name: str) -> ProductSpec:
    """A product by key (corine, cdl, aafc, worldcover, dynamicworld, jrc), alias or asset id."""
    key = (name or "").strip().lower()
    for spec in PRODUCTS.values():
        if key == spec.key or key in spec.aliases or key == spec.asset_id.lower():
            return spec
    raise GeedlError(
        f"Unknown reference product {name!r}; use one of "
        + ", ".join(f"{s.key} ({s.asset_id})" for s in PRODUCTS.values())
        + "."
    )
