"""Class legends: which class id means what, in which colour.

A legend travels with every label product so that each later step (polygons, the QGIS style,
rasterizing edited polygons back, chips, training) agrees on ids and names without the user
retyping them. It is stored as JSON in the ``GEEDL_LEGEND`` metadata item of masks and label
layers, and mirrored into a GDAL colour table and category names so QGIS shows a class raster
with its colours and names out of the box.

Class ids are 0..254; 255 is reserved for *ignore* (no label, nodata, masked clouds).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from osgeo import gdal

from ..errors import GeedlError

IGNORE = 255
LEGEND_KEY = "GEEDL_LEGEND"

# colours chosen to read on a false-colour composite; reused in order for classes without one
PALETTE = (
    "#1f78b4",
    "#33a02c",
    "#e31a1c",
    "#ff7f00",
    "#6a3d9a",
    "#b15928",
    "#a6cee3",
    "#b2df8a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
    "#ffff99",
)
NAMED_COLOURS = {
    "water": "#1f78b4",
    "crop": "#33a02c",
    "soil": "#b15928",
    "other": "#bdbdbd",
    "background": "#bdbdbd",
    "forest": "#1b5e20",
    "farm": "#e6c229",
    "meadow": "#a6d96a",
    "grass": "#b2df8a",
    "residential": "#e31a1c",
    "scrub": "#8c6d31",
    "wetland": "#6a3d9a",
}


def _valid_colour(text: str) -> bool:
    if not (isinstance(text, str) and len(text) == 7 and text.startswith("#")):
        return False
    try:
        int(text[1:], 16)
    except ValueError:
        return False
    return True


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@dataclass(frozen=True)
class LegendClass:
    """One class: its id in the rasters, its name, and a ``#rrggbb`` colour ('' picks one)."""

    id: int
    name: str
    color: str = ""


@dataclass
class Legend:
    """Ordered classes of a label product; ``background`` is the id meaning "none of the classes"
    (not drawn as polygons), or None when every class is a real class."""

    classes: list[LegendClass] = field(default_factory=list)
    background: int | None = None

    def __post_init__(self) -> None:
        seen: set[int] = set()
        fixed: list[LegendClass] = []
        for i, cls in enumerate(self.classes):
            if isinstance(cls, dict):
                cls = LegendClass(int(cls["id"]), str(cls["name"]), str(cls.get("color", "")))
            if not isinstance(cls.id, int) or isinstance(cls.id, bool) or not 0 <= cls.id < IGNORE:
                raise GeedlError(
                    f"Class id {cls.id!r} ({cls.name}) must be a whole number from 0 to 254; "
                    f"{IGNORE} means 'ignore'."
                )
            if cls.id in seen:
                raise GeedlError(
                    f"Class id {cls.id} is used twice in the legend; give each class its own id."
                )
            if not str(cls.name).strip():
                raise GeedlError(f"Class {cls.id} has no name; name every class (e.g. 'water').")
            seen.add(cls.id)
            color = (
                cls.color
                if _valid_colour(cls.color)
                else NAMED_COLOURS.get(cls.name.lower(), PALETTE[i % len(PALETTE)])
            )
            fixed.append(LegendClass(cls.id, str(cls.name).strip(), color.lower()))
        self.classes = fixed
        if self.background is not None and self.background not in seen:
            raise GeedlError(f"Background class {self.background} is not in the legend.")

    # -- lookups ----------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    @property
    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.classes}

    @property
    def colors(self) -> dict[int, str]:
        return {c.id: c.color for c in self.classes}

    @property
    def foreground_ids(self) -> list[int]:
        """The classes drawn as polygons: all but the background."""
        return [c.id for c in self.classes if c.id != self.background]

    def name_of(self, class_id: int) -> str:
        return self.names.get(int(class_id), f"class {class_id}")

    def id_of(self, name: str) -> int:
        for cls in self.classes:
            if cls.name.lower() == str(name).strip().lower():
                return cls.id
        raise GeedlError(f"No class named {name!r} in the legend ({', '.join(self.names.values())}).")

    def check_ids(self, ids: Iterable[int], where: str) -> None:
        """Raise a clear error when ``ids`` (found in ``where``) are not legend classes."""
        unknown = sorted({int(i) for i in ids} - set(self.ids) - {IGNORE})
        if unknown:
            listed = ", ".join(f"{c.id} {c.name}" for c in self.classes)
            raise GeedlError(
                f"{where} has class id(s) {', '.join(map(str, unknown))} that the legend does "
                f"not define (legend: {listed}). Fix those features' class ids or add the "
                "classes to the legend."
            )

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in self.classes],
            "background": self.background,
            "ignore": IGNORE,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Legend:
        try:
            classes = [
                LegendClass(int(c["id"]), str(c["name"]), str(c.get("color", ""))) for c in data["classes"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise GeedlError(f"A legend must list classes with 'id' and 'name' ({exc}).") from exc
        background = data.get("background")
        return cls(classes, None if background is None else int(background))

    @classmethod
    def from_json(cls, text: str) -> Legend:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise GeedlError(f"Damaged legend metadata: {exc}") from exc

    @classmethod
    def from_names(cls, names: dict[int, str], background: int | None = None) -> Legend:
        return cls([LegendClass(int(i), str(n)) for i, n in sorted(names.items())], background)

    # -- GDAL ------------------------------------------------------------------------------
    def color_table(self) -> gdal.ColorTable:
        table = gdal.ColorTable()
        for value in range(256):
            table.SetColorEntry(value, (0, 0, 0, 0))
        for cls in self.classes:
            table.SetColorEntry(cls.id, (*hex_to_rgb(cls.color), 255))
        return table

    def category_names(self) -> list[str]:
        names = [""] * 256
        for cls in self.classes:
            names[cls.id] = cls.name
        names[IGNORE] = "ignore"
        return names

    def apply_to_band(self, band: gdal.Band) -> None:
        """Colour table, category names and nodata=255 on a uint8 class band."""
        band.SetNoDataValue(IGNORE)
        band.SetColorTable(self.color_table())
        band.SetCategoryNames(self.category_names())
        band.SetMetadataItem(LEGEND_KEY, self.to_json())


def write_legend(dataset: gdal.Dataset, legend: Legend, band_index: int = 1) -> None:
    """Store ``legend`` on a class raster (dataset metadata + band colour table and names)."""
    dataset.SetMetadataItem(LEGEND_KEY, legend.to_json())
    legend.apply_to_band(dataset.GetRasterBand(band_index))


def read_legend(dataset: gdal.Dataset) -> Legend | None:
    """The legend stored by :func:`write_legend`, else one built from GDAL category names."""
    text = dataset.GetMetadataItem(LEGEND_KEY) or dataset.GetRasterBand(1).GetMetadataItem(LEGEND_KEY)
    if text:
        return Legend.from_json(text)
    names = dataset.GetRasterBand(1).GetCategoryNames()
    if names:
        found = {i: n for i, n in enumerate(names) if n and i != IGNORE}
        if found:
            return Legend.from_names(found)
    return None


def default_legend(ids: Iterable[int]) -> Legend:
    """A legend for bare class ids (``class 1`` ...), when a raster carries none."""
    return Legend([LegendClass(int(i), f"class {int(i)}") for i in sorted(set(ids)) if int(i) != IGNORE])
