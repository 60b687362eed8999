"""Parameter gathering shared by several algorithms (regions, scene lists, enums)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
)

from ..core.errors import GeedlError
from .base import crs_text, split_paths

VECTOR_FORMATS = ["gpkg", "shp", "geojson", "fgb"]


def enum_parameter(name: str, description: str, options: Sequence[str], default: str,
                   optional: bool = False) -> QgsProcessingParameterEnum:
    """An enum whose value can also be given by its text (``--REDUCER=median`` in qgis_process)."""
    parameter = QgsProcessingParameterEnum(name, description, options=list(options),
                                           defaultValue=default, optional=optional,
                                           usesStaticStrings=True)
    return parameter


def enum_value(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
               context: QgsProcessingContext) -> str:
    return alg.parameterAsEnumString(parameters, name, context)


def layer_or_paths(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], paths_name: str,
                   layers_name: str | None, context: QgsProcessingContext) -> list[str]:
    """Paths typed as text (``;`` or new lines) plus the sources of chosen raster layers."""
    paths = split_paths(alg.parameterAsString(parameters, paths_name, context))
    if layers_name:
        for layer in alg.parameterAsLayerList(parameters, layers_name, context) or []:
            source = layer.source().split("|")[0]
            if source not in paths:
                paths.append(source)
    return paths


def raster_path(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                context: QgsProcessingContext) -> str:
    """The file behind a raster layer parameter (core reads files with GDAL)."""
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise GeedlError(f"Choose a raster for {name}.")
    return layer.source()


def vector_path(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> str | None:
    """A file path for a vector parameter; memory layers or filtered layers are exported first."""
    if parameters.get(name) in (None, ""):
        return None
    path = alg.parameterAsCompatibleSourceLayerPath(parameters, name, context, VECTOR_FORMATS, "gpkg",
                                                    feedback)
    return path or None


def add_region_parameters(alg: QgsProcessingAlgorithm, layer_name: str, extent_name: str,
                          what: str = "Region") -> None:
    """An optional polygon layer and an optional extent (either one; any CRS)."""
    alg.addParameter(QgsProcessingParameterFeatureSource(
        layer_name, f"{what} (polygon layer)", [QgsProcessing.TypeVectorPolygon], optional=True))
    alg.addParameter(QgsProcessingParameterExtent(extent_name, f"{what} (extent)", optional=True))


def region_from_parameters(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], layer_name: str,
                           extent_name: str, context: QgsProcessingContext,
                           feedback: QgsProcessingFeedback):
    """A core Region from a polygon layer or an extent (with its CRS); None when neither is set."""
    from ..core.raster_io import srs_from_user
    from ..core.region import region_from_bounds, region_from_file

    layer_path = vector_path(alg, parameters, layer_name, context, feedback)
    has_extent = parameters.get(extent_name) not in (None, "")
    if layer_path and has_extent:
        raise GeedlError("Give either a region layer or a region extent, not both.")
    if layer_path:
        return region_from_file(layer_path)
    if has_extent:
        rect = alg.parameterAsExtent(parameters, extent_name, context)
        crs = crs_text(alg.parameterAsExtentCrs(parameters, extent_name, context))
        if rect.isNull() or rect.isEmpty():
            raise GeedlError("The region extent is empty; draw or type an area.")
        return region_from_bounds((rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
                                  srs_from_user(crs) if crs else None)
    return None


def extent_as_bbox(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                   context: QgsProcessingContext) -> str | None:
    """An extent parameter as the CLI's ``xmin,ymin,xmax,ymax,EPSG:code`` (None when unset)."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject

    if parameters.get(name) in (None, ""):
        return None
    rect = alg.parameterAsExtent(parameters, name, context)
    crs = alg.parameterAsExtentCrs(parameters, name, context)
    if rect.isNull() or rect.isEmpty():
        raise GeedlError("The region extent is empty; draw or type an area.")
    if not crs.isValid() or not crs.authid().upper().startswith("EPSG:"):
        wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
        source = crs if crs.isValid() else context.project().crs() if context.project() else wgs84
        rect = QgsCoordinateTransform(source, wgs84, context.project() or QgsProject.instance()
                                      ).transformBoundingBox(rect)
        crs = wgs84
    return f"{rect.xMinimum()!r},{rect.yMinimum()!r},{rect.xMaximum()!r},{rect.yMaximum()!r},{crs.authid()}"


def region_cli_args(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], layer_name: str,
                    extent_name: str, context: QgsProcessingContext,
                    feedback: QgsProcessingFeedback) -> list[str]:
    """``--region FILE`` or ``--bbox ...`` for a CLI command (empty when neither is set)."""
    layer_path = vector_path(alg, parameters, layer_name, context, feedback)
    bbox = extent_as_bbox(alg, parameters, extent_name, context)
    if layer_path and bbox:
        raise GeedlError("Give either a region layer or a region extent, not both.")
    if layer_path:
        return ["--region", layer_path]
    return ["--bbox", bbox] if bbox else []


def optional_number(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                    context: QgsProcessingContext) -> float | None:
    """A number parameter left empty -> None (so the core default applies)."""
    if parameters.get(name) in (None, ""):
        return None
    return alg.parameterAsDouble(parameters, name, context)


def optional_enum(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                  context: QgsProcessingContext) -> str | None:
    if parameters.get(name) in (None, ""):
        return None
    return alg.parameterAsEnumString(parameters, name, context) or None


def vector_path_and_layer(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                          context: QgsProcessingContext,
                          feedback: QgsProcessingFeedback) -> tuple[str | None, str | None]:
    """(file, layer name) for a vector parameter; QGIS writes GeoPackage layers as
    ``file.gpkg|layername=name``."""
    path = vector_path(alg, parameters, name, context, feedback)
    if not path:
        return None, None
    file, _, options = path.partition("|")
    layer = None
    for option in options.split("|"):
        key, _, value = option.partition("=")
        if key == "layername" and value:
            layer = value
    return file, layer


def int_list(text: str | None) -> list[int] | None:
    """``"1, 2"`` -> ``[1, 2]``; empty -> None."""
    from .base import split_list

    items = split_list(text)
    if not items:
        return None
    try:
        return [int(item) for item in items]
    except ValueError as exc:
        raise GeedlError(f"Class ids {text!r} must be whole numbers separated by commas.") from exc


def class_map(text: str | None) -> dict[str, int] | None:
    """``"water=1, farm=2"`` or JSON ``{"water": 1}`` -> a dict; empty -> None."""
    import json

    from .base import split_list

    text = (text or "").strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
            return {str(k): int(v) for k, v in data.items()}
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            raise GeedlError(f"Class map {text!r} is not a JSON object of name: id.") from exc
    result: dict[str, int] = {}
    for item in split_list(text):
        name, sep, value = item.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            result[name.strip()] = int(value)
        except ValueError as exc:
            raise GeedlError(f"Class map entry {item!r} must be name=id, e.g. water=1.") from exc
    return result


def default_of(dataclass_type: type, name: str) -> Any:
    """The default of a core dataclass field, so Processing defaults never drift from core's."""
    import dataclasses

    for item in dataclasses.fields(dataclass_type):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
    raise KeyError(f"{dataclass_type.__name__} has no field {name!r} with a default")


def name_pairs(text: str | None) -> dict[str, str] | None:
    """``"meadow=grass, scrub=forest"`` -> ``{"meadow": "grass", ...}``; empty -> None."""
    from .base import split_list

    result: dict[str, str] = {}
    for item in split_list(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise GeedlError(f"Class map entry {item!r} must be truth=prediction (e.g. meadow=grass).")
        result[key.strip()] = value.strip()
    return result or None
