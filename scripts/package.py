"""Build the zip that QGIS's "Install from ZIP" accepts.

Layout inside the zip: one top folder ``geedl_plugin/`` holding the package, ``metadata.txt``
(copied from the repository root, its single source), the compiled ``resources_rc.py`` and
``LICENSE``. Caches, tests, virtual environments, hidden and half-written files stay out.
Uses only the standard library so the system python can run it.

Usage: python scripts/package.py [--out build/geedl.zip]
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "geedl_plugin"
REQUIRED_KEYS = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                 "repository", "tracker", "tags", "category", "icon", "hasProcessingProvider",
                 "experimental")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "tests", ".venv", "venv",
             "build", ".git"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".aux.xml", ".orig", ".rej", "~")
EXTRA_FILES = ("LICENSE", "README.md")


def read_metadata(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep qgisMinimumVersion's case
    parser.read(path, encoding="utf-8")
    if "general" not in parser:
        sys.exit(f"{path} has no [general] section")
    meta = dict(parser["general"])
    missing = [key for key in REQUIRED_KEYS if not meta.get(key, "").strip()]
    if missing:
        sys.exit(f"{path} lacks required keys: {', '.join(missing)}")
    return meta


def plugin_files(package: Path) -> list[Path]:
    """Files of the package to ship, sorted so the zip is the same on every build."""
    files = []
    for folder, dirs, names in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.endswith(SKIP_SUFFIXES) or ".partial" in name:
                continue
            path = Path(folder) / name
            if path.is_file():
                files.append(path)
    return files


def build(out: Path) -> Path:
    package = ROOT / PLUGIN
    meta = read_metadata(ROOT / "metadata.txt")
    if not (package / "resources_rc.py").is_file():
        sys.exit("geedl_plugin/resources_rc.py is missing; run: make resources")
    if not (package / meta["icon"]).is_file():
        sys.exit(f"metadata.txt names icon {meta['icon']}, which is not in {package}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files(package):
            archive.write(path, f"{PLUGIN}/{path.relative_to(package).as_posix()}")
        archive.write(ROOT / "metadata.txt", f"{PLUGIN}/metadata.txt")
        for name in EXTRA_FILES:
            if (ROOT / name).is_file():
                archive.write(ROOT / name, f"{PLUGIN}/{name}")
            elif name == "LICENSE":
                print("warning: no LICENSE file at the repository root; the QGIS plugin repository "
                      "requires one", file=sys.stderr)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "geedl.zip")
    args = parser.parse_args(argv)
    out = build(args.out.resolve())
    with zipfile.ZipFile(out) as archive:
        count = len(archive.namelist())
    print(f"wrote {out} ({count} files, version {read_metadata(ROOT / 'metadata.txt')['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
