"""Where the dock's layers go: one group per run, file-backed layers, state kept in the project.

A *run* is one pass through the workflow (region -> composite -> labels -> model -> map). Its
layers sit in one layer-tree group named ``geedl YYYY-MM-DD HH:MM`` and its files in one folder,
so several attempts can be compared side by side and a saved project reopens with everything.
Layers are always file-backed (GeoTIFF / GeoPackage): memory layers would vanish from a saved
project.

Earth Engine preview layers are XYZ layers whose tile URL carries a token that expires; the
serialized ee object (expression graph and visualisation, ``core.earthengine.preview``) is stored
as a custom property so the URL can be rebuilt when the project is read (:func:`ee_layers`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ..core.errors import GeedlError

RUN_PREFIX = "geedl"
SCOPE = "geedl"
STATE_KEY = "/dock_state"
RUN_PROPERTY = "geedl/run"
ROLE_PROPERTY = "geedl/role"
EE_OBJECT_PROPERTY = "geedl/ee_object"


@dataclass
class RunInfo:
    """A run's group name and output folder."""

    name: str
    folder: str

    @classmethod
    def create(cls, base_folder: str | Path | None, project: QgsProject | None = None) -> RunInfo:
        stamp = time.localtime()
        name = f"{RUN_PREFIX} {time.strftime('%Y-%m-%d %H:%M', stamp)}"
        base = Path(base_folder) if base_folder else default_base_folder(project)
        folder = base / f"run-{time.strftime('%Y%m%d-%H%M%S', stamp)}"
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = base / f"run-{time.strftime('%Y%m%d-%H%M%S', stamp)}-{suffix}"
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise GeedlError(f"Cannot create the run folder {folder}: {exc.strerror}. "
                             "Choose another output folder in geedl's settings.") from exc
        taken = {g.name() for g in _root(project).findGroups()}
        if name in taken:
            name = f"{name}:{time.strftime('%S', stamp)}"
        return cls(name, str(folder))

    def path(self, file_name: str) -> Path:
        return Path(self.folder) / file_name


def default_base_folder(project: QgsProject | None = None) -> Path:
    """Beside the saved project when there is one, else the temp folder."""
    project = project or QgsProject.instance()
    home = project.homePath()
    if home and Path(home).is_dir():
        return Path(home) / "geedl"
    return Path(tempfile.gettempdir()) / "geedl"


def _root(project: QgsProject | None):
    return (project or QgsProject.instance()).layerTreeRoot()


def run_group(run: RunInfo, project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """The run's group, created at the top of the layer tree when missing."""
    root = _root(project)
    group = root.findGroup(run.name)
    if group is None:
        group = root.insertGroup(0, run.name)
        group.setCustomProperty(RUN_PROPERTY, run.folder)
    return group


def add_layer(layer: QgsMapLayer, run: RunInfo, role: str, project: QgsProject | None = None,
              replace: bool = True) -> QgsMapLayer:
    """Add a layer to the run's group (on top), replacing an older layer of the same role."""
    if not layer.isValid():
        raise GeedlError(f"QGIS could not open {layer.source()} as a layer.")
    project = project or QgsProject.instance()
    group = run_group(run, project)
    if replace:
        for old in layers_by_role(role, run, project):
            project.removeMapLayer(old.id())
    layer.setCustomProperty(ROLE_PROPERTY, role)
    layer.setCustomProperty(RUN_PROPERTY, run.name)
    project.addMapLayer(layer, False)
    group.insertLayer(0, layer)
    return layer


def layers_in_run(run: RunInfo, project: QgsProject | None = None) -> list[QgsMapLayer]:
    group = _root(project).findGroup(run.name)
    return [node.layer() for node in group.findLayers() if node.layer()] if group else []


def layers_by_role(role: str, run: RunInfo, project: QgsProject | None = None) -> list[QgsMapLayer]:
    return [layer for layer in layers_in_run(run, project) if layer.customProperty(ROLE_PROPERTY) == role]


def layer_by_role(role: str, run: RunInfo | None, project: QgsProject | None = None) -> QgsMapLayer | None:
    if run is None:
        return None
    found = layers_by_role(role, run, project)
    return found[0] if found else None


def raster_layer(path: str | Path, name: str) -> QgsRasterLayer:
    return QgsRasterLayer(str(path), name, "gdal")


def vector_layer(path: str | Path, name: str, layer_name: str | None = None) -> QgsVectorLayer:
    source = f"{path}|layername={layer_name}" if layer_name else str(path)
    return QgsVectorLayer(source, name, "ogr")


# -- dock state in the project ----------------------------------------------------------------

# the artifact fields that hold file paths; files inside the project folder are stored relative
# to it (as QGIS stores layer sources), so a moved or zipped project folder still continues
PATH_FIELDS = ("path", "metrics_json", "model")


def relative_to(path: str, home: str) -> str:
    """``path`` relative to the project folder ``home`` when it lies inside it ("./..." form)."""
    if not home or not path:
        return path
    try:
        inside = Path(path).resolve().relative_to(Path(home).resolve())
    except (ValueError, OSError):
        return path
    return f"./{inside.as_posix()}" if str(inside) != "." else "."


def absolute_in(path: str, home: str) -> str:
    """A stored path made absolute again against the project folder (absolute paths unchanged)."""
    if not home or not path or Path(path).is_absolute():
        return path
    return str((Path(home) / path).resolve())


def map_artifact_paths(artifacts: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``artifacts`` with ``convert`` applied to every path field."""
    converted: dict[str, Any] = {}
    for key, value in artifacts.items():
        if isinstance(value, dict):
            value = {k: convert(v) if k in PATH_FIELDS and isinstance(v, str) else v
                     for k, v in value.items()}
        converted[key] = value
    return converted


def portable_state(run: RunInfo | None, artifacts: dict[str, Any], home: str) -> dict[str, Any]:
    """The dock's state as saved in a project whose folder is ``home``: the run and the artifacts
    with their files inside ``home`` made relative (``restore`` makes them absolute again)."""
    folder = None if run is None else {"name": run.name, "folder": relative_to(run.folder, home)}
    return {"run": folder, "artifacts": map_artifact_paths(artifacts, lambda p: relative_to(p, home))}


def save_state(state: dict[str, Any], project: QgsProject | None = None) -> None:
    (project or QgsProject.instance()).writeEntry(SCOPE, STATE_KEY, json.dumps(state, sort_keys=True))


def load_state(project: QgsProject | None = None) -> dict[str, Any]:
    text, ok = (project or QgsProject.instance()).readEntry(SCOPE, STATE_KEY, "")
    if not ok or not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


# -- Earth Engine preview layers ---------------------------------------------------------------


def ee_layers(project: QgsProject | None = None) -> list[QgsRasterLayer]:
    """Every layer in the project that was made from an Earth Engine object."""
    project = project or QgsProject.instance()
    return [layer for layer in project.mapLayers().values()
            if isinstance(layer, QgsRasterLayer) and layer.customProperty(EE_OBJECT_PROPERTY)]


def set_data_source(layer: QgsMapLayer, uri: str, provider: str) -> None:
    """Point a layer at a new source (a fresh tile URL), keeping its name, style and properties."""
    layer.setDataSource(uri, layer.name(), provider)
    layer.triggerRepaint()
