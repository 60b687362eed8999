"""The QGIS side of geedl: menu, toolbar button, dock and Processing provider.

``initProcessing`` registers the provider (``qgis_process`` calls only this, with no iface);
``initGui`` calls it too and adds the GUI. ``unload`` removes everything it added (actions, dock
and whatever the dock installed, provider) so reloading the plugin leaks nothing.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

MENU = "&geedl"
DOCK_OBJECT_NAME = "GeedlDock"
_ICON_FILE = Path(__file__).resolve().parent / "resources" / "icon.svg"


def icon() -> QIcon:
    """The plugin icon from the compiled resources, or from the file when they are not built."""
    try:
        from . import resources_rc  # noqa: F401 - registers :/plugins/geedl_plugin/
    except ImportError:
        return QIcon(str(_ICON_FILE))
    return QIcon(":/plugins/geedl_plugin/icon.svg")


def tr(text: str) -> str:
    return QCoreApplication.translate("geedl", text)


class GeedlPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.dock = None
        self.actions: list[QAction] = []
        self.toggle_action: QAction | None = None

    # -- Processing ----------------------------------------------------------------------------

    def initProcessing(self) -> None:  # noqa: N802 - the name QGIS calls
        if self.provider is not None:
            return
        from .processing.provider import GeedlProvider

        self.provider = GeedlProvider()
        if not QgsApplication.processingRegistry().addProvider(self.provider):
            self.provider = None

    # -- GUI -----------------------------------------------------------------------------------

    def initGui(self) -> None:  # noqa: N802 - the name QGIS calls
        self.initProcessing()
        main_window = self.iface.mainWindow()
        self.toggle_action = QAction(icon(), tr("geedl panel"), main_window)
        self.toggle_action.setObjectName("geedlToggleDock")
        self.toggle_action.setCheckable(True)
        self.toggle_action.setToolTip(tr("Show or hide the geedl panel: composites, labels, "
                                         "training and inference"))
        self.toggle_action.toggled.connect(self._set_dock_visible)
        self.iface.addPluginToRasterMenu(MENU, self.toggle_action)
        self.iface.addToolBarIcon(self.toggle_action)
        self.actions.append(self.toggle_action)
        self._create_dock()

    def _create_dock(self) -> None:
        from .gui.dock import GeedlDock

        self.dock = GeedlDock(self.iface, parent=self.iface.mainWindow())
        if not self.dock.objectName():
            self.dock.setObjectName(DOCK_OBJECT_NAME)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.dock.visibilityChanged.connect(self._dock_visibility_changed)

    def _set_dock_visible(self, visible: bool) -> None:
        if self.dock is not None:
            self.dock.setUserVisible(visible)

    def _dock_visibility_changed(self, visible: bool) -> None:
        if self.toggle_action is not None and self.dock is not None:
            # a tabified dock reports invisible while merely behind another tab
            self.toggle_action.blockSignals(True)
            self.toggle_action.setChecked(self.dock.isUserVisible())
            self.toggle_action.blockSignals(False)

    # -- unload --------------------------------------------------------------------------------

    def unload(self) -> None:
        if self.dock is not None:
            try:
                self.dock.visibilityChanged.disconnect(self._dock_visibility_changed)
            except TypeError:
                pass
            cleanup = getattr(self.dock, "unload", None)
            if callable(cleanup):
                cleanup()  # the dock removes its map tools, signal connections and tasks
            if self.iface is not None:
                self.iface.removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginRasterMenu(MENU, action)
                self.iface.removeToolBarIcon(action)
            action.deleteLater()
        self.actions = []
        self.toggle_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
