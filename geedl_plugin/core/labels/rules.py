"""Rule-based label masks: named, documented, parameterised rules, and the mask writer.

A rule turns composite bands into a yes/no answer per pixel (plus, for quality-band rules,
pixels to *ignore*: clouds, shadows, snow). Rules are plain dataclasses whose thresholds are
fields, so the GUI can show them, the CLI can set them and the Earth Engine helper can compile
exactly the same rule: :meth:`Rule.to_expression` gives it in Earth Engine expression syntax
(band names as variables; ``HUE``, ``NDVI``, ``MNDWI``, ``NDWI`` are the built-in indices of
:mod:`..indices`, computed from the bands when the composite does not already hold them).

A :class:`RuleSet` combines rules into one class raster with a :class:`~.legend.Legend`: the
first rule that matches a pixel gives its class (list order is priority), pixels no rule
matches get the background class (or *ignore* when there is none), and pixels that any rule
ignores, or where an input band has no data, are 255 (*ignore*).

Rules (document 000 and 001):

* :class:`CropRule` - document 000: crop = ``HUE < t_hue and NDVI > t_ndvi`` (0 and 0). Measured
  on a Brandenburg winter scene it fires on about 92 % of forest pixels too: it marks green
  vegetation, so treat it as a starting point and adjust thresholds.
* :class:`SoilRule` - document 000: soil = ``HUE > t_hue`` (0).
* :class:`WaterRule` - ``MNDWI > t`` (Xu 2006), ``NDWI > t`` (McFeeters 1996), the Landsat
  Collection 2 ``QA_PIXEL`` water bit (bit 7; fill bit 0, cloud bit 3, shadow bit 4 and snow
  bit 5 -> ignore), or the Sentinel-2 scene classification ``SCL == 6`` (SCL no data,
  saturated, cloud shadow, clouds, cirrus and snow -> ignore). ``method="auto"`` picks SCL,
  then QA_PIXEL, then MNDWI, then NDWI, from the bands the composite has.
* :class:`ExpressionRule` - any Earth Engine expression, e.g. ``NDVI > 0.3 && B11 < 2000``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from osgeo import gdal

from ..atomic import atomic_path, check_writable
from ..errors import GeedlError
from ..expression import parse
from ..indices import BUILTIN_INDICES
from ..progress import Feedback, silent
from ..raster_io import band_descriptions, create_geotiff, iter_windows, open_raster
from .legend import IGNORE, Legend, LegendClass, write_legend

gdal.UseExceptions()

RULES_KEY = "GEEDL_RULES"


def _num(value: float) -> str:
    """A threshold as expression text: 0 not 0.0, full precision otherwise."""
    value = float(value)
    if not math.isfinite(value):
        raise GeedlError(f"Threshold {value} must be a finite number.")
    return str(int(value)) if value.is_integer() else repr(value)


# -- band resolution ------------------------------------------------------------------------


def raw_bands_needed(
    names: Sequence[str] | frozenset[str], available: Sequence[str], who: str = "The rule"
) -> list[str]:
    """Composite bands to read for ``names``; built-in indices missing from the composite are
    computed from their bands. Raises before any pixel is read when something cannot be had."""
    needed: list[str] = []
    missing: list[str] = []
    for name in sorted(names):
        if name in available:
            needed.append(name)
        elif name in BUILTIN_INDICES and all(b in available for b in BUILTIN_INDICES[name].bands):
            needed.extend(sorted(BUILTIN_INDICES[name].bands))
        elif name in BUILTIN_INDICES:
            lacking = sorted(b for b in BUILTIN_INDICES[name].bands if b not in available)
            missing.append(f"{name} (or {', '.join(lacking)} to compute it)")
        else:
            missing.append(name)
    if missing:
        raise GeedlError(
            f"{who} needs {'; '.join(missing)}, which the composite does not have. "
            f"Its bands are: {', '.join(available) or 'none (no band names)'}. Add the "
            "band or index to the composite recipe, or write the rule with these bands."
        )
    return sorted(set(needed), key=list(available).index)


def compute_values(
    names: Sequence[str] | frozenset[str], raw: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``raw`` plus the built-in indices in ``names`` that ``raw`` lacks."""
    values = dict(raw)
    for name in names:
        if name not in values and name in BUILTIN_INDICES:
            values[name] = BUILTIN_INDICES[name].parsed.evaluate(raw, order=list(raw))
    return values


