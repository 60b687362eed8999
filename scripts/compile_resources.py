"""Compile resources.qrc into geedl_plugin/resources_rc.py with pyrcc5.

Usage: python scripts/compile_resources.py [resources.qrc] [geedl_plugin/resources_rc.py]

pyrcc5 writes ``from PyQt5 import QtCore``; we rewrite it to ``from qgis.PyQt import QtCore`` so
the compiled module follows whatever Qt binding QGIS runs on. pyrcc5 comes from Debian's
pyqt5-dev-tools (scripts/install_system_deps.sh installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def find_pyrcc() -> str:
    for name in ("pyrcc5",):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("pyrcc5 not found. Install it with: sudo apt-get install pyqt5-dev-tools")


def compile_resources(qrc: Path, out: Path) -> Path:
    if not qrc.is_file():
        sys.exit(f"{qrc} does not exist")
    result = subprocess.run([find_pyrcc(), "-o", "-", str(qrc)], cwd=qrc.parent,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"pyrcc5 failed on {qrc}:\n{result.stderr}")
    code = result.stdout.replace("from PyQt5 import QtCore", "from qgis.PyQt import QtCore")
    if "qt_resource_data" not in code:
        sys.exit(f"pyrcc5 produced no resource data for {qrc}")
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(code, encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: list[str]) -> int:
    qrc = Path(argv[1]) if len(argv) > 1 else ROOT / "resources.qrc"
    out = Path(argv[2]) if len(argv) > 2 else ROOT / "geedl_plugin" / "resources_rc.py"
    print(f"compiled {compile_resources(qrc.resolve(), out.resolve())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
