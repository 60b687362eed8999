"""The composite recipe compiled to an Earth Engine image: one recipe, two engines.

Document 000's script is the model: per scene, add the indices (NDVI with
``normalizedDifference``, HUE and user indices with ``image.expression``), reduce the
collection (max there; median, mean, min, first, percentile here too), clip to the region. The
output grid (CRS and pixel size) is not baked into the image with ``reproject``: it is given
to computePixels or the export, which keeps previews fast at every zoom level and makes the
download grid exact. Time stacks repeat the composite per month (or N days) and stack the
results as bands named ``B4_2024_01`` (document 003's data cube).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import GeedlError
from ..indices import SpectralIndex
from ..recipe import CompositeRecipe
from .collections import prepared_collection, region_geometry
from .connection import load_ee
from .query import SceneQuery, check_crs_code, projected_bounds, time_windows, utm_crs_for
from .tiling import Grid, grid_for_bounds

ee = load_ee()

# Masked pixels are written as this value by Earth Engine (``unmask``) and turned into the
# GeoTIFF's nodata by the downloader: NaN for float outputs (the composite contract).
# Integer outputs use the local engine's nodata (int16 -32768, uint16 0).
DOWNLOAD_FILL = {"float32": -3.0e38, "float64": -3.0e38, "int16": -32768, "uint16": 0}


@dataclass
class CompiledComposite:
    """An ee.Image with everything needed to download, export or preview it."""

    image: Any
    band_names: list[str]
    recipe: CompositeRecipe
    query: SceneQuery
    crs: str
    collection: Any = None
    periods: list[str] = field(default_factory=list)

    @property
    def scale(self) -> float:
        return float(self.recipe.scale)

    @property
    def dtype(self) -> str:
        return self.recipe.dtype

    def grid(self) -> Grid:
        return output_grid(self.recipe, self.query, self.crs)

    def serialize(self) -> str:
        """The expression graph as Earth Engine's REST API JSON (what the dry run prints)."""
        return self.image.serialize(for_cloud_api=True)

    def download_image(self) -> Any:
        """The image as computePixels should fetch it: masked pixels filled with a marker."""
        return self.image.unmask(DOWNLOAD_FILL[self.dtype], False)

    def metadata(self) -> dict[str, str]:
        resolved = replace(self.recipe, crs=self.crs)  # as the local engine: the CRS actually used
        return {"GEEDL_SOURCE": "gee", "GEEDL_RECIPE": resolved.to_json(),
                "GEEDL_QUERY": json.dumps(self.query.describe(), sort_keys=True),
                "GEEDL_PERIODS": json.dumps(self.periods)}


def output_crs(recipe: CompositeRecipe, query: SceneQuery) -> str:
    """The recipe's CRS, or the region's UTM zone (composites in degrees would be wrong)."""
    return check_crs_code(recipe.crs) if recipe.crs else utm_crs_for(query.region)


def output_grid(recipe: CompositeRecipe, query: SceneQuery, crs: str | None = None) -> Grid:
    crs = crs or output_crs(recipe, query)
    return grid_for_bounds(projected_bounds(query.region, crs), float(recipe.scale), crs)


# -- per scene ----------------------------------------------------------------------------------

def index_image(image: Any, index: SpectralIndex) -> Any:
    """One index band: normalizedDifference when it is one (document 000's NDVI), else an
    ``image.expression`` with the band names as variables."""
    if index.normalized_difference:
        return image.normalizedDifference(list(index.normalized_difference)).rename(index.name)
    return expression_image(image, index.parsed.to_ee_text(), index.bands).rename(index.name)


def expression_image(image: Any, ee_text: str, names: frozenset[str] | set[str]) -> Any:
    variables = {name: image.select(name) for name in sorted(names) if not name.startswith("#")}
    return image.expression(ee_text, variables)


