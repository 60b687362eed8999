"""Spectral indices, each defined once as band math so both engines compute the same thing.

Sentinel-2 band names are used (B2 blue, B3 green, B4 red, B8 NIR, B11 SWIR1, B12 SWIR2); the
Earth Engine source renames Landsat bands to this scheme, so one definition serves both.
``normalized_difference`` lets Earth Engine use ``normalizedDifference`` (document 000's NDVI).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import GeedlError
from .expression import Expression, parse


@dataclass(frozen=True)
class SpectralIndex:
    name: str
    expression: str
    description: str
    normalized_difference: tuple[str, str] | None = None

    @property
    def parsed(self) -> Expression:
        return parse(self.expression)

    @property
    def bands(self) -> frozenset[str]:
        return self.parsed.names


BUILTIN_INDICES: dict[str, SpectralIndex] = {
    index.name: index
    for index in (
        SpectralIndex("NDVI", "(B8 - B4) / (B8 + B4)",
                      "Normalised difference vegetation index (Rouse 1974)", ("B8", "B4")),
        SpectralIndex("HUE", "atan(2 * (B2 - B3 - B4) / (30.5 * (B3 - B4)))",
                      "Hue angle used by document 000: soil where HUE > 0, green where < 0"),
        SpectralIndex("NDWI", "(B3 - B8) / (B3 + B8)",
                      "Normalised difference water index (McFeeters 1996)", ("B3", "B8")),
        SpectralIndex("MNDWI", "(B3 - B11) / (B3 + B11)",
                      "Modified NDWI with SWIR (Xu 2006)", ("B3", "B11")),
        SpectralIndex("NBR", "(B8 - B12) / (B8 + B12)",
                      "Normalised burn ratio", ("B8", "B12")),
    )
}


def resolve_index(spec: str) -> SpectralIndex:
    """A built-in name (``NDVI``) or a user index ``NAME=expression``."""
    spec = spec.strip()
    if "=" in spec and not any(op in spec.split("=", 1)[0] for op in "<>!"):
        name, _, text = spec.partition("=")
        name = name.strip()
        if not name.isidentifier():
            raise GeedlError(f"Index name {name!r} must be a single word, e.g. WET=(B3-B11)/(B3+B11)")
        parse(text)  # validate now, not in the middle of the job
        return SpectralIndex(name, text.strip(), "user expression")
    key = spec.upper()
    if key not in BUILTIN_INDICES:
        raise GeedlError(
            f"Unknown index {spec!r}. Built-in indices: {', '.join(BUILTIN_INDICES)}; "
            "or give your own as NAME=expression, e.g. WET=(B3-B11)/(B3+B11)."
        )
    return BUILTIN_INDICES[key]
