#!/bin/bash
# Runs scripts/accuracy_study.py on a machine with torch but no GDAL (a rented GPU machine):
#   here:  .venv/bin/python scripts/accuracy_study.py --save-data study.npz
#   there: bash scripts/study_without_gdal.sh --data study.npz --models unet --folds 4 \
#              --repeats 4 --jobs 16 --device auto --out study-gpu
# Training from --data never calls GDAL, but the modules on its path import osgeo at the top, so
# this puts a stand-in package first on PYTHONPATH (inherited by the worker processes): its
# names exist, and calling any of them except UseExceptions raises, so nothing can quietly use it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
stand_in="$(mktemp -d)"
trap 'rm -rf "$stand_in"' EXIT
mkdir -p "$stand_in/osgeo"
for module in __init__ gdal ogr osr gdal_array gdalconst; do
  cat > "$stand_in/osgeo/$module.py" <<PY
class _Absent:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        if self.name.endswith("UseExceptions"):
            return None
        raise RuntimeError(f"GDAL is not installed on this machine; {self.name} was called")

    def __getattr__(self, name):
        return _Absent(f"{self.name}.{name}")


def __getattr__(name):
    return _Absent("osgeo.$module." + name if "$module" != "__init__" else "osgeo." + name)
PY
done
export PYTHONPATH="$stand_in${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# not exec: the shell must stay to run the EXIT trap that removes the stand-in
"${PYTHON:-python3}" "$root/scripts/accuracy_study.py" "$@"
