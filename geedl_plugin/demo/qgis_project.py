"""The demo's QGIS side: a styled project (.qgz) and PNG renders made by QGIS's map renderer.

Runs headless (``QT_QPA_PLATFORM=offscreen``): a QgsApplication is started when none exists.
Layers are styled with the dock's own functions (:mod:`..gui.styles`) and grouped with its own
helpers (:mod:`..gui.layers`: one group per run, a role on each layer), so the demo project
looks exactly like a run made by clicking in the dock. The project stores *relative* paths,
so the output folder can be moved or zipped and still opens.

Imported lazily by ``geedl_plugin.cli.demo``: nothing in the chain needs QGIS.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

from ..core.earthengine.export import region_size_advice
from ..core.errors import GeedlError
from ..core.labels.legend import read_legend
from ..core.labels.schema import CLASS_FIELD, read_layer_legend
from ..core.raster_io import band_descriptions, open_raster
from ..core.region import region_from_file
from ..gui import layers as run_layers
from ..gui.context import COMPOSITE, LABELS, MASK, MODEL, PREDICTION, REGION
from ..gui.styles import (
    REGION_COLOUR,
    apply_qml,
    style_composite,
    style_error_map,
    style_outline,
    style_paletted,
)
from .spec import LayerSpec

_APP: QgsApplication | None = None


def ensure_application() -> QgsApplication:
    """The running QgsApplication, or a headless one started now (kept for the process)."""
    global _APP
    app = QgsApplication.instance()
    if app is not None:
        return app
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _APP = QgsApplication([], False)
    _APP.initQgis()
    return _APP


@dataclass
class ProjectExport:
    """What :func:`write_project` wrote."""

    project: Path
    group: str
    layers: dict[str, str]  # key -> renderer type
    renders: dict[str, Path] = field(default_factory=dict)


def open_layer(spec: LayerSpec) -> QgsMapLayer:
    """The spec's file as a QGIS layer (raise when QGIS cannot read it)."""
    if spec.kind == "raster":
        layer: QgsMapLayer = QgsRasterLayer(str(spec.path), spec.title, "gdal")
    else:
        layer = run_layers.vector_layer(spec.path, spec.title, spec.layer_name)
    if not layer.isValid():
        raise GeedlError(f"QGIS could not open {spec.path} for the demo project.")
    return layer


def style_layer(layer: QgsMapLayer, spec: LayerSpec) -> None:
    """Apply the spec's style with the dock's styling functions."""
    if spec.style == "composite":
        style_composite(layer)
    elif spec.style in ("paletted", "mask"):
        style_paletted(layer, spec.classes, opacity=spec.opacity)
    elif spec.style == "errors":  # the evaluation's colours when it gives them, the dock's otherwise
        if all(colour for _value, _label, colour in spec.classes):
            style_paletted(layer, spec.classes, opacity=spec.opacity)
        else:
            style_error_map(layer, {value: label for value, label, _colour in spec.classes})
    elif spec.style == "outline":
        style_outline(layer, REGION_COLOUR)
    elif spec.style == "qml":
        if spec.qml is None or not apply_qml(layer, spec.qml):
            raise GeedlError(f"The style {spec.qml} could not be applied to {spec.path}.")
        if spec.opacity < 1.0 and isinstance(layer, QgsVectorLayer):
            layer.setOpacity(spec.opacity)


def renderer_type(layer: QgsMapLayer) -> str:
    renderer = layer.renderer()
    return renderer.type() if renderer is not None else ""


def dock_state(outputs: dict[str, Any], figures: dict[str, Any], out_dir: Path, group_name: str,
               labels_layer: str = "osm_train") -> dict[str, Any]:
    """The dock's state as the analyst would have left it after clicking through the demo's
    steps (composite, mask, training labels, model, prediction), so opening the demo project
    in QGIS lets the dock go on from there (e.g. predict another area with the demo model)."""
    artifacts: dict[str, Any] = {}
    if "region" in outputs:
        region = region_from_file(outputs["region"])
        # the demo's region is a box in UTM metres, where the planar area is the true one to 0.1 %
        artifacts[REGION] = {"path": str(outputs["region"]), "km2": region.geometry.GetArea() / 1e6,
                             "source": "demo bounding box", "advice": region_size_advice(outputs["region"])}
    if "composite" in outputs:
        artifacts[COMPOSITE] = {"path": str(outputs["composite"]),
                                "bands": band_descriptions(open_raster(outputs["composite"]))}
    if "mask" in outputs:
        legend = read_legend(open_raster(outputs["mask"]))
        artifacts[MASK] = {"path": str(outputs["mask"]), "rule": figures.get("mask_rule", ""),
                           **({"legend": legend.to_dict()} if legend else {})}
    if "osm_train" in outputs:
        legend = read_layer_legend(outputs["osm_train"])
        artifacts[LABELS] = {"path": str(outputs["osm_train"]), "layer": labels_layer, "field": CLASS_FIELD,
                             "classes": [c.name for c in legend.classes] if legend else [], "schema": True}
    if "model" in outputs:
        artifacts[MODEL] = {"path": str(outputs["model"]),
                            "metrics_json": str(outputs.get("model_metrics", ""))}
    if "prediction" in outputs and "model" in outputs:
        artifacts[PREDICTION] = {"path": str(outputs["prediction"]), "model": str(outputs["model"])}
    home = str(Path(out_dir).resolve())
    return run_layers.portable_state(run_layers.RunInfo(group_name, home), artifacts, home)


