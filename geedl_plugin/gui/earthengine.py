"""The dock's Earth Engine work, as functions that run inside background tasks.

Every function here talks to the network (sign-in state, scene counts, map ids, exports), so
each is a ``work(feedback)`` for a :class:`~.tasks.CoreTask`; the results (tile URIs, scene
summaries, task ids) are applied to layers on the main thread by the Source step. ``ee`` is
imported only inside these functions: the dock works without earthengine-api.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import GeedlError
from ..core.progress import Feedback
from ..core.recipe import CompositeRecipe
from ..core.region import region_geojson


@dataclass
class EeRequest:
    """The Earth Engine part of the Source form (plain values, safe to pass to a thread)."""

    region_path: str
    start: str
    end: str
    collection: str
    max_cloud: float
    cloud_mask: str
    project: str


def ensure_session(project: str) -> None:
    """Initialise Earth Engine with the stored sign-in when it is not yet initialised."""
    from ..core.earthengine.connection import initialize, is_initialized

    if not is_initialized():
        initialize(project or None)


def scene_query(request: EeRequest):
    from ..core.earthengine.query import SceneQuery

    return SceneQuery(region=region_geojson(request.region_path), start=request.start, end=request.end,
                      collection=request.collection, max_cloud=request.max_cloud,
                      cloud_mask=request.cloud_mask)


def preview_work(recipe: CompositeRecipe, request: EeRequest):
    """Scene summary, compiled composite and a false-colour map id, as a layer description."""

    def work(feedback: Feedback) -> dict[str, Any]:
        ensure_session(request.project)
        from ..core.earthengine.preview import preview_composite

        layer = preview_composite(recipe, scene_query(request), feedback)
        return {"uri": layer.uri, "serialized": layer.serialized, "summary": layer.summary,
                "vis": layer.vis_kind}

    return work


def rebuild_work(stored: dict[str, str], project: str):
    """Fresh tile URIs for stored layers: ``{layer_id: serialized}`` -> ``{layer_id: uri or error}``."""

    def work(feedback: Feedback) -> dict[str, dict[str, str]]:
        try:
            ensure_session(project)
            from ..core.earthengine.preview import qgis_xyz_uri, rebuild_tile_url
        except GeedlError as exc:
            return {layer_id: {"error": str(exc)} for layer_id in stored}
        result: dict[str, dict[str, str]] = {}
        for i, (layer_id, serialized) in enumerate(stored.items()):
            feedback.check_cancelled()
            try:
                result[layer_id] = {"uri": qgis_xyz_uri(rebuild_tile_url(serialized))}
            except GeedlError as exc:
                result[layer_id] = {"error": str(exc)}
            feedback.progress(100.0 * (i + 1) / len(stored))
        return result

    return work


def decision_work(recipe: CompositeRecipe, region_path: str):
    """Download or export, with the reason in words (no network, no ``ee`` needed)."""

    def work(_feedback: Feedback):
        from ..core.earthengine.export import decide_download_or_export

        return decide_download_or_export(region_geojson(region_path), recipe)

    return work
