"""The demo's layers as plain data: what each file is and how QGIS should draw it.

The chain (:mod:`.steps`) runs without QGIS and only *describes* its outputs; the QGIS part
(:mod:`.qgis_project`) reads these descriptions to build the project and the renders. Keeping
the description QGIS-free lets the chain, the report and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# styles understood by qgis_project.style_layer
STYLES = ("composite", "paletted", "mask", "qml", "errors", "outline")


@dataclass
class LayerSpec:
    """One layer of the demo project.

    ``classes`` are (value, label, #rrggbb) rows: the palette of a paletted raster, the legend
    shown in the report for a vector layer; ``qml`` the style file of a vector layer; ``render``
    the PNG file name of a render (None: no render); ``over`` the key of a layer drawn under this
    one in its render (the false-colour composite, usually).
    """

    key: str
    step: str
    title: str
    path: Path
    kind: str = "raster"
    style: str = "composite"
    classes: list[tuple[int, str, str]] = field(default_factory=list)
    qml: Path | None = None
    layer_name: str | None = None
    visible: bool = True
    opacity: float = 1.0
    render: str | None = None
    over: str | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.kind not in ("raster", "vector"):
            raise ValueError(f"layer kind {self.kind!r} must be raster or vector")
        if self.style not in STYLES:
            raise ValueError(f"layer style {self.style!r} must be one of {', '.join(STYLES)}")
