"""Preview layers: an Earth Engine image as XYZ map tiles, and the means to revive them.

``getMapId`` returns a tile URL whose map token expires after a while, so a QGIS project that
only stored the URL shows blank layers when reopened. ``tile_url`` therefore returns the URL
and a serialized form (the expression graph and the visualisation); the GUI keeps the latter
in the layer's custom properties and calls ``rebuild_tile_url`` when the project is opened.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import GeedlError
from ..progress import Feedback
from ..recipe import CompositeRecipe
from .connection import load_ee, translate_error
from .query import SceneQuery

ee = load_ee()

SERIAL_VERSION = 1


@dataclass
class VisParams:
    """Earth Engine visualisation parameters for one or three bands."""

    bands: list[str]
    min: float | list[float] = 0.0
    max: float | list[float] = 1.0
    palette: list[str] = field(default_factory=list)
    gamma: float | None = None

    def to_ee(self) -> dict[str, Any]:
        params: dict[str, Any] = {"bands": list(self.bands), "min": self.min, "max": self.max}
        if self.palette:
            if len(self.bands) != 1:
                raise GeedlError("A colour palette applies to one band only.")
            params["palette"] = list(self.palette)
        if self.gamma is not None:
            params["gamma"] = self.gamma
        return params


# Reflectance x 10000. Document 000's false colour is B11/B8/B3 (SWIR, NIR, green): vegetation
# green, bare soil pink-brown, water dark blue.
FALSE_COLOUR = VisParams(["B11", "B8", "B3"], 0, [4500, 5000, 3000])
TRUE_COLOUR = VisParams(["B4", "B3", "B2"], 0, 3000, gamma=1.2)
INDEX_RAMPS: dict[str, VisParams] = {
    "NDVI": VisParams(["NDVI"], -0.2, 0.9, ["a6611a", "dfc27d", "f5f5f5", "80cdc1", "1a9641"]),
    "HUE": VisParams(["HUE"], -1.5708, 1.5708, ["1a9641", "f5f5f5", "a6611a"]),
    "NDWI": VisParams(["NDWI"], -0.6, 0.6, ["8c510a", "f5f5f5", "2166ac"]),
    "MNDWI": VisParams(["MNDWI"], -0.6, 0.6, ["8c510a", "f5f5f5", "2166ac"]),
    "NBR": VisParams(["NBR"], -0.5, 0.9, ["b2182b", "f5f5f5", "1a9641"]),
}
MASK_COLOUR = "ff3300"


def vis_for(kind: str, band_names: list[str]) -> VisParams:
    """A sensible visualisation: ``false_colour``, ``true_colour``, ``index:NAME``, ``band:NAME``
    or ``mask``; refused with a message when the image lacks the bands."""
    kind = kind.strip()
    if kind == "false_colour":
        vis = FALSE_COLOUR
    elif kind == "true_colour":
        vis = TRUE_COLOUR
    elif kind == "mask":
        vis = VisParams([band_names[0]], 0, 1, [MASK_COLOUR])
    elif kind.startswith("index:"):
        name = kind.split(":", 1)[1]
        vis = INDEX_RAMPS.get(name, VisParams([name], -1.0, 1.0, ["440154", "21918c", "fde725"]))
    elif kind.startswith("band:"):
        vis = VisParams([kind.split(":", 1)[1]], 0, 4000)
    else:
        raise GeedlError(f"Unknown preview {kind!r}: use false_colour, true_colour, index:NAME, "
                         "band:NAME or mask.")
    missing = [band for band in vis.bands if band not in band_names]
    if missing:
        raise GeedlError(f"The {kind} preview needs {', '.join(missing)}, which the image lacks "
                         f"(it has {', '.join(band_names)}).")
    return vis


def serialize_layer(image: Any, vis: VisParams, mask: bool = False) -> str:
    return json.dumps({"version": SERIAL_VERSION, "expression": json.loads(image.serialize(
        for_cloud_api=True)), "vis": asdict(vis), "mask": mask}, sort_keys=True)


def _map_url(image: Any, vis: VisParams, mask: bool) -> str:
    shown = image.select(vis.bands)
    if mask:
        shown = shown.selfMask()
    try:
        map_id = shown.getMapId(vis.to_ee())
    except Exception as exc:  # noqa: BLE001
        raise translate_error(exc) from exc
    return map_id["tile_fetcher"].url_format


def tile_url(image: Any, vis: VisParams, mask: bool = False) -> tuple[str, str]:
    """(XYZ tile URL with {z}/{x}/{y}, serialized layer to store in the project)."""
    return _map_url(image, vis, mask), serialize_layer(image, vis, mask)


def rebuild_tile_url(serialized: str) -> str:
    """A fresh tile URL for a stored layer (map tokens expire; the expression does not)."""
    try:
        data = json.loads(serialized)
        expression = data["expression"]
        vis = VisParams(**data["vis"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GeedlError(f"The stored Earth Engine layer cannot be read ({exc}); add it again.") from None
    image = ee.Image(ee.deserializer.fromJSON(json.dumps(expression)))
    return _map_url(image, vis, bool(data.get("mask")))


def qgis_xyz_uri(url: str, zmin: int = 0, zmax: int = 20) -> str:
    """The data source string of a QGIS XYZ layer for ``url`` (braces kept for QGIS)."""
    return f"type=xyz&url={quote(url, safe=':/{}')}&zmin={int(zmin)}&zmax={int(zmax)}"


@dataclass
class PreviewLayer:
    """What a preview layer needs: the QGIS XYZ source, the serialized form to store in the
    project (for fresh tokens on reopen), the scene summary, and the visualisation chosen."""

    uri: str
    serialized: str
    summary: dict[str, Any]
    vis_kind: str
    band_names: list[str]


def preview_kind(band_names: list[str]) -> str:
    """False colour when the bands allow it (document 000), else true colour, else the first band."""
    if all(b in band_names for b in ("B11", "B8", "B3")):
        return "false_colour"
    if all(b in band_names for b in ("B4", "B3", "B2")):
        return "true_colour"
    return f"band:{band_names[0]}"


def preview_composite(recipe: CompositeRecipe, query: SceneQuery, feedback: Feedback) -> PreviewLayer:
    """Scene summary, compiled composite and a map id, as one layer description.

    Shared by the dock and the ``eepreview`` Processing algorithm; needs an initialised session.
    """
    from .collections import scene_summary
    from .compile import compile_recipe

    feedback.progress(10, "querying scenes")
    summary = scene_summary(query)
    feedback.check_cancelled()
    feedback.progress(50, "compiling the composite")
    compiled = compile_recipe(recipe, query)
    names = list(compiled.band_names)
    kind = preview_kind(names)
    url, serialized = tile_url(compiled.image, vis_for(kind, names))
    feedback.progress(100, "map id received")
    return PreviewLayer(uri=qgis_xyz_uri(url), serialized=serialized, summary=summary, vis_kind=kind,
                        band_names=names)
