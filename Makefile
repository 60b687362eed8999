# geedl: two commands on a fresh Debian 12 machine: `make demo` and `make test`.
SHELL := /bin/bash
SYSTEM_PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
PLUGIN := geedl_plugin
BUILD := build
QGIS_PROFILE ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps test demo package install lint bench clean resources

deps: $(STAMP)

$(STAMP): requirements.txt requirements-samples.txt scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-samples.txt
	$(PY) -c "import numpy, osgeo.gdal_array, qgis.core, torch, onnxruntime, ee; assert numpy.__version__ < '2'"
	touch $(STAMP)

resources: $(PLUGIN)/resources_rc.py

$(PLUGIN)/resources_rc.py: resources.qrc $(wildcard $(PLUGIN)/resources/*)
	$(PY) scripts/compile_resources.py resources.qrc $@

test: deps resources
	$(PY) -m pytest

demo: deps resources
	$(PY) -m $(PLUGIN) demo --out demo-output

lint: deps
	$(PY) -m ruff check $(PLUGIN) tests benchmarks scripts

bench: deps
	$(PY) benchmarks/composite.py
	@for b in benchmarks/labels.py benchmarks/train.py benchmarks/predict.py; do \
		if [ -f $$b ]; then $(PY) $$b || exit 1; fi; done

package: resources
	rm -rf $(BUILD)/package && mkdir -p $(BUILD)/package
	$(SYSTEM_PYTHON) scripts/package.py --out $(BUILD)/geedl.zip

install: package
	mkdir -p "$(QGIS_PROFILE)/python/plugins"
	rm -rf "$(QGIS_PROFILE)/python/plugins/$(PLUGIN)"
	cd "$(QGIS_PROFILE)/python/plugins" && unzip -q -o "$(CURDIR)/$(BUILD)/geedl.zip"
	@echo "Installed into $(QGIS_PROFILE)/python/plugins/$(PLUGIN); enable it in Plugins > Manage and Install Plugins."

clean:
	rm -rf $(BUILD) demo-output .pytest_cache $(PLUGIN)/resources_rc.py