# -- rules ------------------------------------------------------------------------------------


@dataclass
class Rule:
    """Base class: subclasses set ``kind`` and implement :meth:`to_expression`."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def to_expression(self) -> str:
        """The positive class as an Earth Engine expression over band/index names."""
        raise NotImplementedError

    def ignore_expression(self) -> str | None:
        """Pixels to ignore (clouds, fill) as an Earth Engine expression, or None."""
        return None

    def resolve(self, available: Sequence[str]) -> Rule:
        """The concrete rule for a composite with ``available`` bands (``auto`` choices)."""
        return self

    def required_bands(self) -> frozenset[str]:
        names = set(parse(self.to_expression()).names)
        ignore = self.ignore_expression()
        if ignore:
            names |= parse(ignore).names
        return frozenset(names)

    def thresholds(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def evaluate(self, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(positive, ignore) boolean arrays from band/index arrays keyed by name."""
        positive = parse(self.to_expression()).evaluate(values) != 0
        ignore_text = self.ignore_expression()
        ignore = parse(ignore_text).evaluate(values) != 0 if ignore_text else None
        return positive, ignore

    def label(self) -> str:
        """Short text stored in the label layer's ``rule`` field."""
        text = self.to_expression()
        return f"{self.kind}: {text}" if self.kind != "expression" else text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.thresholds()}


@dataclass
class CropRule(Rule):
    """Document 000: crop = HUE < t_hue and NDVI > t_ndvi (green vegetation, in practice)."""

    t_hue: float = 0.0
    t_ndvi: float = 0.0
    kind: ClassVar[str] = "crop"
    description: ClassVar[str] = "crop: HUE < t_hue and NDVI > t_ndvi (document 000)"

    def to_expression(self) -> str:
        return f"HUE < {_num(self.t_hue)} && NDVI > {_num(self.t_ndvi)}"


@dataclass
class SoilRule(Rule):
    """Document 000: soil = HUE > t_hue."""

    t_hue: float = 0.0
    kind: ClassVar[str] = "soil"
    description: ClassVar[str] = "soil: HUE > t_hue (document 000)"

    def to_expression(self) -> str:
        return f"HUE > {_num(self.t_hue)}"


WATER_METHODS = ("auto", "mndwi", "ndwi", "qa_pixel", "scl")
# Landsat Collection 2 QA_PIXEL bits (USGS LSDS-1619 / LSDS-1328)
QA_FILL, QA_DILATED_CLOUD, QA_CIRRUS, QA_CLOUD, QA_SHADOW, QA_SNOW, QA_CLEAR, QA_WATER = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
)
# Sentinel-2 L2A scene classification: 6 = water; these are not trusted either way
SCL_WATER = 6
SCL_IGNORE = (0, 1, 3, 8, 9, 10, 11)  # no data, saturated, cloud shadow, cloud medium/high, cirrus, snow


def _bit_test(band: str, bit: int) -> str:
    """``bit`` of an integer band in expression syntax (Earth Engine's grammar has no ``&``)."""
    return f"floor({band} / {2**bit}) % 2 == 1" if bit else f"{band} % 2 == 1"


