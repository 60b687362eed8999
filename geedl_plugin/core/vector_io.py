"""Opening the analyst's polygon layers, in one place.

Labels, reference maps, evaluation truth and exports all start from "a file (and maybe a layer
name) that should hold polygons". A GeoPackage saved by QGIS may list its ``layer_styles`` table
first, a path may be mistyped, a layer name may not exist: each of these is a
:class:`GeedlError` that says what to change, never a GDAL traceback or a silently wrong layer.
"""

from __future__ import annotations

from pathlib import Path

from osgeo import ogr

from .errors import GeedlError

ogr.UseExceptions()

#: tables QGIS keeps beside the data in a GeoPackage; never the layer the analyst meant
SIDE_TABLES = ("layer_styles",)


def open_vector_layer(path: str | Path, layer: str | None = None) -> tuple[ogr.DataSource, ogr.Layer]:
    """(data source, layer): ``layer`` by name, else the first layer with geometries.

    Keep the data source referenced while the layer is used: OGR frees the layer with it.
    """
    text = str(path)
    if not text.startswith("/vsi") and not Path(text).exists():
        raise GeedlError(f"Vector layer {text} does not exist. Check the path.")
    try:
        source = ogr.Open(text)
    except RuntimeError as exc:
        raise GeedlError(f"Cannot read {text} as a vector layer ({str(exc).strip()}).") from None
    names = [] if source is None else [source.GetLayer(i).GetName() for i in range(source.GetLayerCount())]
    problem = ""
    if not names:
        problem = f"{text} holds no vector layer."
    elif layer:
        if layer in names:
            return source, source.GetLayerByName(layer)
        problem = f"{text} has no layer {layer!r}; its layers: {', '.join(names)}."
    else:
        spatial = [
            i
            for i, name in enumerate(names)
            if name not in SIDE_TABLES and source.GetLayer(i).GetGeomType() != ogr.wkbNone
        ]
        if spatial:
            return source, source.GetLayer(spatial[0])
        problem = f"{text} has no layer with geometries (layers: {', '.join(names)})."
    # close before raising: a traceback keeps this frame's locals, and a data source (or layer)
    # that outlives QGIS's exit (which closes every GDAL dataset) is freed twice
    source = None
    raise GeedlError(problem)
