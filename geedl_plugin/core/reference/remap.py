"""Class remapping: product classes -> the project's classes, unmapped -> ignore (255).

A product has its own classes (CORINE 213 "Rice fields", CDL 1 "Corn", OSM ``fclass`` "farm");
a project has a few (rice / other, or cropland / grassland / water / forest). A
:class:`RemapTable` says which product values make each project class; every value it does not
name becomes ``ignore`` (255: not a label, never trained on) unless ``others`` names a class for
"everything else the product maps". The table is saved as JSON beside the labels (so the labels
can be remade, and the dock can edit it) and validated against the product's legend: a table
that names a class the product lacks is refused with the product's valid values.

Applying a table to an array is a vectorised lookup (a 64 K table for 8/16-bit rasters,
``searchsorted`` otherwise), so a 10000 x 10000 raster takes a fraction of a second.

JSON layout (``geedl_remap`` is the format version)::

    {"geedl_remap": 1, "source": "corine", "field": null, "ignore": 255, "others": null,
     "classes": [{"id": 0, "name": "other", "color": "#cccccc"}, {"id": 1, "name": "rice", ...}],
     "mapping": [{"from": [213], "to": "rice"}, ...]}

``to`` may be a class id or a class name; ``from`` holds integers for rasters and text for a
vector layer's attribute field (``field``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import GeedlError
from .legends import IGNORE, Legend, ProductSpec, product_spec

FORMAT_VERSION = 1
REMAP_SUFFIX = ".remap.json"
DEFAULT_COLORS = ("#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#b2df8a")


@dataclass
class ProjectClass:
    id: int
    name: str
    color: str = ""


SourceValue = int | str


@dataclass
class RemapTable:
    """Which product values make each project class (see the module docstring)."""

    source: str
    classes: list[ProjectClass]
    mapping: dict[SourceValue, int]
    field: str | None = None
    ignore: int = IGNORE
    others: int | None = None
    name: str = ""
    description: str = ""
    extra: dict[str, Any] = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [c if isinstance(c, ProjectClass) else ProjectClass(**c) for c in self.classes]
        for i, c in enumerate(self.classes):
            if not c.color:
                c.color = DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        self.check()

    # -- validation -----------------------------------------------------------------------------
    def check(self) -> None:
        """Internal consistency: ids fit a byte raster, names unique, targets exist."""
        if not self.classes:
            raise GeedlError("The remap table has no project class; add at least one (id and name).")
        ids = [c.id for c in self.classes]
        names = [c.name for c in self.classes]
        if len(set(ids)) != len(ids):
            raise GeedlError(f"The remap table gives the same class id twice: {ids}.")
        if len(set(names)) != len(names) or any(not str(n).strip() for n in names):
            raise GeedlError(f"Class names must be unique and not empty; got {names}.")
        if not 0 <= int(self.ignore) <= 255:
            raise GeedlError(f"The ignore value {self.ignore} must fit a byte (0-255).")
        bad = [i for i in ids if not 0 <= int(i) <= 254 or int(i) == int(self.ignore)]
        if bad:
            raise GeedlError(
                f"Class id(s) {bad} do not fit a label raster: use 0-254, not the ignore value {self.ignore}."
            )
        known = set(ids)
        unknown = sorted({t for t in self.mapping.values() if t not in known})
        if unknown:
            raise GeedlError(
                f"The remap table maps to class id(s) {unknown} that it does not define "
                f"(classes: {self.describe_classes()})."
            )
        if self.others is not None and self.others not in known:
            raise GeedlError(f"'others' names class {self.others}, which the table does not define.")

    def describe_classes(self) -> str:
        return ", ".join(f"{c.id} {c.name}" for c in self.classes)

    def validate_for(self, legend: Legend, product: str = "the product") -> None:
        """Refuse product values the legend lacks, listing the valid ones."""
        if self.field:
            raise GeedlError(
                f"This remap table reads the attribute field {self.field!r} of a vector "
                f"layer; {product} is a raster product. Use a table made for it."
            )
        wrong = []
        for value in self.mapping:
            try:
                number = int(value)
            except (TypeError, ValueError):
                wrong.append(value)
                continue
            if str(number) != str(value).strip() or number not in legend:
                wrong.append(value)
        if wrong:
            raise GeedlError(
                f"The remap table refers to class value(s) {', '.join(str(w) for w in wrong)} that "
                f"{product} does not have. Its classes are: {legend.describe()}."
            )

    def validate_values(self, found: Iterable[SourceValue], source: str = "the layer") -> list[SourceValue]:
        """For a vector field: refuse a table none of whose values occur; return the absent ones."""
        present = {str(v) for v in found}
        absent = [v for v in self.mapping if str(v) not in present]
        if len(absent) == len(self.mapping) and self.others is None:
            raise GeedlError(
                f"None of the values in the remap table ({', '.join(map(str, self.mapping))}) occurs in "
                f"field {self.field!r} of {source}; values there: {', '.join(sorted(present)[:30])}."
            )
        return absent

    # -- use ------------------------------------------------------------------------------------
    def class_of(self, value: SourceValue) -> int:
        if value in self.mapping:
            return self.mapping[value]
        if str(value) in self.mapping:
            return self.mapping[str(value)]
        return self.ignore if self.others is None else self.others

    @property
    def class_names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.classes}

    def legend(self) -> Legend:
        """The project classes as a legend (what the label raster is styled with)."""
        from .legends import LegendEntry

        return Legend(
            tuple(LegendEntry(c.id, c.name, c.color) for c in sorted(self.classes, key=lambda c: c.id))
        )

    def lookup(self, legend: Legend | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sorted source values, project ids) of every value that maps to a class.

        With ``others`` the legend's values not named in the table map to that class (and
        ``nodata`` values of the product stay ignored: see :func:`apply`)."""
        pairs: dict[int, int] = {}
        if self.others is not None and legend is not None:
            for value in legend.values:
                pairs[int(value)] = int(self.others)
        for value, target in self.mapping.items():
            pairs[int(value)] = int(target)
        keys = np.array(sorted(pairs), dtype=np.int64)
        return keys, np.array([pairs[k] for k in keys], dtype=np.uint8)

    def apply(
        self,
        values: np.ndarray,
        legend: Legend | None = None,
        nodata: Sequence[float] = (),
        valid: np.ndarray | None = None,
    ) -> np.ndarray:
        """Project class ids (uint8) for an array of product values; unmapped, ``nodata`` and
        invalid (``valid`` False, NaN) pixels -> ``ignore``."""
        return apply_lookup(values, *self.lookup(legend), ignore=self.ignore, nodata=nodata, valid=valid)

    def mapped_values(self) -> list[SourceValue]:
        return list(self.mapping)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        grouped: dict[int, list[SourceValue]] = {}
        for value, target in self.mapping.items():
            grouped.setdefault(target, []).append(value)
        return {
            "geedl_remap": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "field": self.field,
            "ignore": self.ignore,
            "others": self.others,
            "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in self.classes],
            "mapping": [
                {"from": values, "to": self.class_names[target]} for target, values in grouped.items()
            ],
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(self.to_json() + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source_name: str = "the remap table") -> RemapTable:
        if not isinstance(data, dict):
            raise GeedlError(f"{source_name} must be a JSON object with 'classes' and 'mapping'.")
        version = data.get("geedl_remap", FORMAT_VERSION)
        if int(version) > FORMAT_VERSION:
            raise GeedlError(
                f"{source_name} was written by a newer geedl (format {version}); update the plugin."
            )
        missing = [key for key in ("source", "classes", "mapping") if key not in data]
        if missing:
            raise GeedlError(
                f"{source_name} lacks {', '.join(missing)}; see the example in the documentation "
                "(classes: [{id, name, color}], mapping: [{from: [values], to: class}])."
            )
        try:
            classes = [
                ProjectClass(int(c["id"]), str(c["name"]), str(c.get("color") or "")) for c in data["classes"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise GeedlError(
                f"{source_name}: every class needs an integer 'id' and a 'name' ({exc})."
            ) from None
        by_name = {c.name: c.id for c in classes}
        ids = {c.id for c in classes}
        field_name = data.get("field") or None

        def target_of(value: Any) -> int:
            if isinstance(value, str) and value in by_name:
                return by_name[value]
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise GeedlError(
                    f"{source_name} maps to {value!r}, which is neither a class id nor a class name "
                    f"({', '.join(by_name)})."
                ) from None
            if number not in ids:
                raise GeedlError(
                    f"{source_name} maps to class id {number}, which it does not define "
                    f"({', '.join(f'{c.id} {c.name}' for c in classes)})."
                )
            return number

        mapping: dict[SourceValue, int] = {}
        rules = data["mapping"]
        if isinstance(rules, dict):  # {"213": "rice"} shorthand
            rules = [{"from": [k], "to": v} for k, v in rules.items()]
        for rule in rules:
            if not isinstance(rule, dict) or "from" not in rule or "to" not in rule:
                raise GeedlError(f"{source_name}: each mapping entry needs 'from' (values) and 'to' (class).")
            values = rule["from"] if isinstance(rule["from"], list) else [rule["from"]]
            target = target_of(rule["to"])
            for raw in values:
                value: SourceValue = str(raw) if field_name else _int_value(raw, source_name)
                if value in mapping and mapping[value] != target:
                    raise GeedlError(
                        f"{source_name} maps value {value!r} to two classes ({mapping[value]} and {target})."
                    )
                mapping[value] = target
        others = data.get("others")
        return cls(
            source=str(data["source"]),
            classes=classes,
            mapping=mapping,
            field=field_name,
            ignore=int(data.get("ignore", IGNORE)),
            others=None if others is None else target_of(others),
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
            extra=dict(data.get("extra") or {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> RemapTable:
        path = Path(path)
        if not path.is_file():
            raise GeedlError(f"Remap table {path} does not exist.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise GeedlError(f"Remap table {path.name} is not valid JSON: {exc}") from None
        return cls.from_dict(data, path.name)


def _int_value(raw: Any, source_name: str) -> int:
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise GeedlError(
            f"{source_name}: raster class value {raw!r} is not an integer. For a vector layer set "
            "'field' to the attribute that holds the classes."
        ) from None
    return number


def remap_path_for(labels_path: str | Path) -> Path:
    """Where the table is saved beside a label file: ``labels.tif`` -> ``labels.remap.json``."""
    path = Path(labels_path)
    return path.with_name(path.stem + REMAP_SUFFIX)


def apply_lookup(
    values: np.ndarray,
    keys: np.ndarray,
    targets: np.ndarray,
    ignore: int = IGNORE,
    nodata: Sequence[float] = (),
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Vectorised value -> class lookup; anything not in ``keys`` becomes ``ignore``."""
    values = np.asarray(values)
    out = np.full(values.shape, ignore, dtype=np.uint8)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        integral = finite & (values == np.round(np.where(finite, values, 0)))
        ints = np.where(integral, values, 0).astype(np.int64)
        ok = integral
    elif values.dtype.kind in "iu":
        ints, ok = values, None
    elif values.dtype.kind == "b":
        ints, ok = values.astype(np.uint8), None
    else:
        raise GeedlError(f"Cannot remap values of type {values.dtype}; a class raster holds integers.")
    if values.dtype.kind in "iub" and np.dtype(ints.dtype).itemsize <= 2:
        # small integer types: a dense table indexed by value (the fast path for class rasters)
        offset = 0 if np.dtype(ints.dtype).kind in "ub" else 32768
        table = np.full(65536, ignore, dtype=np.uint8)
        inside = (keys + offset >= 0) & (keys + offset < 65536)
        table[keys[inside] + offset] = targets[inside]
        out = table[ints.astype(np.int64) + offset] if offset else table[ints]
    elif keys.size:
        flat = ints.astype(np.int64, copy=False)
        index = np.clip(np.searchsorted(keys, flat), 0, keys.size - 1)
        hit = keys[index] == flat
        if ok is not None:
            hit &= ok
        out = np.where(hit, targets[index], np.uint8(ignore)).astype(np.uint8)
    for value in nodata:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        out[values == value] = ignore
    if valid is not None:
        out[~valid] = ignore
    return out.astype(np.uint8, copy=False)


# -- presets (the seeds' cases) --------------------------------------------------------------------


def _table(
    source: str,
    name: str,
    description: str,
    classes: list[tuple[int, str, str]],
    mapping: dict[SourceValue, str],
    others: str | None = None,
    field_name: str | None = None,
) -> RemapTable:
    project = [ProjectClass(i, n, c) for i, n, c in classes]
    ids = {c.name: c.id for c in project}
    return RemapTable(
        source=source,
        classes=project,
        mapping={k: ids[v] for k, v in mapping.items()},
        field=field_name,
        others=None if others is None else ids[others],
        name=name,
        description=description,
    )


def _many(values: Iterable[int], target: str) -> dict[SourceValue, str]:
    return {int(v): target for v in values}


def _presets() -> dict[str, RemapTable]:
    cdl_non_crop = (
        63,
        64,
        65,
        82,
        83,
        87,
        111,
        112,
        121,
        122,
        123,
        124,
        131,
        141,
        142,
        143,
        152,
        176,
        190,
        195,
    )
    aafc_non_crop = (20, 30, 34, 50, 80, 85, 110, 200, 210, 220, 230)
    return {
        t.name: t
        for t in (
            _table(
                "corine",
                "corine-rice",
                "Document 002: CORINE 213 'Rice fields' -> rice, every other CORINE class -> other.",
                [(0, "other", "#cccccc"), (1, "rice", "#e6e600")],
                {213: "rice"},
                others="other",
            ),
            _table(
                "cdl",
                "cdl-crops",
                "Document 004: main USDA CDL crops (corn, soybeans, wheat incl. double crop 26, cotton, "
                "rice, hay) and non-crop land; other crops ignored.",
                [
                    (0, "non_crop", "#9c9c9c"),
                    (1, "corn", "#ffd400"),
                    (2, "soybeans", "#267300"),
                    (3, "wheat", "#a87000"),
                    (4, "cotton", "#ff2626"),
                    (5, "rice", "#00a9e6"),
                    (6, "hay", "#ffa8e3"),
                ],
                {
                    **_many(cdl_non_crop, "non_crop"),
                    1: "corn",
                    5: "soybeans",
                    **_many((22, 23, 24, 26), "wheat"),
                    2: "cotton",
                    3: "rice",
                    36: "hay",
                    37: "hay",
                },
            ),
            _table(
                "aafc",
                "aafc-crops",
                "Document 004: main Canadian crops of the AAFC inventory and non-crop land; other crops "
                "ignored.",
                [
                    (0, "non_crop", "#996666"),
                    (1, "corn", "#ffff99"),
                    (2, "soybeans", "#cc9933"),
                    (3, "wheat", "#a7b34d"),
                    (4, "canola", "#d6ff70"),
                    (5, "barley", "#dae31d"),
                ],
                {
                    **_many(aafc_non_crop, "non_crop"),
                    147: "corn",
                    158: "soybeans",
                    **_many((140, 145, 146), "wheat"),
                    153: "canola",
                    133: "barley",
                },
            ),
            _table(
                "worldcover",
                "worldcover-water-cropland-tree",
                "WorldCover 80 permanent water -> water, 40 cropland -> cropland, 10 tree cover -> tree; "
                "other classes ignored.",
                [(0, "water", "#0064c8"), (1, "cropland", "#f096ff"), (2, "tree", "#006400")],
                {80: "water", 40: "cropland", 10: "tree"},
            ),
            _table(
                "worldcover",
                "worldcover-water",
                "WorldCover 80 permanent water -> water; every other class -> other.",
                [(0, "other", "#b4b4b4"), (1, "water", "#0064c8")],
                {80: "water"},
                others="other",
            ),
            _table(
                "worldcover",
                "worldcover-cropland",
                "WorldCover 40 cropland -> cropland; every other class -> other.",
                [(0, "other", "#b4b4b4"), (1, "cropland", "#f096ff")],
                {40: "cropland"},
                others="other",
            ),
            _table(
                "worldcover",
                "worldcover-tree",
                "WorldCover 10 tree cover and 95 mangroves -> tree; rest -> other.",
                [(0, "other", "#b4b4b4"), (1, "tree", "#006400")],
                {10: "tree", 95: "tree"},
                others="other",
            ),
            _table(
                "dynamicworld",
                "dynamicworld-water-crops-trees",
                "Dynamic World label 0 water, 4 crops, 1 trees; other classes ignored.",
                [(0, "water", "#419bdf"), (1, "crops", "#e49635"), (2, "trees", "#397d49")],
                {0: "water", 4: "crops", 1: "trees"},
            ),
            _table(
                "jrc",
                "jrc-water",
                "JRC occurrence >= threshold -> water, below -> not_water.",
                [(0, "not_water", "#ffffff"), (1, "water", "#0000ff")],
                {0: "not_water", 1: "water"},
            ),
            _table(
                "osm",
                "osm-landuse",
                "OpenStreetMap land use (Geofabrik 'fclass'): farm -> cropland; meadow, grass -> grassland; "
                "water -> water; forest -> forest; other land uses ignored.",
                [
                    (0, "cropland", "#f096ff"),
                    (1, "grassland", "#ffff4c"),
                    (2, "water", "#0064c8"),
                    (3, "forest", "#006400"),
                ],
                {
                    "farm": "cropland",
                    "meadow": "grassland",
                    "grass": "grassland",
                    "water": "water",
                    "forest": "forest",
                },
                field_name="fclass",
            ),
        )
    }


PRESETS: dict[str, RemapTable] = _presets()


def preset(name: str) -> RemapTable:
    """A fresh copy of a built-in table (``corine-rice``, ``cdl-crops``, ``osm-landuse`` ...)."""
    key = (name or "").strip().lower()
    if key not in PRESETS:
        raise GeedlError(
            f"Unknown remap preset {name!r}; built-in presets: "
            + "; ".join(f"{k} ({t.source})" for k, t in PRESETS.items())
            + "."
        )
    return RemapTable.from_dict(PRESETS[key].to_dict(), f"preset {key}")


def identity_table(product: str | ProductSpec) -> RemapTable:
    """Every product class as its own project class (ids 0..n-1 in legend order, since product
    values like CORINE 523 do not fit a byte label raster); nodata values are left out."""
    spec = product if isinstance(product, ProductSpec) else product_spec(product)
    entries = [e for e in spec.legend.entries if e.value not in spec.nodata_values]
    if len(entries) > 254:
        raise GeedlError(
            f"{spec.title} has {len(entries)} classes, more than a label raster holds; use a remap."
        )
    classes = [ProjectClass(i, e.name, e.color) for i, e in enumerate(entries)]
    names = _unique_names([c.name for c in classes])
    for c, n in zip(classes, names):
        c.name = n
    return RemapTable(
        source=spec.key,
        classes=classes,
        mapping={e.value: i for i, e in enumerate(entries)},
        name=f"{spec.key}-all",
        description=f"All {spec.title} classes, renumbered 0..{len(entries) - 1}.",
    )


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name} ({count + 1})")
    return out


def check_table_for_product(table: RemapTable, product: str | ProductSpec) -> ProductSpec:
    """The product of a table: its legend validates the table; a table made for another product
    is refused (a CDL table on CORINE maps nothing sensible)."""
    spec = product if isinstance(product, ProductSpec) else product_spec(product)
    source = (table.source or "").strip().lower()
    if source and source not in ("any", "local"):
        try:
            own = product_spec(source)
        except GeedlError:
            own = None
        if own is not None and own.key != spec.key:
            raise GeedlError(
                f"The remap table was made for {own.title}, not {spec.title}; choose a table "
                f"for {spec.key} (e.g. a preset: "
                + ", ".join(k for k, t in PRESETS.items() if t.source == spec.key)
                + ")."
            )
    table.validate_for(spec.legend, spec.title)
    return spec
