"""The plugin's user settings, stored with QgsSettings under ``geedl/``.

One dataclass read by the dock, the Processing algorithms and the background tasks, so a value
set in one place (the Earth Engine project, the Python that runs training) is used everywhere.
``qgis.core`` is imported inside :meth:`PluginSettings.load` / :meth:`PluginSettings.save` only,
so the defaults can be computed (and tested) without QGIS.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "geedl/"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def default_runner_python() -> str:
    """The Python that runs training (torch) in a subprocess, outside QGIS.

    In order: the venv that ``make deps`` built beside the package (a development checkout),
    this interpreter when it is a real Python with torch (not the QGIS binary), else ``python3``
    from PATH. The user can change it in the settings.
    """
    for venv_python in (_PACKAGE_DIR.parent / ".venv" / "bin" / "python",
                        _PACKAGE_DIR.parent / ".venv" / "Scripts" / "python.exe"):
        if venv_python.is_file() and os.access(venv_python, os.X_OK):
            return str(venv_python)
    executable = Path(sys.executable or "")
    if executable.name.lower().startswith("python") and importlib.util.find_spec("torch") is not None:
        return str(executable)
    return "python3"


@dataclass
class PluginSettings:
    """User settings; field names are the QgsSettings keys (under ``geedl/``)."""

    ee_project: str = ""
    runner_python: str = field(default_factory=default_runner_python)
    data_folder: str = ""
    output_folder: str = ""
    tile_size: int = 512
    overlap: int = 64
    batch: int = 8

    @classmethod
    def load(cls) -> PluginSettings:
        """Read the stored values; unset or unreadable values fall back to the defaults."""
        from qgis.core import QgsSettings

        store = QgsSettings()
        defaults = cls()
        values: dict[str, Any] = {}
        for item in fields(cls):
            default = getattr(defaults, item.name)
            raw = store.value(PREFIX + item.name, None)
            values[item.name] = _coerce(raw, default)
        return cls(**values)

    def save(self) -> None:
        from qgis.core import QgsSettings

        store = QgsSettings()
        for item in fields(self):
            store.setValue(PREFIX + item.name, getattr(self, item.name))
        store.sync()

    @staticmethod
    def reset() -> None:
        """Forget every stored value (tests, and a "restore defaults" button)."""
        from qgis.core import QgsSettings

        store = QgsSettings()
        store.remove(PREFIX.rstrip("/"))
        store.sync()


def _coerce(raw: Any, default: Any) -> Any:
    """QgsSettings hands back strings on some platforms; convert to the default's type."""
    if raw is None or raw == "":
        return default
    try:
        if isinstance(default, bool):
            return str(raw).lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except (TypeError, ValueError):
        return default
    return str(raw)


def load_settings() -> PluginSettings:
    return PluginSettings.load()
