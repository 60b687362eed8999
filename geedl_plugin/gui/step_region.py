"""Step 1, Region: draw a rectangle or polygon, or take the selected features of a layer.

The region is written to ``region.gpkg`` in the run folder (a file, so it survives saving the
project and the CLI can read the same file) and shown in the run's group. Its area is measured
on the ellipsoid (QgsDistanceArea), because areas in a geographic or Web Mercator canvas CRS are
wrong by large factors away from the equator.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDistanceArea,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPushButton

from ..core.earthengine.export import region_size_advice
from ..core.errors import GeedlError
from ..core.region import write_region_file
from . import layers
from .context import REGION, DockContext, Step
from .map_tools import PolygonMapTool, RectangleMapTool
from .styles import REGION_COLOUR, style_outline


def area_km2(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem, ellipsoid: str, context) -> float:
    measure = QgsDistanceArea()
    measure.setSourceCrs(crs, context)
    measure.setEllipsoid(ellipsoid or "EPSG:7030")
    area = measure.measureArea(geometry)
    return measure.convertAreaMeasurement(area, QgsUnitTypes.AreaSquareKilometers)


def write_region(path: Path, wkt: str, crs_wkt: str, source: str) -> dict[str, str]:
    write_region_file(path, wkt, crs_wkt, source)
    return region_size_advice(path)


class RegionStep(Step):
    title = "1. Region"

    def __init__(self, ctx: DockContext, parent=None) -> None:
        super().__init__(ctx, parent)
        canvas = ctx.iface.mapCanvas()
        self.rectangle_tool = RectangleMapTool(canvas)
        self.polygon_tool = PolygonMapTool(canvas)
        for tool in (self.rectangle_tool, self.polygon_tool):
            tool.regionDrawn.connect(self.use_geometry)
        row = QHBoxLayout()
        self.rectangle_button = QPushButton("Draw rectangle")
        self.polygon_button = QPushButton("Draw polygon")
        self.rectangle_button.setToolTip("Press, drag and release on the map")
        self.polygon_button.setToolTip("Click the corners; right click or double click to finish")
        for button, tool in ((self.rectangle_button, self.rectangle_tool),
                             (self.polygon_button, self.polygon_tool)):
            button.setCheckable(True)
            button.toggled.connect(lambda on, t=tool: self._toggle_tool(t, on))
            tool.deactivated.connect(lambda b=button: b.setChecked(False))
            row.addWidget(button)
        self.layout_.addLayout(row)

        row = QHBoxLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.selected_button = QPushButton("Use selected")
        self.selected_button.setToolTip("The selected features of this layer (all features when none "
                                        "is selected) become the region")
        self.selected_button.clicked.connect(self.use_selected)
        row.addWidget(self.layer_combo, 1)
        row.addWidget(self.selected_button)
        self.layout_.addLayout(row)

        self.area_label = QLabel("No region yet.")
        self.area_label.setWordWrap(True)
        self.layout_.addWidget(self.area_label)

    # -- map tools -----------------------------------------------------------------------------

    def _toggle_tool(self, tool, on: bool) -> None:
        canvas = self.ctx.iface.mapCanvas()
        if on:
            other = self.polygon_button if tool is self.rectangle_tool else self.rectangle_button
            other.setChecked(False)
            canvas.setMapTool(tool)
        elif canvas.mapTool() is tool:
            canvas.unsetMapTool(tool)

    def use_geometry(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem | None = None,
                     source: str = "drawn") -> None:
        """Write the region file in a task; then add the layer and show the area."""
        canvas = self.ctx.iface.mapCanvas()
        for button in (self.rectangle_button, self.polygon_button):
            button.setChecked(False)
        crs = crs or canvas.mapSettings().destinationCrs()
        if geometry.isEmpty() or not crs.isValid():
            self.ctx.error("region", "The region is empty or has no CRS; draw it again.")
            return
        km2 = area_km2(geometry, crs, self.ctx.project.ellipsoid(), self.ctx.project.transformContext())
        path = self.ctx.path("region.gpkg")
        wkt, crs_wkt = geometry.asWkt(), crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)
        self.area_label.setText("Writing the region ...")
        self.ctx.start("write region", lambda _fb: write_region(path, wkt, crs_wkt, source),
                       lambda advice: self._region_written(path, km2, source, advice), "region")

    def _region_written(self, path: Path, km2: float, source: str, advice: dict[str, str]) -> None:
        layer = layers.vector_layer(path, "region", "region")
        style_outline(layer, REGION_COLOUR)
        self.ctx.add_layer(layer, REGION)
        self.ctx.set_artifact(REGION, {"path": str(path), "km2": km2, "source": source, "advice": advice})
        self.show_area()

    def use_selected(self) -> None:
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsVectorLayer):
            self.ctx.error("region", "Choose a polygon layer first.")
            return
        features = layer.selectedFeatures() or list(layer.getFeatures())
        geometries = [f.geometry() for f in features if f.hasGeometry()]
        if not geometries:
            self.ctx.error("region", f"{layer.name()} has no polygon to use; select one.")
            return
        merged = QgsGeometry.unaryUnion(geometries)
        label = f"{len(geometries)} feature(s) of {layer.name()}"
        self.use_geometry(merged, layer.crs(), label)

    # -- state ---------------------------------------------------------------------------------

    def show_area(self) -> None:
        region = self.ctx.artifact(REGION)
        if not region or not self.ctx.has(REGION):
            self.area_label.setText("No region yet: draw one on the map or use a layer's selection.")
            return
        km2 = float(region.get("km2", 0.0))
        advice = region.get("advice") or {}
        text = f"Region: {km2:,.2f} km² ({region.get('source', '')})."
        if advice.get("mode") == "export":
            text += (f"<br><b style='color:#b00000'>Too large to download</b> ({advice['reason']}, for "
                     "10 m bands + NDVI + HUE): use Earth Engine with \"Export (batch)\" in the next "
                     "step (Drive, Cloud Storage or an asset), or draw a smaller region.")
        elif advice.get("reason"):
            text += f"<br>As a 10 m composite: {advice['reason']}."
        self.area_label.setText(text)

    def refresh(self) -> None:
        super().refresh()
        self.show_area()

    def unload(self) -> None:
        canvas = self.ctx.iface.mapCanvas()
        for tool in (self.rectangle_tool, self.polygon_tool):
            if canvas.mapTool() is tool:
                canvas.unsetMapTool(tool)
            tool.remove_band()


def region_path(ctx: DockContext) -> str:
    region = ctx.artifact(REGION) or {}
    if not ctx.has(REGION):
        raise GeedlError("There is no region yet: draw one in step 1.")
    return str(region["path"])
