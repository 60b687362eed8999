"""Fixtures for the Processing tests: the geedl provider registered in-process, and a plugin
folder that ``qgis_process`` (a separate program) finds and enables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def geedl_provider(qgis_processing):
    """The plugin loaded as qgis_process loads it (iface None, initProcessing)."""
    import geedl_plugin

    plugin = geedl_plugin.classFactory(None)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


def qgis_process_binary() -> str | None:
    """The qgis_process executable. Debian's /usr/bin/qgis_process is a wrapper script that adds
    ``--noversioncheck`` from /etc/default/qgis, an option the 3.22 binary rejects ("Command
    --noversioncheck not known!"), so the real binary beside it is preferred."""
    found = shutil.which("qgis_process")
    if found is None:
        return None
    real = Path(found).with_name("qgis_process.bin")
    return str(real) if real.is_file() and os.access(real, os.X_OK) else found


class QgisProcess:
    """Runs qgis_process with an isolated profile (HOME) in which geedl is installed and enabled."""

    def __init__(self, binary: str, base: Path, package_zip: Path | None = None) -> None:
        self.binary = binary
        self.home = base / "home"
        self.plugins = base / "plugins"
        runtime = base / "runtime"
        for folder in (self.home, self.plugins, runtime):
            folder.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
        self.env.update(HOME=str(self.home), QGIS_PLUGINPATH=str(self.plugins), QT_QPA_PLATFORM="offscreen",
                        XDG_RUNTIME_DIR=str(runtime), PYTHONDONTWRITEBYTECODE="1")
        if package_zip is not None:  # installed as "Install from ZIP" does: unzipped
            with zipfile.ZipFile(package_zip) as archive:
                archive.extractall(self.plugins)
            return
        # the plugin folder QGIS expects: the package plus metadata.txt (kept at the repository
        # root as the single source of the version), the package's entries linked, not copied
        plugin_dir = self.plugins / "geedl_plugin"
        plugin_dir.mkdir()
        for entry in (ROOT / "geedl_plugin").iterdir():
            if entry.name != "__pycache__":
                (plugin_dir / entry.name).symlink_to(entry)
        shutil.copy(ROOT / "metadata.txt", plugin_dir / "metadata.txt")

    def enable(self) -> None:
        """``qgis_process plugins enable geedl_plugin`` (3.22 loads enabled plugins that declare
        hasProcessingProvider=yes, from QGIS_PLUGINPATH and the profile)."""
        enabled = self("plugins", "enable", "geedl_plugin")
        assert enabled.returncode == 0, enabled.stdout + enabled.stderr
        assert "* geedl_plugin" in enabled.stdout, enabled.stdout + enabled.stderr

    def __call__(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def run_json(self, algorithm: str, **parameters: str | list[str]) -> dict:
        """``qgis_process --json run ALG -- KEY=VALUE ...``; the parsed JSON answer."""
        argv = ["--json", "run", algorithm, "--"]
        for key, value in parameters.items():
            for item in value if isinstance(value, list) else [value]:
                argv.append(f"{key}={item}")
        result = self(*argv)
        assert result.returncode == 0, f"qgis_process failed:\n{result.stdout}\n{result.stderr}"
        start = result.stdout.index("{")
        return json.loads(result.stdout[start:])


_SHARED: dict[str, QgisProcess] = {}


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory) -> QgisProcess:
    """One enabled profile for the whole session (test modules import this fixture, and pytest
    would otherwise set it up once per module)."""
    binary = qgis_process_binary()
    if binary is None:
        pytest.skip("qgis_process is not installed (Debian package qgis)")
    if "runner" not in _SHARED:
        runner = QgisProcess(binary, tmp_path_factory.mktemp("qgis_process"))
        runner.enable()
        _SHARED["runner"] = runner
    return _SHARED["runner"]
