"""Training chips: georeferenced GeoTIFF image + label tiles with a manifest.

Chips keep their CRS and geotransform (users of similar plugins lose georeferencing with 8-bit
PNG exports), any band count and data type (float reflectance or integers), and the band names.

Layout of ``out_dir``::

    manifest.json        everything below, machine-readable (the training step reads this)
    manifest.csv         one row per chip, for spreadsheets / pandas
    images/<id>.tif      image chip: all bands of the image, its dtype, band descriptions, nodata
    labels/<id>.tif      label chip: uint8 class ids, 255 = ignore, colour table

``manifest.json`` (``format`` = ``"geedl-chips"``, ``version`` = 1)::

    {
      "format": "geedl-chips", "version": 1, "created": "2026-01-01T00:00:00Z",
      "image": "/abs/composite.tif", "labels": "/abs/mask.tif",
      "chip_size": 256, "overlap": 32, "stride": 224, "block_size": 1024,
      "bands": ["B2", "B3", ...], "image_dtype": "float32", "image_nodata": null | number | "nan",
      "label_dtype": "uint8", "ignore": 255,
      "legend": {"classes": [{"id": 0, "name": "other", "color": "#bdbdbd"}, ...],
                 "background": 0, "ignore": 255},
      "crs": "<WKT>", "geotransform": [x0, dx, 0, y0, 0, dy],
      "splits": {"train": 40, "val": 9},
      "class_counts": {"train": {"0": 123, "1": 456}, "val": {...}},   # labelled pixels per class id
      "skipped": {"too_few_labels": 3, "straddling_split_blocks": 5},
      "chips": [
        {"id": "r000000_c000224", "image": "images/r000000_c000224.tif",
         "label": "labels/r000000_c000224.tif",              # relative to the manifest's folder
         "row": 0, "col": 224, "width": 256, "height": 256,   # pixel window in the source image
         "bounds": [minx, miny, maxx, maxy],                  # in the image CRS
         "split": "train" | "val", "block": 1,
         "labelled_fraction": 0.41, "class_counts": {"0": 120, "1": 3000}}
      ]
    }

Chips are ``chip_size`` px squares on a stride of ``chip_size - overlap``; the last row and
column are moved back to end at the image edge (an image smaller than a chip gives one chip
padded with nodata / ignore). Chips whose share of labelled (non-255) pixels is below
``min_labelled_fraction`` are skipped.

Train/validation split by **spatial blocks**, not random pixels or chips: the image is cut into
``block_size`` px blocks, each chip belongs to the block holding its centre, and whole blocks go
to validation (in a seeded random order) until about ``val_fraction`` of the chips are there.
A chip that would overlap blocks of both splits is dropped, so no pixel is in both train and
val chips (neighbouring pixels are correlated; a random split would overstate accuracy).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from ..errors import GeedlError
from ..progress import Feedback, silent
from ..raster_io import band_descriptions, gdal_type, open_raster
from .legend import IGNORE, Legend, default_legend, read_legend, write_legend
from .schema import now_iso

gdal.UseExceptions()

FORMAT = "geedl-chips"
VERSION = 1
_VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".sqlite", ".fgb", ".kml")


@dataclass
class ChipsParams:
    """Image + labels -> chips (see the module docstring). ``labels`` is a class raster on the
    image's grid or a label layer (rasterized onto the grid with ``class_field``/``class_map``).
    ``block_size`` None: 4 chips. ``overwrite`` moves an existing ``out_dir`` aside first."""

    image: str | Path
    labels: str | Path
    out_dir: str | Path
    chip_size: int = 256
    overlap: int = 32
    min_labelled_fraction: float = 0.05
    val_fraction: float = 0.2
    block_size: int | None = None
    seed: int = 0
    class_field: str = "class_id"
    class_map: dict[str, int] | None = None
    overwrite: bool = False


@dataclass
class ChipsResult:
    out_dir: Path
    manifest: Path
    manifest_csv: Path
    train: int
    val: int
    skipped_few_labels: int
    skipped_straddling: int
    class_counts: dict[str, dict[str, int]]
    seconds: float
    backup: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "manifest": str(self.manifest),
            "train_chips": self.train,
            "val_chips": self.val,
            "skipped_few_labels": self.skipped_few_labels,
            "skipped_straddling": self.skipped_straddling,
            "class_counts": self.class_counts,
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }


def chip_origins(length: int, size: int, stride: int) -> list[int]:
    """Start offsets covering ``length`` with chips of ``size`` every ``stride``; the last one ends at
    the edge. ``[0]`` when the image is smaller than a chip."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _same_grid(a: gdal.Dataset, b: gdal.Dataset) -> bool:
    if (a.RasterXSize, a.RasterYSize) != (b.RasterXSize, b.RasterYSize):
        return False
    ga, gb = a.GetGeoTransform(), b.GetGeoTransform()
    tolerance = 1e-6 * max(abs(ga[1]), abs(ga[5]))
    return all(abs(x - y) <= max(tolerance, 1e-9 * abs(x)) for x, y in zip(ga, gb))