def write_project(out_dir: str | Path, specs: Sequence[LayerSpec], file_name: str, group_name: str,
                  title: str = "geedl demo", render_width: int = 1400,
                  state: dict[str, Any] | None = None) -> ProjectExport:
    """Build the project (all layers styled, in one group, relative paths, the dock's ``state``
    when given), save it as ``out_dir/file_name`` and render the layers that ask for it."""
    ensure_application()
    out_dir = Path(out_dir).resolve()
    project = QgsProject()
    project.setTitle(title)
    project.setFilePathStorage(Qgis.FilePathType.Relative)
    project.setFileName(str(out_dir / file_name))
    run = run_layers.RunInfo(group_name, ".")
    made: dict[str, QgsMapLayer] = {}
    types: dict[str, str] = {}
    for spec in specs:  # in chain order; add_layer puts each on top, so later steps draw above
        layer = open_layer(spec)
        style_layer(layer, spec)
        run_layers.add_layer(layer, run, spec.key, project)
        layer.setCustomProperty("geedl/step", spec.step)
        made[spec.key] = layer
        types[spec.key] = renderer_type(layer)
    group = project.layerTreeRoot().findGroup(group_name)
    for spec in specs:
        node = group.findLayer(made[spec.key].id())
        if node is not None:
            node.setItemVisibilityChecked(spec.visible)
    first = made[specs[0].key]
    project.setCrs(first.crs())
    project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(first.extent(), first.crs()))
    if state is not None:
        run_layers.save_state(state, project)
    target = out_dir / file_name
    if not project.write(str(target)):
        raise GeedlError(f"QGIS could not write the project {target}: {project.error()}")
    renders = {spec.key: render_png([made[spec.key]] + ([made[spec.over]] if spec.over in made else []),
                                    first.extent(), out_dir / spec.render, render_width)
               for spec in specs if spec.render}
    return ProjectExport(target, group_name, types, renders)


def render_png(layers: Sequence[QgsMapLayer], extent: QgsRectangle, path: str | Path, width: int = 1400,
               background: str = "#ffffff") -> Path:
    """Render ``layers`` (top first) over ``extent`` to a PNG with QGIS's parallel map renderer."""
    ensure_application()
    height = max(1, round(width * extent.height() / max(extent.width(), 1e-9)))
    settings = QgsMapSettings()
    settings.setLayers(list(layers))
    settings.setDestinationCrs(layers[-1].crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(int(width), int(height)))
    settings.setBackgroundColor(QColor(background))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    errors = [f"{e.layerID}: {e.message}" for e in job.errors()]
    if errors:
        raise GeedlError("QGIS failed to render " + ", ".join(layer.name() for layer in layers) + ": "
                         + "; ".join(errors))
    path = Path(path)
    if not image.save(str(path), "PNG"):
        raise GeedlError(f"Could not save the render {path}.")
    return path


def check_project(path: str | Path) -> dict[str, str]:
    """Read a saved project back (as a user opening it would): key -> renderer type of each
    layer; raises when a layer is missing, invalid or unstyled."""
    ensure_application()
    project = QgsProject()
    if not project.read(str(path)):
        raise GeedlError(f"QGIS could not read {path}: {project.error()}")
    found: dict[str, str] = {}
    for layer in project.mapLayers().values():
        key = layer.customProperty(run_layers.ROLE_PROPERTY) or layer.name()
        if not layer.isValid():
            raise GeedlError(f"Layer {layer.name()} ({layer.source()}) is not valid in {path}.")
        found[str(key)] = renderer_type(layer)
    return found
