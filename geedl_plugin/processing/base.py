"""The base of every geedl Processing algorithm.

Subclasses declare parameters in ``initAlgorithm`` and implement :meth:`GeedlAlgorithm.run_core`,
which turns parameters into core dataclasses and calls one core function with a core
:class:`~geedl_plugin.core.progress.Feedback`. This base adapts QgsProcessingFeedback to it and
turns :class:`~geedl_plugin.core.errors.GeedlError` into QgsProcessingException, so the user sees
our message (what to change), not a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
)
from qgis.PyQt.QtGui import QIcon

from ..core.errors import CancelledError, GeedlError
from ..core.progress import Feedback

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icon.svg"


def plugin_icon() -> QIcon:
    return QIcon(str(ICON_PATH))


def core_feedback(feedback: QgsProcessingFeedback | None) -> Feedback:
    """A core Feedback forwarding progress, messages and cancellation to Processing."""
    if feedback is None:
        return Feedback()

    def on_progress(percent: float, message: str) -> None:
        feedback.setProgress(percent)
        if message:
            feedback.setProgressText(message)

    return Feedback(on_progress=on_progress, on_message=feedback.pushInfo,
                    is_cancelled=feedback.isCanceled)


def crs_text(crs: QgsCoordinateReferenceSystem | None) -> str | None:
    """A CRS as text core understands (``EPSG:32633`` or WKT); None when invalid/unset."""
    if crs is None or not crs.isValid():
        return None
    authid = crs.authid()
    return authid if authid else crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


def split_list(text: str | None) -> list[str]:
    """``"B2, B3;B4"`` or one item per line -> ``["B2", "B3", "B4"]``.

    Separators inside parentheses are kept, so user expressions such as
    ``NDVI,BRIGHT=max(B2, B3)`` split into two items.
    """
    items: list[str] = []
    depth, current = 0, []
    for char in text or "":
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        if depth == 0 and char in ",;\n":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def split_paths(text: str | None) -> list[str]:
    """Paths separated by ``;`` or new lines (commas may appear in paths)."""
    if not text:
        return []
    return [item.strip().strip('"') for item in text.replace("\n", ";").split(";") if item.strip()]


class GeedlAlgorithm(QgsProcessingAlgorithm):
    """Common metadata, the feedback adapter and error translation."""

    ALG_ID = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""

    def name(self) -> str:
        return self.ALG_ID

    def displayName(self) -> str:  # noqa: N802 - Qt API
        return self.DISPLAY_NAME

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802 - Qt API
        return self.GROUP_ID

    def shortHelpString(self) -> str:  # noqa: N802 - Qt API
        return self.HELP

    def icon(self) -> QIcon:
        return plugin_icon()

    def createInstance(self) -> GeedlAlgorithm:  # noqa: N802 - Qt API
        return type(self)()

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        try:
            return self.run_core(parameters, context, feedback, core_feedback(feedback))
        except CancelledError as exc:
            feedback.reportError(str(exc))
            raise QgsProcessingException(str(exc)) from exc
        except GeedlError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def run_core(self, parameters: dict[str, Any], context: QgsProcessingContext,
            feedback: QgsProcessingFeedback, core: Feedback) -> dict[str, Any]:
        """Gather parameters into core dataclasses and call one core function."""
        raise NotImplementedError


class CliAlgorithm(GeedlAlgorithm):
    """An algorithm that runs a ``python -m geedl_plugin`` command in the runner Python.

    Used where the work must not run inside QGIS (training imports torch) or where the CLI is
    the single entry point of a core workflow. Progress lines become Processing progress,
    Cancel ends the subprocess, and the command's JSON result is returned.
    """

    def run_command(self, command: str, args: list[str], core: Feedback,
                    feedback: QgsProcessingFeedback) -> dict[str, Any]:
        from ..toolbelt.runner import cli_command, run_cli
        from ..toolbelt.settings import PluginSettings

        python = PluginSettings.load().runner_python
        feedback.pushCommandInfo(" ".join(cli_command(command, args, python)))
        return run_cli(command, args, core, python=python)