def _read_padded(dataset: gdal.Dataset, col: int, row: int, size: int, fill: float) -> np.ndarray:
    """(bands, size, size) starting at (col,row); beyond the edge filled with ``fill``."""
    width, height = dataset.RasterXSize, dataset.RasterYSize
    w, h = min(size, width - col), min(size, height - row)
    data = dataset.ReadAsArray(col, row, w, h)
    if data.ndim == 2:
        data = data[np.newaxis]
    if (w, h) == (size, size):
        return data
    out = np.full((data.shape[0], size, size), fill, dtype=data.dtype)
    out[:, :h, :w] = data
    return out


def _write_chip(
    path: Path,
    array: np.ndarray,
    geotransform: tuple[float, ...],
    wkt: str,
    descriptions: list[str],
    nodata: float | None,
    legend: Legend | None = None,
) -> None:
    bands, rows, cols = array.shape
    kind = array.dtype.kind
    predictor = "3" if kind == "f" else "2" if array.dtype.itemsize > 1 else "1"
    options = ["COMPRESS=DEFLATE", f"PREDICTOR={predictor}", "INTERLEAVE=BAND"]
    if rows % 16 == 0 and cols % 16 == 0 and rows >= 16:
        options += ["TILED=YES", f"BLOCKXSIZE={min(cols, 256)}", f"BLOCKYSIZE={min(rows, 256)}"]
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path), cols, rows, bands, gdal_type(array.dtype), options
    )
    try:
        dataset.SetGeoTransform(geotransform)
        dataset.SetProjection(wkt)
        for i in range(bands):
            band = dataset.GetRasterBand(i + 1)
            if i < len(descriptions) and descriptions[i]:
                band.SetDescription(descriptions[i])
            if nodata is not None:
                band.SetNoDataValue(float(nodata))
            band.WriteArray(array[i])
        if legend is not None:
            write_legend(dataset, legend)
    finally:
        dataset = None


def _labels_raster(
    params: ChipsParams, image: gdal.Dataset, staging: Path, feedback: Feedback
) -> tuple[gdal.Dataset, Legend]:
    source = Path(params.labels)
    if source.suffix.lower() in _VECTOR_SUFFIXES:
        from .rasterize import RasterizeParams, run_rasterize

        result = run_rasterize(
            RasterizeParams(
                source,
                params.image,
                staging / "labels_full.tif",
                class_field=params.class_field,
                class_map=params.class_map,
                backup_existing=False,
            ),
            feedback,
        )
        return open_raster(result.path), result.legend
    labels = open_raster(source)
    if labels.GetRasterBand(1).DataType != gdal.GDT_Byte:
        raise GeedlError(f"{source} is not a class raster (8-bit class ids, 255 = ignore).")
    if not _same_grid(image, labels):
        raise GeedlError(
            f"{source} is not on the grid of {params.image} (size, pixel size or origin differ). "
            "Rasterize the labels with the image as the reference grid first."
        )
    hist = labels.GetRasterBand(1).GetHistogram(-0.5, 255.5, 256, 0, 0)
    legend = read_legend(labels) or default_legend([i for i, n in enumerate(hist) if n and i != IGNORE])
    return labels, legend


def _check(params: ChipsParams) -> None:
    size, overlap = int(params.chip_size), int(params.overlap)
    if size < 8:
        raise GeedlError(f"Chip size {size} px is too small; use 64 to 1024 px (256 is common).")
    if not 0 <= overlap < size:
        raise GeedlError(f"Overlap {overlap} px must be >= 0 and smaller than the chip size ({size} px).")
    if not 0.0 <= float(params.min_labelled_fraction) <= 1.0:
        raise GeedlError("min_labelled_fraction must be between 0 and 1.")
    if not 0.0 <= float(params.val_fraction) < 1.0:
        raise GeedlError("val_fraction must be between 0 and 1 (0.2 = a fifth of the chips for validation).")
    if params.block_size is not None and int(params.block_size) < size:
        raise GeedlError(f"The split block ({params.block_size} px) must be at least one chip ({size} px).")


