"""``make package``: the zip QGIS's "Install from ZIP" accepts, with complete metadata."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from geedl_plugin.core.version import plugin_version

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
            "repository", "tracker", "tags", "category", "icon", "hasProcessingProvider",
            "experimental")


@pytest.fixture(scope="module")
def package_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("package") / "geedl.zip"
    if not (ROOT / "geedl_plugin" / "resources_rc.py").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "compile_resources.py")], check=True)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def _metadata(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    return dict(parser["general"])


def test_zip_layout(package_zip: Path):
    with zipfile.ZipFile(package_zip) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"geedl_plugin"}, f"one top folder expected, got {tops}"
    for needed in ("geedl_plugin/metadata.txt", "geedl_plugin/__init__.py", "geedl_plugin/plugin.py",
                   "geedl_plugin/resources_rc.py", "geedl_plugin/resources/icon.svg",
                   "geedl_plugin/processing/provider.py", "geedl_plugin/core/version.py"):
        assert needed in names, f"{needed} missing from the zip"
    for name in names:
        parts = name.split("/")
        assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name
        assert not {"tests", ".venv", "venv", "build", ".git", ".pytest_cache"} & set(parts), name
        assert not parts[-1].startswith(".") and ".partial" not in parts[-1], name


def test_zip_metadata_complete(package_zip: Path):
    with zipfile.ZipFile(package_zip) as archive:
        meta = _metadata(archive.read("geedl_plugin/metadata.txt").decode("utf-8"))
        names = set(archive.namelist())
    missing = [key for key in REQUIRED if not meta.get(key, "").strip()]
    assert not missing, f"metadata.txt lacks {missing}"
    assert meta["version"] == plugin_version()
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"].lower() in ("yes", "true")
    assert f"geedl_plugin/{meta['icon']}" in names, "the metadata icon must be inside the zip"
    assert meta["category"] in ("Raster", "Vector", "Database", "Web", "Plugins")


def test_zip_installs_and_imports(package_zip: Path, tmp_path: Path):
    """Unzipped like QGIS does, the package imports (without QGIS) and reads its own version."""
    with zipfile.ZipFile(package_zip) as archive:
        archive.extractall(tmp_path)
    code = ("import geedl_plugin, geedl_plugin.core.version as v; "
            "p = v.metadata_path(); print(v.plugin_version(), p)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    version, path = result.stdout.split()
    assert version == plugin_version()
    assert Path(path) == tmp_path / "geedl_plugin" / "metadata.txt"


def test_package_refuses_incomplete_metadata(tmp_path: Path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import package  # scripts/package.py
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    broken = tmp_path / "metadata.txt"
    broken.write_text((ROOT / "metadata.txt").read_text().replace("\nemail=", "\nx_email="))
    with pytest.raises(SystemExit, match="email"):
        package.read_metadata(broken)


def test_zip_loads_in_qgis_process(package_zip: Path, tmp_path: Path):
    """The unzipped package is found, enabled and its algorithms listed by qgis_process."""
    from fixtures_processing import QgisProcess, qgis_process_binary

    binary = qgis_process_binary()
    if binary is None:
        pytest.skip("qgis_process is not installed")
    runner = QgisProcess(binary, tmp_path, package_zip=package_zip)
    runner.enable()
    from geedl_plugin.processing.provider import algorithm_classes

    listed = runner("list")
    expected = {f"geedl:{cls.ALG_ID}" for cls in algorithm_classes()}
    assert "geedl:buildcomposite" in expected
    missing = {alg for alg in expected if alg not in listed.stdout}
    assert not missing, f"{missing} not listed:\n{listed.stdout[-2000:]}{listed.stderr}"
