"""The plugin as QGIS loads it: classFactory -> initGui -> provider, menu, toolbar, dock -> unload.

Loaded and unloaded repeatedly (what "Reload plugin" does) to catch leaks: a second provider,
orphan actions or docks left in the main window.
"""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QDockWidget

import geedl_plugin
from geedl_plugin.processing.provider import ALGORITHM_MODULES, algorithm_classes

EXPECTED_IDS = {"buildcomposite", "eecomposite", "eeexport", "eepreview", "trainmodel", "runmodel",
                "labelmask", "polygonize", "rasterizelabels", "trainingchips", "denoiselabels",
                "referencelabels", "trainregression", "vectorizeprediction",
                "evaluateprediction"}


def _flush_deletes() -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()


def _our_docks(main_window) -> list[QDockWidget]:
    return [d for d in main_window.findChildren(QDockWidget) if d.objectName() == "GeedlDock"]


def _our_actions(main_window) -> list[QAction]:
    return [a for a in main_window.findChildren(QAction) if a.objectName() == "geedlToggleDock"]


@pytest.fixture
def plugin(qgis_iface, qgis_processing):
    instance = geedl_plugin.classFactory(qgis_iface)
    instance.initGui()
    yield instance
    if instance.provider is not None or instance.dock is not None:
        instance.unload()
    _flush_deletes()


def test_provider_registered_with_algorithms(plugin):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("geedl")
    assert provider is not None
    ids = {alg.name() for alg in provider.algorithms()}
    assert ids == {cls.ALG_ID for cls in algorithm_classes()}
    assert EXPECTED_IDS <= ids, f"missing {EXPECTED_IDS - ids}"
    present_modules = {cls.__module__.rsplit(".", 1)[-1] for cls in algorithm_classes()}
    for alg in provider.algorithms():
        assert registry.algorithmById(f"geedl:{alg.name()}") is not None
        assert alg.displayName() and alg.group() and alg.shortHelpString(), alg.name()
        assert alg.parameterDefinitions(), f"{alg.name()} declares no parameters"
    assert set(ALGORITHM_MODULES) >= present_modules


def test_menu_toolbar_and_dock(plugin, qgis_iface):
    main_window = qgis_iface.mainWindow()
    action = plugin.toggle_action
    assert action is not None and not action.icon().isNull()
    qgis_iface.addPluginToRasterMenu.assert_any_call("&geedl", action)
    assert len(_our_docks(main_window)) == 1
    main_window.show()
    try:
        action.setChecked(True)
        assert plugin.dock.isUserVisible()
        plugin.dock.close()  # closing the dock un-checks the button
        QCoreApplication.processEvents()
        assert not action.isChecked()
        action.setChecked(True)
        action.setChecked(False)
        assert not plugin.dock.isUserVisible()
    finally:
        main_window.hide()


def test_unload_removes_everything(plugin, qgis_iface):
    main_window = qgis_iface.mainWindow()
    action = plugin.toggle_action
    main_window.show()
    action.setChecked(True)  # the dock shows and may start background work (dependency check)
    QCoreApplication.processEvents()
    main_window.hide()
    plugin.unload()
    _flush_deletes()
    running = [t.description() for t in QgsApplication.taskManager().activeTasks() if not t.isCanceled()]
    assert running == [], f"tasks left running after unload: {running}"
    assert QgsApplication.processingRegistry().providerById("geedl") is None
    assert _our_docks(main_window) == []
    assert _our_actions(main_window) == []
    qgis_iface.removePluginRasterMenu.assert_any_call("&geedl", action)
    assert plugin.dock is None and plugin.provider is None and plugin.actions == []


def test_reload_twice_without_leaks(qgis_iface, qgis_processing):
    registry = QgsApplication.processingRegistry()
    providers_before = len(registry.providers())
    main_window = qgis_iface.mainWindow()
    for _ in range(2):
        instance = geedl_plugin.classFactory(qgis_iface)
        instance.initGui()
        instance.initProcessing()  # QGIS may call both; must not register twice
        assert len(registry.providers()) == providers_before + 1
        assert len(_our_docks(main_window)) == 1
        assert len(_our_actions(main_window)) == 1
        instance.unload()
        _flush_deletes()
        assert len(registry.providers()) == providers_before
        assert _our_docks(main_window) == [] and _our_actions(main_window) == []


def test_processing_only_load_without_iface(qgis_processing):
    """qgis_process creates the plugin with iface None and calls initProcessing only."""
    instance = geedl_plugin.classFactory(None)
    instance.initProcessing()
    try:
        assert QgsApplication.processingRegistry().providerById("geedl") is not None
    finally:
        instance.unload()
    assert QgsApplication.processingRegistry().providerById("geedl") is None


def test_loading_the_provider_imports_no_heavy_runtime():
    """torch (training runs in a subprocess), onnxruntime and earthengine-api load only when an
    algorithm runs, never when QGIS starts the plugin (checked in a fresh interpreter)."""
    import os
    import subprocess
    import sys

    code = (
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], False); app.initQgis()\n"
        "import sys, geedl_plugin\n"
        "plugin = geedl_plugin.classFactory(None); plugin.initProcessing()\n"
        "provider = QgsApplication.processingRegistry().providerById('geedl')\n"
        "assert provider is not None and provider.algorithms()\n"
        "for alg in provider.algorithms(): alg.parameterDefinitions()\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'ee') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
