"""The raster a model reads: bands found by name, the region cut out, the grid the model expects.

A model knows its bands by name (``B2``, ``B8``, ``NDVI`` ...), never by position: composites
made with another recipe order their bands differently, and a silent shuffle would give a
plausible but wrong map. Band descriptions are matched exactly, then case-insensitively, then
as Sentinel-2 names (``B02`` is ``B2``). Temporal models (``time_steps`` > 1) take every raster
band carrying a model band's name, in raster order, as that band's time series: the name
repeated, or the band name followed by ``_`` and a date (``B4_2024_01``, Earth Engine stacks).

Grids: the model was trained at ``metadata.resolution`` metres. A raster in a geographic CRS
(EPSG:4326) or at another pixel size is read through a GDAL warped VRT in a projected CRS (its
own, or the UTM zone of its centre for geographic rasters) at the model's resolution, so every
tile shows the model ground at the scale it learned; the runner writes the prediction on that
work grid and warps it back onto the input grid (nearest neighbour for classes). A raster
already at the model's resolution in a projected CRS is read directly, window by window.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import GeedlError
from ..model_metadata import ModelMetadata
from ..raster_io import band_descriptions, crs_label, open_raster, srs_from_wkt
from ..region import Region
from ..scenes import normalize_band_name

gdal.UseExceptions()

#: relative pixel-size difference accepted as "same resolution"
RESOLUTION_TOLERANCE = 0.01


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid."""

    width: int
    height: int
    geotransform: tuple[float, ...]
    projection: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        xs = (x0, x0 + dx * self.width)
        ys = (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class PreparedSource:
    """Where the runner reads its channels: a dataset, a pixel offset, and the work grid."""

    dataset: gdal.Dataset
    #: 1-based band numbers in ``dataset``, in the model's channel order
    band_list: list[int]
    #: nodata value of each channel's band (None: only NaN is nodata)
    nodata: list[float | None]
    xoff: int
    yoff: int
    work: Grid
    #: the grid the outputs are written on (the input grid, cut to the region)
    output: Grid
    resampled: bool
    region_geometry: ogr.Geometry | None = None
    notes: list[str] = field(default_factory=list)
    #: /vsimem files to unlink when done
    temporaries: list[str] = field(default_factory=list)

    #: what to open for a thread's own handle (the image, or the warped VRT in /vsimem)
    path: str = ""
    _owner: int = field(default_factory=threading.get_ident, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def handle(self) -> gdal.Dataset:
        """The dataset for the calling thread: GDAL datasets must not be read from two threads at
        once, so every thread but the one that opened the source gets its own (the block cache
        is shared)."""
        if threading.get_ident() == self._owner or not self.path:
            return self.dataset
        dataset = getattr(self._local, "dataset", None)
        if dataset is None:
            dataset = self._local.dataset = gdal.Open(self.path)
        return dataset

    def read(self, xoff: int, yoff: int, xsize: int, ysize: int) -> np.ndarray:
        """Channels x rows x cols float32 of a window of the work grid (inside the grid)."""
        data = self.handle().ReadAsArray(
            self.xoff + xoff, self.yoff + yoff, xsize, ysize, band_list=self.band_list
        )
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[np.newaxis]
        return data.astype(np.float32, copy=False)

    def read_into(self, xoff: int, yoff: int, out: np.ndarray) -> None:
        """Read a window straight into ``out`` (channels x rows x cols, float32, contiguous)."""
        self.handle().ReadAsArray(
            self.xoff + xoff,
            self.yoff + yoff,
            out.shape[2],
            out.shape[1],
            buf_obj=out,
            band_list=self.band_list,
        )

    def close(self) -> None:
        self.dataset = None
        self._local = threading.local()
        for path in self.temporaries:
            try:
                gdal.Unlink(path)
            except RuntimeError:
                pass
        self.temporaries.clear()


def _lookup(names: list[str]) -> dict[str, list[int]]:
    """Raster band name variants -> 1-based band numbers."""
    table: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        keys = {name, name.lower()}
        s2 = normalize_band_name(name)
        if s2:
            keys.add("s2:" + s2)
        for key in keys:
            table.setdefault(key, []).append(number)
    return table


def _find(table: dict[str, list[int]], band: str) -> list[int]:
    for key in (band, band.lower(), "s2:" + (normalize_band_name(band) or "\0")):
        if key in table:
            return table[key]
    return []


def map_bands(raster_names: list[str], metadata: ModelMetadata, source: str = "the raster") -> list[int]:
    """1-based raster band numbers for each model input channel, matched by band *name*."""
    if not any(raster_names):
        raise GeedlError(
            f"{source} has no band names (band descriptions), so its bands cannot be matched to the "
            f"model's {', '.join(metadata.bands)}. Use a geedl composite, or set the band descriptions."
        )
    table = _lookup(raster_names)
    steps = max(1, int(metadata.time_steps))
    found = {band: _find(table, band) for band in metadata.bands}
    if steps > 1:  # time stacks name bands per date: B4_2024_01 (Earth Engine) or B4 repeated
        for band in metadata.bands:
            if len(found[band]) != steps:
                prefix = band.lower() + "_"
                dated = [i + 1 for i, name in enumerate(raster_names) if name.lower().startswith(prefix)]
                if dated:
                    found[band] = dated
    missing = [band for band, numbers in found.items() if not numbers]
    available = ", ".join(n or "(unnamed)" for n in raster_names)
    if missing:
        raise GeedlError(
            f"{source} lacks the band{'s' if len(missing) > 1 else ''} {', '.join(missing)} that the model "
            f"needs (it was trained on {', '.join(metadata.bands)}); the raster has {available}. "
            "Make a composite with these bands (same recipe as the training image)."
        )
    if steps == 1:
        return [found[band][0] for band in metadata.bands]
    short = [band for band, numbers in found.items() if len(numbers) != steps]
    if short:
        counts = ", ".join(f"{band}: {len(found[band])}" for band in short)
        raise GeedlError(
            f"The model is temporal with {steps} time steps, so {source} needs each of its bands "
            f"{steps} times (a time stack); found {counts}. Build the stack with {steps} dates."
        )
    # time-major: all bands of step 0, then step 1, ... (the model_metadata contract)
    return [found[band][step] for step in range(steps) for band in metadata.bands]


def _utm_for(lon: float, lat: float) -> osr.SpatialReference:
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    srs = osr.SpatialReference()
    srs.ImportFromEPSG((32600 if lat >= 0 else 32700) + zone)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _pixel_size_m(grid: Grid, srs: osr.SpatialReference) -> float:
    _, dx, _, _, _, dy = grid.geotransform
    return math.sqrt(abs(dx * dy)) * (srs.GetLinearUnits() or 1.0)


def _region_window(
    region: Region, grid: Grid, srs: osr.SpatialReference, source: str
) -> tuple[int, int, int, int]:
    """Pixel window (xoff, yoff, xsize, ysize) of the grid covering the region's bbox."""
    xmin, ymin, xmax, ymax = region.bbox(srs)
    x0, dx, _, y0, _, dy = grid.geotransform
    cols = sorted(((xmin - x0) / dx, (xmax - x0) / dx))
    rows = sorted(((ymin - y0) / dy, (ymax - y0) / dy))
    c0 = max(0, int(math.floor(cols[0] + 1e-9)))
    c1 = min(grid.width, int(math.ceil(cols[1] - 1e-9)))
    r0 = max(0, int(math.floor(rows[0] + 1e-9)))
    r1 = min(grid.height, int(math.ceil(rows[1] - 1e-9)))
    if c1 <= c0 or r1 <= r0:
        gxmin, gymin, gxmax, gymax = grid.bounds
        raise GeedlError(
            f"The region ({region.source}) does not overlap {source} (raster extent "
            f"{gxmin:.1f}, {gymin:.1f}, {gxmax:.1f}, {gymax:.1f} in {crs_label(srs)}). "
            "Choose a region inside the image."
        )
    return c0, r0, c1 - c0, r1 - r0


def prepare_source(
    image: str, metadata: ModelMetadata, region: Region | None = None, resample: str = "auto"
) -> PreparedSource:
    """Open ``image`` and check it against the model; nothing is computed yet.

    ``resample``: ``auto`` (warp when the CRS is geographic or the resolution differs), or
    ``never`` (read the raster's own grid, whatever the model's resolution).
    """
    dataset = open_raster(image)
    names = band_descriptions(dataset)
    band_list = map_bands(names, metadata, source=str(image))
    nodata = []
    for number in band_list:
        value = dataset.GetRasterBand(number).GetNoDataValue()
        nodata.append(
            None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        )
    geotransform = tuple(dataset.GetGeoTransform())
    projection = dataset.GetProjection()
    full = Grid(dataset.RasterXSize, dataset.RasterYSize, geotransform, projection)
    notes: list[str] = []
    srs = srs_from_wkt(projection) if projection else None

    xoff = yoff = 0
    output = full
    if region is not None:
        if srs is None:
            raise GeedlError(
                f"{image} has no CRS, so the region cannot be placed on it. Use a georeferenced raster."
            )
        if region.srs is None:  # "in the raster's CRS"
            region = Region(region.geometry, srs, region.source)
        xoff, yoff, width, height = _region_window(region, full, srs, str(image))
        x0, dx, rx, y0, ry, dy = geotransform
        output = Grid(width, height, (x0 + xoff * dx, dx, rx, y0 + yoff * dy, ry, dy), projection)

    rotated = geotransform[2] != 0 or geotransform[4] != 0
    needs_warp = False
    work_srs = srs
    if srs is None:
        notes.append(
            f"{image} has no CRS; its pixels are taken to be {metadata.resolution:g} m as the model's."
        )
    elif resample != "never":
        if srs.IsGeographic():
            xmin, ymin, xmax, ymax = output.bounds
            work_srs = _utm_for((xmin + xmax) / 2, (ymin + ymax) / 2)
            needs_warp = True
            notes.append(
                f"{image} is in a geographic CRS ({crs_label(srs)}); reading it in "
                f"{crs_label(work_srs)} at {metadata.resolution:g} m and writing back on its grid."
            )
        else:
            size = _pixel_size_m(output, srs)
            if rotated or abs(size - metadata.resolution) > RESOLUTION_TOLERANCE * metadata.resolution:
                needs_warp = True
                notes.append(
                    f"{image} has {size:g} m pixels, the model was trained at {metadata.resolution:g} m; "
                    "resampling on read and writing back on the input grid."
                )

    prepared = PreparedSource(
        dataset, band_list, nodata, xoff, yoff, output, output, False, notes=notes, path=str(image)
    )
    if region is not None and srs is not None:
        prepared.region_geometry = region.in_crs(srs)
    if not needs_warp:
        return prepared

    # channel subset + region as a VRT, then a warped VRT on the work grid
    token = uuid.uuid4().hex[:10]
    subset = f"/vsimem/geedl_predict_{token}_subset.vrt"
    warped = f"/vsimem/geedl_predict_{token}_work.vrt"
    gdal.Translate(
        subset, dataset, format="VRT", bandList=band_list, srcWin=[xoff, yoff, output.width, output.height]
    )
    xmin, ymin, xmax, ymax = output.bounds
    res = float(metadata.resolution) / (work_srs.GetLinearUnits() or 1.0)
    downsampling = srs.IsProjected() and _pixel_size_m(output, srs) < metadata.resolution
    work_ds = gdal.Warp(
        warped,
        subset,
        format="VRT",
        dstSRS=work_srs.ExportToWkt(),
        outputBounds=(xmin, ymin, xmax, ymax),
        outputBoundsSRS=srs.ExportToWkt(),
        xRes=res,
        yRes=res,
        targetAlignedPixels=True,
        resampleAlg="average" if downsampling else "bilinear",
        outputType=gdal.GDT_Float32,
        dstNodata=float("nan"),
        srcNodata=_src_nodata(nodata),
        multithread=False,
    )
    if work_ds is None:  # pragma: no cover - gdal raises with UseExceptions
        raise GeedlError(f"Cannot resample {image} to the model's grid.")
    work = Grid(
        work_ds.RasterXSize, work_ds.RasterYSize, tuple(work_ds.GetGeoTransform()), work_ds.GetProjection()
    )
    prepared.dataset = work_ds
    prepared.band_list = list(range(1, len(band_list) + 1))
    prepared.nodata = [None] * len(band_list)
    prepared.xoff = prepared.yoff = 0
    prepared.work = work
    prepared.resampled = True
    prepared.temporaries = [warped, subset]
    prepared.path = warped
    if region is not None:
        prepared.region_geometry = region.in_crs(work_srs)
    return prepared


def _src_nodata(nodata: list[float | None]) -> str | None:
    values = ["nan" if value is None else repr(value) for value in nodata]
    return " ".join(values)