def with_indices(image: Any, recipe: CompositeRecipe) -> Any:
    """The scene with the recipe's bands followed by its indices, in the recipe's order."""
    specs = recipe.index_specs
    if specs:
        image = image.addBands([index_image(image, spec) for spec in specs])
    return image.select(recipe.output_names)


def scene_collection(recipe: CompositeRecipe, query: SceneQuery) -> Any:
    """The per-scene images of the composite (bands and indices), before reduction."""
    query.spec.check_bands(recipe.required_bands)
    for index in recipe.index_specs:
        index.parsed.check_names(query.spec.bands)
    prepared = prepared_collection(query, recipe.required_bands)
    return prepared.map(lambda image: with_indices(image, recipe))


# -- reduction ----------------------------------------------------------------------------------

def reduce_scenes(collection: Any, recipe: CompositeRecipe, names: list[str],
                  placeholder: Any = None) -> Any:
    """Reduce the scenes per pixel; ``placeholder`` (a masked image) is merged in last, after
    sorting, so an empty window still has the bands."""
    reducer = recipe.reducer
    if reducer == "first":
        # earliest valid observation on top: mosaic paints the last image over the others
        ordered = collection.sort("system:time_start", False)
        return (ordered.merge(placeholder) if placeholder is not None else ordered).mosaic()
    if placeholder is not None:
        collection = collection.merge(placeholder)
    if reducer == "max":
        return collection.max()
    if reducer == "min":
        return collection.min()
    if reducer == "mean":
        return collection.mean()
    if reducer == "median":
        return collection.median()
    if reducer == "percentile":
        return collection.reduce(ee.Reducer.percentile([float(recipe.percentile)])).rename(names)
    raise GeedlError(f"Unknown reducer {reducer!r}")  # the recipe validated it already


def cast(image: Any, dtype: str) -> Any:
    return {"float32": image.toFloat, "float64": image.toDouble, "int16": image.toInt16,
            "uint16": image.toUint16}[dtype]()


def compile_recipe(recipe: CompositeRecipe, query: SceneQuery) -> CompiledComposite:
    """The composite of ``recipe`` over the scenes of ``query``, clipped to the region."""
    names = recipe.output_names
    scenes = scene_collection(recipe, query)
    composite = reduce_scenes(scenes, recipe, names).select(names)
    image = cast(composite.clip(region_geometry(query.region)), recipe.dtype)
    return CompiledComposite(image, names, recipe, query, output_crs(recipe, query), scenes)


# -- time stacks --------------------------------------------------------------------------------

def compile_time_stack(recipe: CompositeRecipe, query: SceneQuery, step: str | int,
                       max_periods: int = 120) -> CompiledComposite:
    """One composite per window, stacked: bands ``<band>_<label>``, window after window.

    Windows without any clear scene stay fully masked (nodata) instead of failing: each window's
    collection is merged with a masked placeholder that no reducer ever picks.
    """
    names = recipe.output_names
    windows = time_windows(query.start_date, query.end_date, step)
    if len(windows) > max_periods:
        raise GeedlError(f"{len(windows)} time windows is too many (at most {max_periods}); use a "
                         "longer step or a shorter date range.")
    scenes = scene_collection(recipe, query)
    placeholder = ee.ImageCollection([
        ee.Image.constant([0] * len(names)).rename(names).toFloat().updateMask(ee.Image.constant(0))])
    layers = []
    band_names: list[str] = []
    for first, stop, label in windows:
        window = scenes.filterDate(first.isoformat(), stop.isoformat())
        stacked = [f"{name}_{label}" for name in names]
        layers.append(reduce_scenes(window, recipe, names, placeholder).select(names).rename(stacked))
        band_names.extend(stacked)
    image = cast(ee.Image.cat(layers).clip(region_geometry(query.region)), recipe.dtype)
    return CompiledComposite(image, band_names, recipe, query, output_crs(recipe, query), scenes,
                             [label for _, _, label in windows])
