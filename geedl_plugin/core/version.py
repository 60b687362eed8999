"""The plugin version, read from metadata.txt (its single source)."""

from __future__ import annotations

import configparser
from functools import lru_cache
from pathlib import Path

_PLUGIN_DIR = Path(__file__).resolve().parent.parent


def metadata_path() -> Path:
    """metadata.txt inside the installed plugin folder, or at the repository root."""
    for candidate in (_PLUGIN_DIR / "metadata.txt", _PLUGIN_DIR.parent / "metadata.txt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("metadata.txt not found beside the geedl_plugin package")


@lru_cache(maxsize=1)
def plugin_metadata() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(metadata_path(), encoding="utf-8")
    return dict(parser["general"])


def plugin_version() -> str:
    return plugin_metadata()["version"]


def plugin_version_if_known() -> str:
    """The version, or "" where metadata.txt is missing (core copied outside the plugin): a model
    file is still worth writing without it."""
    try:
        return plugin_version()
    except (FileNotFoundError, KeyError):
        return ""
