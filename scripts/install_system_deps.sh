#!/usr/bin/env bash
# Installs QGIS 3.22 LTR and GDAL from Debian when they are missing and we run as root.
# Not root and missing: say what to run, and stop.
set -euo pipefail
need=()
/usr/bin/python3 -c "import qgis.core" 2>/dev/null || need+=(qgis python3-qgis qgis-providers)
/usr/bin/python3 -c "import osgeo.gdal" 2>/dev/null || need+=(python3-gdal)
command -v gdal_translate >/dev/null || need+=(gdal-bin)
/usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
command -v xvfb-run >/dev/null || need+=(xvfb xauth)
command -v pyrcc5 >/dev/null || need+=(pyqt5-dev-tools)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "Missing system packages: ${need[*]}" >&2
  echo "Run: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
