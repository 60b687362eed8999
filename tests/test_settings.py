"""PluginSettings round trip through QgsSettings (the user's stored values are restored)."""

from __future__ import annotations

import pytest
from qgis.core import QgsSettings

from geedl_plugin.toolbelt.settings import PREFIX, PluginSettings, default_runner_python


@pytest.fixture
def clean_store(qgis_app):
    store = QgsSettings()
    saved = {key: store.value(key) for key in store.allKeys() if key.startswith(PREFIX)}
    PluginSettings.reset()
    yield store
    PluginSettings.reset()
    for key, value in saved.items():
        store.setValue(key, value)
    store.sync()


def test_defaults_when_nothing_stored(clean_store):
    settings = PluginSettings.load()
    assert settings == PluginSettings()
    assert settings.runner_python == default_runner_python()
    assert (settings.tile_size, settings.overlap, settings.batch) == (512, 64, 8)


def test_round_trip(clean_store, tmp_path):
    PluginSettings(ee_project="my-project-123", runner_python="/opt/py/bin/python3",
                   data_folder=str(tmp_path), output_folder=str(tmp_path / "out"), tile_size=256,
                   overlap=32, batch=4).save()
    loaded = PluginSettings.load()
    assert loaded.ee_project == "my-project-123" and loaded.runner_python == "/opt/py/bin/python3"
    assert (loaded.tile_size, loaded.overlap, loaded.batch) == (256, 32, 4)
    assert isinstance(loaded.tile_size, int) and loaded.output_folder == str(tmp_path / "out")


def test_unreadable_values_fall_back(clean_store):
    clean_store.setValue(PREFIX + "tile_size", "not a number")
    clean_store.setValue(PREFIX + "runner_python", "")
    loaded = PluginSettings.load()
    assert loaded.tile_size == 512 and loaded.runner_python == default_runner_python()
