"""The composite recipe: what to compute, independent of where it is computed.

One dataclass drives both engines (local scenes and Earth Engine), is stored in output GeoTIFF
metadata and in ONNX model metadata, so a model always knows which recipe made its input.
Validation happens here, before any pixel is read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import GeedlError
from .indices import SpectralIndex, resolve_index

REDUCERS = ("max", "median", "mean", "min", "first", "percentile")
OUTPUT_DTYPES = ("float32", "float64", "int16", "uint16")
DEFAULT_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")


@dataclass
class CompositeRecipe:
    """Bands, indices, reducer and grid of a composite.

    ``indices`` holds built-in index names (NDVI, HUE, NDWI, MNDWI, NBR) or user indices written
    ``NAME=expression`` in Earth Engine expression syntax. ``scale`` is the output pixel size in
    metres (or the CRS's units); ``crs`` None means the scenes' own CRS. ``percentile`` is used by
    the ``percentile`` reducer only.
    """

    bands: list[str] = field(default_factory=lambda: list(DEFAULT_BANDS))
    indices: list[str] = field(default_factory=list)
    reducer: str = "max"
    percentile: float = 50.0
    scale: float = 10.0
    crs: str | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.bands = [b.strip() for b in self.bands if b.strip()]
        self.indices = [i.strip() for i in self.indices if i.strip()]
        self.reducer = self.reducer.strip().lower()
        self.validate()

    def validate(self) -> None:
        if not self.bands and not self.indices:
            raise GeedlError("The recipe has no bands and no indices; choose at least one band.")
        if len(set(self.bands)) != len(self.bands):
            raise GeedlError(f"Band list {self.bands} names a band twice.")
        if self.reducer not in REDUCERS:
            raise GeedlError(f"Unknown reducer {self.reducer!r}; use one of {', '.join(REDUCERS)}.")
        if not 0.0 <= float(self.percentile) <= 100.0:
            raise GeedlError(f"Percentile {self.percentile} must be between 0 and 100.")
        if not float(self.scale) > 0:
            raise GeedlError(f"Scale {self.scale} must be a positive pixel size in metres.")
        if self.dtype not in OUTPUT_DTYPES:
            raise GeedlError(f"Output type {self.dtype!r} is not one of {', '.join(OUTPUT_DTYPES)}.")
        names = self.output_names
        if len(set(names)) != len(names):
            raise GeedlError(f"Output band names repeat: {names}. Rename the user index.")

    @property
    def index_specs(self) -> list[SpectralIndex]:
        return [resolve_index(spec) for spec in self.indices]

    @property
    def output_names(self) -> list[str]:
        """Band descriptions of the composite, in order: bands, then indices."""
        return list(self.bands) + [index.name for index in self.index_specs]

    @property
    def required_bands(self) -> list[str]:
        """Every input band needed: the output bands plus those the indices read."""
        needed = list(self.bands)
        for index in self.index_specs:
            for name in sorted(index.bands):
                if name not in needed:
                    needed.append(name)
        return needed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompositeRecipe:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise GeedlError(f"Recipe has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> CompositeRecipe:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeedlError(f"The recipe is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