@dataclass
class WaterRule(Rule):
    """Water from an index threshold or from a quality band.

    ``method``: ``mndwi`` (MNDWI > threshold), ``ndwi`` (NDWI > threshold), ``qa_pixel`` (Landsat
    C2 QA_PIXEL bit 7; fill, cloud, shadow, snow and optionally dilated cloud -> ignore), ``scl``
    (Sentinel-2 SCL == 6; no data, saturated, shadow, clouds, cirrus, snow -> ignore), ``auto``.
    """

    method: str = "auto"
    threshold: float = 0.0
    mask_dilated_cloud: bool = False
    kind: ClassVar[str] = "water"
    description: ClassVar[str] = (
        "water: MNDWI/NDWI > threshold, Landsat QA_PIXEL bit 7 or Sentinel-2 SCL == 6"
    )

    def __post_init__(self) -> None:
        self.method = str(self.method).strip().lower().replace("-", "_")
        if self.method == "qa":
            self.method = "qa_pixel"
        if self.method not in WATER_METHODS:
            raise GeedlError(f"Unknown water method {self.method!r}; use one of {', '.join(WATER_METHODS)}.")

    def resolve(self, available: Sequence[str]) -> WaterRule:
        if self.method != "auto":
            return self
        if "SCL" in available:
            method = "scl"
        elif "QA_PIXEL" in available:
            method = "qa_pixel"
        elif "MNDWI" in available or {"B3", "B11"} <= set(available):
            method = "mndwi"
        elif "NDWI" in available or {"B3", "B8"} <= set(available):
            method = "ndwi"
        else:
            raise GeedlError(
                "The water rule needs an SCL or QA_PIXEL band, MNDWI (or B3 and B11) or NDWI "
                f"(or B3 and B8); the composite has {', '.join(available) or 'no named bands'}."
            )
        return WaterRule(method, self.threshold, self.mask_dilated_cloud)

    def _concrete(self) -> str:
        return "mndwi" if self.method == "auto" else self.method

    def to_expression(self) -> str:
        method = self._concrete()
        if method == "mndwi":
            return f"MNDWI > {_num(self.threshold)}"
        if method == "ndwi":
            return f"NDWI > {_num(self.threshold)}"
        if method == "scl":
            return f"SCL == {SCL_WATER}"
        return _bit_test("QA_PIXEL", QA_WATER)

    def qa_ignore_bits(self) -> tuple[int, ...]:
        bits = [QA_FILL, QA_CLOUD, QA_SHADOW, QA_SNOW]
        if self.mask_dilated_cloud:
            bits.insert(1, QA_DILATED_CLOUD)
        return tuple(bits)

    def ignore_expression(self) -> str | None:
        method = self._concrete()
        if method == "scl":
            return " || ".join(f"SCL == {v}" for v in SCL_IGNORE)
        if method == "qa_pixel":
            return " || ".join(_bit_test("QA_PIXEL", bit) for bit in self.qa_ignore_bits())
        return None

    def evaluate(self, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        if self._concrete() != "qa_pixel":
            return super().evaluate(values)
        # integer bit tests: exact, and the same answer as the floor/% expression
        qa = np.asarray(values["QA_PIXEL"])
        finite = np.isfinite(qa) if qa.dtype.kind == "f" else np.ones(qa.shape, dtype=bool)
        bits = np.where(finite, qa, 0).astype(np.int64)
        positive = ((bits >> QA_WATER) & 1).astype(bool)
        ignore = ~finite
        for bit in self.qa_ignore_bits():
            ignore |= ((bits >> bit) & 1).astype(bool)
        return positive & ~ignore, ignore


@dataclass
class ExpressionRule(Rule):
    """Any band math in Earth Engine expression syntax, true (non-zero) = the class."""

    expression: str = ""
    kind: ClassVar[str] = "expression"
    description: ClassVar[str] = "any Earth Engine expression, e.g. NDVI > 0.3 && B11 < 2000"

    def __post_init__(self) -> None:
        self.expression = str(self.expression).strip()
        parse(self.expression)  # a syntax error now, not halfway through a raster

    def to_expression(self) -> str:
        return self.expression


RULE_KINDS: dict[str, type[Rule]] = {r.kind: r for r in (CropRule, SoilRule, WaterRule, ExpressionRule)}
_ALIASES = {"hue": "t_hue", "ndvi": "t_ndvi", "t": "threshold", "water_method": "method"}
# the threshold that a bare ``--threshold 0.2`` sets, per rule
MAIN_THRESHOLD = {"crop": "t_ndvi", "soil": "t_hue", "water": "threshold"}


def make_rule(kind: str, **params: Any) -> Rule:
    """A rule by kind with thresholds by name (aliases: hue, ndvi, t, water_method)."""
    cls = RULE_KINDS.get(kind)
    if cls is None:
        raise GeedlError(f"Unknown rule {kind!r}; use one of {', '.join(RULE_KINDS)} or an expression.")
    allowed = {f.name: f for f in fields(cls)}
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        name = _ALIASES.get(key, key)
        if name == "threshold" and "threshold" not in allowed and kind in MAIN_THRESHOLD:
            name = MAIN_THRESHOLD[kind]
        if name not in allowed:
            raise GeedlError(
                f"Rule {kind!r} has no parameter {key!r}; it takes {', '.join(allowed) or 'no parameters'}."
            )
        default = allowed[name].default
        try:
            if isinstance(default, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif isinstance(default, float):
                value = float(value)
        except (TypeError, ValueError) as exc:
            raise GeedlError(f"Parameter {key} of rule {kind!r} must be a number, got {value!r}.") from exc
        clean[name] = value
    return cls(**clean)


# -- rule sets --------------------------------------------------------------------------------


@dataclass
class ClassRule:
    """A class of a rule set: id, name, colour and the rule that assigns it."""

    class_id: int
    name: str
    rule: Rule
    color: str = ""


@dataclass
class RuleSet:
    """Several classes into one class raster; first matching rule wins; see the module docstring."""

    classes: list[ClassRule]
    background: LegendClass | None = field(default_factory=lambda: LegendClass(0, "other"))
    name: str = ""

    def __post_init__(self) -> None:
        if not self.classes:
            raise GeedlError("A rule set needs at least one class rule.")
        self.legend()  # validates ids and names
        if not self.name:
            self.name = "+".join(c.name for c in self.classes)

    def legend(self) -> Legend:
        classes = [LegendClass(c.class_id, c.name, c.color) for c in self.classes]
        if self.background is not None:
            classes.insert(0, self.background)
        return Legend(classes, self.background.id if self.background is not None else None)

    def resolve(self, available: Sequence[str]) -> RuleSet:
        return RuleSet(
            [ClassRule(c.class_id, c.name, c.rule.resolve(available), c.color) for c in self.classes],
            self.background,
            self.name,
        )

    def required_bands(self) -> frozenset[str]:
        names: set[str] = set()
        for cls in self.classes:
            names |= cls.rule.required_bands()
        return frozenset(names)

    def check_bands(self, available: Sequence[str]) -> list[str]:
        """The composite bands to read; a clear error naming the rule when one is missing."""
        needed: set[str] = set()
        for cls in self.classes:
            needed |= set(
                raw_bands_needed(
                    cls.rule.required_bands(),
                    available,
                    who=f"Rule {cls.name!r} ({cls.rule.to_expression()})",
                )
            )
        return [b for b in available if b in needed]

    def apply(self, values: Mapping[str, np.ndarray], invalid: np.ndarray | None = None) -> np.ndarray:
        """The class raster (uint8) for one window of band/index arrays."""
        shape = next(iter(values.values())).shape
        fill = self.background.id if self.background is not None else IGNORE
        out = np.full(shape, fill, dtype=np.uint8)
        assigned = np.zeros(shape, dtype=bool)
        ignore = np.zeros(shape, dtype=bool) if invalid is None else invalid.copy()
        for cls in self.classes:
            positive, skip = cls.rule.evaluate(values)
            positive = np.broadcast_to(positive, shape)
            new = positive & ~assigned
            out[new] = cls.class_id
            assigned |= positive
            if skip is not None:
                ignore |= np.broadcast_to(skip, shape)
        out[ignore] = IGNORE
        return out

    def to_expression(self) -> str:
        """Class ids as one Earth Engine expression (nested ``? :``); ignore via ignore_expression."""
        text = _num(self.background.id) if self.background is not None else str(IGNORE)
        for cls in reversed(self.classes):
            text = f"({cls.rule.to_expression()}) ? {cls.class_id} : ({text})"
        return text

    def ignore_expression(self) -> str | None:
        parts = [c.rule.ignore_expression() for c in self.classes if c.rule.ignore_expression()]
        return " || ".join(f"({p})" for p in parts) if parts else None

    def label(self) -> str:
        return "; ".join(f"{c.name}={c.rule.label()}" for c in self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": [
                {"id": c.class_id, "name": c.name, "color": c.color, "rule": c.rule.to_dict()}
                for c in self.classes
            ],
            "background": None
            if self.background is None
            else {"id": self.background.id, "name": self.background.name, "color": self.background.color},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleSet:
        try:
            classes = []
            for item in data["classes"]:
                spec = (
                    dict(item["rule"])
                    if isinstance(item.get("rule"), Mapping)
                    else {"kind": "expression", "expression": item.get("expression") or item.get("rule")}
                )
                kind = spec.pop("kind", "expression")
                classes.append(
                    ClassRule(
                        int(item["id"]),
                        str(item["name"]),
                        make_rule(kind, **spec),
                        str(item.get("color", "")),
                    )
                )
            bg = data.get("background", {"id": 0, "name": "other"})
        except (KeyError, TypeError, ValueError) as exc:
            raise GeedlError(
                f"A rule set lists classes with 'id', 'name' and 'rule' or 'expression' ({exc})."
            ) from exc
        background = (
            None if bg is None else LegendClass(int(bg["id"]), str(bg["name"]), str(bg.get("color", "")))
        )
        return cls(classes, background, str(data.get("name", "")))


def single_rule(rule: Rule, name: str | None = None, class_id: int = 1, color: str = "") -> RuleSet:
    """A binary mask: ``class_id`` where the rule holds, 0 (``other``) elsewhere."""
    label = name or (rule.kind if rule.kind != "expression" else "positive")
    return RuleSet([ClassRule(class_id, label, rule, color)], LegendClass(0, "other"), label)


def crop_soil_rules(t_hue: float = 0.0, t_ndvi: float = 0.0) -> RuleSet:
    """Document 000's two masks in one raster: 1 crop, 2 soil, 0 other."""
    return RuleSet(
        [ClassRule(1, "crop", CropRule(t_hue, t_ndvi)), ClassRule(2, "soil", SoilRule(t_hue))],
        LegendClass(0, "other"),
        "crop+soil",
    )


def rule_from_spec(spec: str | Rule | RuleSet, **params: Any) -> RuleSet:
    """``crop``, ``soil``, ``crop+soil``, ``water``, a rule-set JSON file, or an expression."""
    if isinstance(spec, RuleSet):
        return spec
    if isinstance(spec, Rule):
        return single_rule(spec)
    text = str(spec).strip()
    key = text.lower()
    if key in ("crop+soil", "crop_soil", "cropsoil"):
        extra = {k: v for k, v in params.items() if v is not None}
        rules = make_rule("crop", **extra)
        return crop_soil_rules(rules.t_hue, rules.t_ndvi)
    if key in RULE_KINDS and key != "expression":
        return single_rule(make_rule(key, **params))
    if key.endswith(".json") and Path(text).expanduser().exists():
        try:
            data = json.loads(Path(text).expanduser().read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GeedlError(f"Cannot read the rule set {text}: {exc}") from exc
        return RuleSet.from_dict(data)
    unused = [k for k, v in params.items() if v is not None and k != "name"]
    if unused:
        raise GeedlError(
            f"Thresholds ({', '.join(unused)}) apply to the crop, soil and water rules; "
            "write them into the expression instead."
        )
    return single_rule(ExpressionRule(text), name=params.get("name"))


# -- the mask step -----------------------------------------------------------------------------


@dataclass
class AutolabelParams:
    """Composite -> class mask. ``rule``: a RuleSet, a Rule, or a spec for :func:`rule_from_spec`
    with ``rule_params`` (thresholds by name); ``backup_existing`` copies an existing mask aside."""

    composite: str | Path
    out_mask: str | Path
    rule: RuleSet | Rule | str = "crop"
    rule_params: dict[str, Any] = field(default_factory=dict)
    block_size: int = 1024
    backup_existing: bool = False


@dataclass
class AutolabelResult:
    path: Path
    legend: Legend
    rules: RuleSet
    class_counts: dict[int, int]
    ignored: int
    total: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        names = self.legend.names
        return {
            "mask": str(self.path),
            "rule": self.rules.label(),
            "classes": {names.get(k, str(k)): v for k, v in sorted(self.class_counts.items())},
            "ignored_pixels": self.ignored,
            "pixels": self.total,
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }


def _read_window(dataset: gdal.Dataset, index: int, window: Any) -> np.ndarray:
    band = dataset.GetRasterBand(index)
    values = band.ReadAsArray(window.xoff, window.yoff, window.xsize, window.ysize).astype(
        np.float32, copy=False
    )
    nodata = band.GetNoDataValue()
    if nodata is not None and not math.isnan(nodata):
        values = np.where(values == np.float32(nodata), np.float32(np.nan), values)
    return values


def run_autolabel(params: AutolabelParams, feedback: Feedback | None = None) -> AutolabelResult:
    """Write a uint8 class mask (255 = ignore) with legend, colour table and category names.

    Everything that can be wrong (missing bands, no CRS, unwritable output) is checked before
    the first window is computed; windows stream so a large composite never sits in memory.
    """
    feedback = feedback or silent()
    started = time.monotonic()
    dataset = open_raster(params.composite)
    available = band_descriptions(dataset)
    if not any(available):
        raise GeedlError(
            f"{params.composite} has no band names (GDAL band descriptions), so rules cannot "
            "find B4, NDVI... Make the composite with geedl or set the band descriptions."
        )
    rules = rule_from_spec(params.rule, **params.rule_params).resolve(available)
    to_read = rules.check_bands(available)
    if not dataset.GetProjection():
        raise GeedlError(
            f"{params.composite} has no coordinate reference system; labels could not be "
            "placed on a map. Assign its CRS (e.g. with gdal_edit.py -a_srs) first."
        )
    out = check_writable(params.out_mask)
    if Path(out).resolve() == Path(params.composite).resolve():
        raise GeedlError("The mask would overwrite the composite; choose another output name.")
    legend = rules.legend()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    needed = rules.required_bands()
    indices = {name: available.index(name) + 1 for name in to_read}
    counts = np.zeros(256, dtype=np.int64)
    windows = list(iter_windows(width, height, max(512, int(params.block_size) // 512 * 512)))
    feedback.info(f"Mask {rules.label()} on {width} x {height} px ({len(windows)} windows)")
    with atomic_path(out, keep_backup=params.backup_existing) as tmp:
        target = create_geotiff(
            tmp,
            width,
            height,
            1,
            "uint8",
            dataset.GetGeoTransform(),
            dataset.GetProjection(),
            descriptions=["class"],
            nodata=IGNORE,
            metadata={RULES_KEY: rules.to_dict(), "GEEDL_SOURCE": str(params.composite)},
        )
        try:
            write_legend(target, legend)
            band = target.GetRasterBand(1)
            for number, window in enumerate(windows):
                feedback.check_cancelled()
                raw = {name: _read_window(dataset, i, window) for name, i in indices.items()}
                invalid = np.zeros(window.shape, dtype=bool)
                for values in raw.values():
                    invalid |= ~np.isfinite(values)
                classes = rules.apply(compute_values(needed, raw), invalid)
                band.WriteArray(classes, window.xoff, window.yoff)
                counts += np.bincount(classes.ravel(), minlength=256)
                feedback.progress(100.0 * (number + 1) / len(windows), "computing the mask")
            target.FlushCache()
        finally:
            target = None
    class_counts = {cid: int(counts[cid]) for cid in legend.ids}
    warnings: list[str] = []
    positives = sum(class_counts[c] for c in legend.foreground_ids)
    if positives == 0:
        warnings.append(
            f"No pixel matched {rules.label()}; the mask holds no labelled class. "
            "Loosen the thresholds or check the composite."
        )
    ignored = int(counts[IGNORE])
    if ignored == width * height:
        warnings.append("Every pixel is 'ignore' (no data, clouds or masked quality bits).")
    for text in warnings:
        feedback.info("Warning: " + text)
    return AutolabelResult(
        Path(out), legend, rules, class_counts, ignored, width * height, time.monotonic() - started, warnings
    )


def read_rules(dataset: gdal.Dataset) -> RuleSet | None:
    """The rule set stored in a mask's metadata by :func:`run_autolabel`."""
    text = dataset.GetMetadataItem(RULES_KEY)
    if not text:
        return None
    try:
        return RuleSet.from_dict(json.loads(text))
    except (json.JSONDecodeError, GeedlError):
        return None
