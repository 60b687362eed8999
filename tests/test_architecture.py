"""The core must stay free of QGIS and Qt so the CLI, the training subprocess and other tools
can use it without a QGIS install. Parse (never import) every core module and check its imports,
including imports hidden inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "geedl_plugin"
CORE = PACKAGE / "core"
FORBIDDEN_TOP = ("qgis", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip", "processing")
FORBIDDEN_PACKAGES = ("gui", "processing", "toolbelt", "plugin", "resources_rc")


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path`` (or ``source`` as if it were at ``path``);
    relative imports are resolved against the file's package."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    package_parts = ["geedl_plugin", *path.relative_to(PACKAGE).parent.parts]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # from .. import gui
                    found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
                    continue
            else:
                module = node.module or ""
            found.append((node.lineno, module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def _violation(module: str) -> bool:
    top = module.split(".")[0]
    if top in FORBIDDEN_TOP:
        return True
    parts = module.split(".")
    return parts[0] == "geedl_plugin" and len(parts) > 1 and parts[1] in FORBIDDEN_PACKAGES


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_core_has_modules():
    assert len(CORE_FILES) >= 5, f"expected the core package under {CORE}"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_qgis_or_qt(path: Path):
    bad = [f"{path.relative_to(PACKAGE)}:{line} imports {module}"
           for line, module in _imports(path) if _violation(module)]
    assert not bad, "core must not import QGIS, Qt or the GUI layers:\n" + "\n".join(bad)


def test_checker_catches_violations():
    """The checker itself must see the forms a violation can take."""
    samples = {
        "import qgis.core": True,
        "from qgis.PyQt.QtCore import QObject": True,
        "from PyQt5 import QtCore": True,
        "def f():\n    from ..gui import dock": True,
        "from .. import processing": True,
        "from ..toolbelt.settings import PluginSettings": True,
        "import importlib\nimportlib.import_module('qgis.core')": True,
        "from .errors import GeedlError": False,
        "from ..core.errors import GeedlError": False,
        "import numpy as np\nfrom osgeo import gdal": False,
    }
    location = CORE / "probe.py"  # only used to resolve relative imports; never written
    for source, expected in samples.items():
        modules = [module for _, module in _imports(location, source)]
        assert any(_violation(m) for m in modules) == expected, source


def test_package_import_does_not_load_qgis():
    """``import geedl_plugin`` (and the CLI) must work without QGIS: check in a clean interpreter."""
    import subprocess
    import sys

    code = ("import sys, geedl_plugin, geedl_plugin.cli, geedl_plugin.toolbelt.runner, "
            "geedl_plugin.toolbelt.settings; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
