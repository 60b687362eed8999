"""The geedl Processing provider: id ``geedl``, algorithms from every area module.

An area whose optional dependency is missing (earthengine-api, onnxruntime) is skipped with a
log message instead of hiding the whole provider.
"""

from __future__ import annotations

import importlib

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.version import plugin_version
from .base import plugin_icon

# modules under geedl_plugin.processing.algorithms, each with a list ALGORITHMS
ALGORITHM_MODULES = ("composite", "labels", "reference", "earthengine", "train", "predict", "evaluate")


def algorithm_classes() -> list[type]:
    classes: list[type] = []
    for name in ALGORITHM_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.algorithms.{name}")
        except ImportError as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name == f"{__package__}.algorithms.{name}":
                continue  # area not written yet
            QgsMessageLog.logMessage(f"geedl: {name} algorithms unavailable: {exc}", "geedl",
                                     Qgis.Warning)
            continue
        classes.extend(getattr(module, "ALGORITHMS", ()))
    return classes


class GeedlProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "geedl"

    def name(self) -> str:
        return "geedl"

    def longName(self) -> str:  # noqa: N802 - Qt API
        return f"geedl {plugin_version()} (deep learning for Sentinel-2 / Landsat)"

    def icon(self) -> QIcon:
        return plugin_icon()

    def loadAlgorithms(self) -> None:  # noqa: N802 - Qt API
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
