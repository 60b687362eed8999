"""The labels step's rule dataclasses compiled to Earth Engine masks.

The labels step (:mod:`geedl_plugin.core.labels.rules`) defines each rule once, as a dataclass
with its thresholds as fields; the local engine evaluates it on numpy arrays. This adapter turns
the same objects into Earth Engine graphs through the mask functions of :mod:`.masks`, so a mask
made in the cloud and one made on the desktop use the same thresholds by construction:

* :class:`CropRule` ``(t_hue, t_ndvi)`` -> ``masks.crop_mask(hue_max=t_hue, ndvi_min=t_ndvi)``;
* :class:`SoilRule` ``(t_hue)`` -> ``masks.soil_mask(hue_min=t_hue)``;
* :class:`WaterRule` ``mndwi``/``ndwi`` -> ``masks.water_index_mask(index, threshold)``;
  ``scl``/``qa_pixel`` -> the rule's own expression on the composite's quality band when the
  composite carries it (with the rule's ignore expression -> 255), else, given the scene query,
  ``masks.quality_water_mask`` (water in at least half of the clear observations: a composite
  reduced with max/median has no meaningful quality band of its own);
* :class:`ExpressionRule` -> ``masks.expression_mask``;
* a :class:`RuleSet` -> one class image like :meth:`RuleSet.apply`: the first matching rule
  gives the class, unmatched pixels the background (or 255 without one), ignored pixels 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import GeedlError
from ..labels.rules import CropRule, ExpressionRule, Rule, RuleSet, SoilRule, WaterRule, single_rule
from . import masks
from .connection import load_ee
from .query import SceneQuery

ee = load_ee()

IGNORE = 255


def compile_rule(
    rule: Rule, image: Any, bands: Sequence[str], query: SceneQuery | None = None
) -> tuple[Any, Any | None]:
    """(positive mask, ignore mask or None) of one rule on a composite image with ``bands``."""
    bands = list(bands)
    rule = rule.resolve(bands)
    if isinstance(rule, CropRule):
        return masks.crop_mask(image, bands, hue_max=rule.t_hue, ndvi_min=rule.t_ndvi), None
    if isinstance(rule, SoilRule):
        return masks.soil_mask(image, bands, hue_min=rule.t_hue), None
    if isinstance(rule, WaterRule):
        method = rule.method
        if method in ("mndwi", "ndwi"):
            return masks.water_index_mask(image, bands, method.upper(), rule.threshold), None
        band = "SCL" if method == "scl" else "QA_PIXEL"
        if band in bands:
            positive = masks.expression_mask(image, bands, rule.to_expression())
            ignore_text = rule.ignore_expression()
            return positive, masks.expression_mask(image, bands, ignore_text) if ignore_text else None
        if query is None:
            raise GeedlError(
                f"The {method} water rule needs the {band} band, which the composite lacks; "
                "give the scene query to use the scenes' quality bands, or use MNDWI."
            )
        return masks.quality_water_mask(query), None
    if isinstance(rule, ExpressionRule):
        return masks.expression_mask(image, bands, rule.expression), None
    raise GeedlError(f"No Earth Engine form for rule {type(rule).__name__}.")


def compile_rules(
    rules: RuleSet | Rule, image: Any, bands: Sequence[str], query: SceneQuery | None = None
) -> Any:
    """One uint8 class image (band ``class``) with the rule set's ids, 255 = ignore."""
    ruleset = rules if isinstance(rules, RuleSet) else single_rule(rules)
    ruleset = ruleset.resolve(list(bands))
    fill = ruleset.background.id if ruleset.background is not None else IGNORE
    out = ee.Image.constant(int(fill)).toUint8()
    assigned = ee.Image.constant(0)
    ignored = None
    for cls in ruleset.classes:
        positive, ignore = compile_rule(cls.rule, image, bands, query)
        out = out.where(positive.And(assigned.Not()), int(cls.class_id))
        assigned = assigned.Or(positive)
        if ignore is not None:
            ignored = ignore if ignored is None else ignored.Or(ignore)
    if ignored is not None:
        out = out.where(ignored, IGNORE)
    # pixels where the composite has no data stay masked (255 once downloaded), as locally
    valid = image.select(list(bands)).mask().reduce(ee.Reducer.min())
    return out.updateMask(valid).toUint8().rename("class")