def run_chips(params: ChipsParams, feedback: Feedback | None = None) -> ChipsResult:
    """Write image and label chips and the manifest, atomically (a staging folder renamed at the end)."""
    feedback = feedback or silent()
    started = time.monotonic()
    _check(params)
    image = open_raster(params.image)
    if not image.GetProjection():
        raise GeedlError(
            f"{params.image} has no coordinate reference system; chips would lose their location."
        )
    out_dir = Path(params.out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not params.overwrite:
        raise GeedlError(
            f"{out_dir} exists and is not empty; choose a new folder or allow overwriting "
            "(the old folder is then kept as a backup)."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir.parent, os.W_OK):
        raise GeedlError(f"Cannot write to {out_dir.parent}; choose another output folder.")
    staging = out_dir.with_name(f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        result = _write_all(params, image, staging, out_dir, feedback)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if out_dir.exists():
        if any(out_dir.iterdir()):
            backup = out_dir.with_name(f"{out_dir.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
            out_dir.rename(backup)
        else:
            out_dir.rmdir()
    staging.rename(out_dir)
    result.backup = backup
    result.seconds = time.monotonic() - started
    return result


def _write_all(
    params: ChipsParams, image: gdal.Dataset, staging: Path, out_dir: Path, feedback: Feedback
) -> ChipsResult:
    labels, legend = _labels_raster(params, image, staging, feedback.sub(0, 10))
    size, overlap = int(params.chip_size), int(params.overlap)
    stride = size - overlap
    block = int(params.block_size or 4 * size)
    width, height = image.RasterXSize, image.RasterYSize
    gt = image.GetGeoTransform()
    wkt = image.GetProjection()
    names = band_descriptions(image)
    first = image.GetRasterBand(1)
    nodata = first.GetNoDataValue()
    dtype = np.dtype(gdal.GetDataTypeName(first.DataType).lower().replace("byte", "uint8"))
    fill = nodata if nodata is not None else (np.nan if dtype.kind == "f" else 0)
    blocks_x = max(1, math.ceil(width / block))

    def block_of(col: int, row: int) -> int:
        return (min(row, height - 1) // block) * blocks_x + min(col, width - 1) // block

    # candidates: enough labelled pixels
    candidates = []
    skipped_few = 0
    positions = [
        (r, c) for r in chip_origins(height, size, stride) for c in chip_origins(width, size, stride)
    ]
    sub = feedback.sub(10, 40)
    for number, (row, col) in enumerate(positions):
        feedback.check_cancelled()
        chip = _read_padded(labels, col, row, size, IGNORE)[0]
        labelled = chip != IGNORE
        fraction = float(labelled.mean())
        if fraction < params.min_labelled_fraction or not labelled.any():
            skipped_few += 1
            continue
        counts = np.bincount(chip[labelled].ravel(), minlength=256)
        candidates.append(
            {
                "row": row,
                "col": col,
                "fraction": fraction,
                "counts": {str(i): int(counts[i]) for i in np.nonzero(counts)[0]},
                "block": block_of(col + size // 2, row + size // 2),
                "touches": _blocks_between(col, row, size, width, height, block, blocks_x),
            }
        )
        sub.progress(100.0 * (number + 1) / len(positions), "choosing chips")
    warnings: list[str] = []
    # spatial split: whole blocks to validation until val_fraction of the chips
    rng = np.random.default_rng(params.seed)
    chip_blocks = sorted({c["block"] for c in candidates})
    order = [chip_blocks[i] for i in rng.permutation(len(chip_blocks))]
    val_blocks: set[int] = set()
    if params.val_fraction > 0 and len(chip_blocks) > 1:
        target = params.val_fraction * len(candidates)
        per_block = {b: sum(1 for c in candidates if c["block"] == b) for b in chip_blocks}
        count = 0
        for b in order:
            if count >= target or len(val_blocks) == len(chip_blocks) - 1:
                break
            val_blocks.add(b)
            count += per_block[b]
    elif params.val_fraction > 0:
        warnings.append(
            f"All chips fall in one {block} px block, so there is no validation split; use a "
            "smaller block size or a larger image."
        )
    chips = []
    skipped_straddle = 0
    for cand in candidates:
        split = "val" if cand["block"] in val_blocks else "train"
        mixed = any((b in val_blocks) != (split == "val") for b in cand["touches"])
        if mixed:
            skipped_straddle += 1
            continue
        cand["split"] = split
        chips.append(cand)
    if not chips:
        warnings.append("No chip has enough labelled pixels; lower min_labelled_fraction or label more.")

    (staging / "images").mkdir()
    (staging / "labels").mkdir()
    sub = feedback.sub(40, 100)
    manifest_chips = []
    totals: dict[str, dict[str, int]] = {"train": {}, "val": {}}
    for number, chip in enumerate(chips):
        feedback.check_cancelled()
        row, col = chip["row"], chip["col"]
        chip_id = f"r{row:06d}_c{col:06d}"
        chip_gt = (
            gt[0] + col * gt[1] + row * gt[2],
            gt[1],
            gt[2],
            gt[3] + col * gt[4] + row * gt[5],
            gt[4],
            gt[5],
        )
        pixels = _read_padded(image, col, row, size, fill)
        _write_chip(staging / "images" / f"{chip_id}.tif", pixels, chip_gt, wkt, names, nodata)
        label_pixels = _read_padded(labels, col, row, size, IGNORE)
        _write_chip(
            staging / "labels" / f"{chip_id}.tif", label_pixels, chip_gt, wkt, ["class"], IGNORE, legend
        )
        xs = (chip_gt[0], chip_gt[0] + size * gt[1])
        ys = (chip_gt[3], chip_gt[3] + size * gt[5])
        manifest_chips.append(
            {
                "id": chip_id,
                "image": f"images/{chip_id}.tif",
                "label": f"labels/{chip_id}.tif",
                "row": row,
                "col": col,
                "width": size,
                "height": size,
                "bounds": [min(xs), min(ys), max(xs), max(ys)],
                "split": chip["split"],
                "block": chip["block"],
                "labelled_fraction": round(chip["fraction"], 4),
                "class_counts": chip["counts"],
            }
        )
        for key, value in chip["counts"].items():
            totals[chip["split"]][key] = totals[chip["split"]].get(key, 0) + value
        sub.progress(100.0 * (number + 1) / max(1, len(chips)), "writing chips")
    train = sum(1 for c in manifest_chips if c["split"] == "train")
    val = len(manifest_chips) - train
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": now_iso(),
        "image": str(Path(params.image).resolve()),
        "labels": str(Path(params.labels).resolve()),
        "chip_size": size,
        "overlap": overlap,
        "stride": stride,
        "block_size": block,
        "bands": names,
        "image_dtype": dtype.name,
        "image_nodata": None if nodata is None else ("nan" if math.isnan(nodata) else nodata),
        "label_dtype": "uint8",
        "ignore": IGNORE,
        "legend": legend.to_dict(),
        "crs": wkt,
        "geotransform": list(gt),
        "splits": {"train": train, "val": val},
        "class_counts": totals,
        "skipped": {"too_few_labels": skipped_few, "straddling_split_blocks": skipped_straddle},
        "chips": manifest_chips,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    (staging / "manifest.csv").write_text(_manifest_csv(manifest_chips, legend), encoding="utf-8")
    leftover = staging / "labels_full.tif"
    if leftover.exists():
        leftover.rename(staging / "labels_rasterized.tif")
    for text in warnings:
        feedback.info("Warning: " + text)
    feedback.info(
        f"{train} train and {val} validation chips of {size} px; {skipped_few} skipped (few labels), "
        f"{skipped_straddle} dropped at split borders"
    )
    return ChipsResult(
        out_dir,
        out_dir / "manifest.json",
        out_dir / "manifest.csv",
        train,
        val,
        skipped_few,
        skipped_straddle,
        totals,
        0.0,
        None,
        warnings,
    )


def _blocks_between(
    col: int, row: int, size: int, width: int, height: int, block: int, blocks_x: int
) -> set[int]:
    """Every split block a chip's footprint covers (chips can span more than two when small blocks)."""
    c0, c1 = col // block, (min(col + size, width) - 1) // block
    r0, r1 = row // block, (min(row + size, height) - 1) // block
    return {r * blocks_x + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}


def _manifest_csv(chips: list[dict[str, Any]], legend: Legend) -> str:
    ids = legend.ids
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "id",
            "image",
            "label",
            "split",
            "block",
            "row",
            "col",
            "minx",
            "miny",
            "maxx",
            "maxy",
            "labelled_fraction",
        ]
        + [f"count_{i}" for i in ids]
    )
    for chip in chips:
        writer.writerow(
            [
                chip["id"],
                chip["image"],
                chip["label"],
                chip["split"],
                chip["block"],
                chip["row"],
                chip["col"],
                *chip["bounds"],
                chip["labelled_fraction"],
            ]
            + [chip["class_counts"].get(str(i), 0) for i in ids]
        )
    return buffer.getvalue()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load a chips manifest (the file or its folder), checking format and version."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GeedlError(f"Cannot read the chips manifest {path}: {exc}") from exc
    if data.get("format") != FORMAT or int(data.get("version", 0)) > VERSION:
        raise GeedlError(f"{path} is not a geedl chips manifest (version {VERSION}).")
    return data
