"""The label commands from the command line: autolabel, polygonize, rasterize, chips, denoise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_labels import brandenburg_composite, crop_raster, labels_dir, osm_gpkg, window_composite  # noqa: F401
from osgeo import ogr

from geedl_plugin.cli import main
from geedl_plugin.cli.autolabel import parse_thresholds
from geedl_plugin.cli.rasterize import parse_class_map
from geedl_plugin.core.errors import GeedlError

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "geedl_plugin", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_autolabel_with_polygons_in_jsonl(window_composite, tmp_path):  # noqa: F811
    done = _run(
        "autolabel",
        "--composite",
        str(window_composite),
        "--rule",
        "water",
        "--threshold",
        "0.05",
        "--threshold",
        "method=ndwi",
        "--out-mask",
        str(tmp_path / "w.tif"),
        "--out-vector",
        str(tmp_path / "w.shp"),
        "--min-area",
        "5000",
        "--progress",
        "jsonl",
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    result = lines[-1]
    assert result["type"] == "result" and result["rule"] == "water=water: NDWI > 0.05"
    assert any(line["type"] == "progress" for line in lines)
    assert result["area_stats_m2"]["min"] >= 5000
    dataset = ogr.Open(str(tmp_path / "w.shp"))
    assert dataset.GetLayer(0).GetFeatureCount() == result["features"] > 0


def test_missing_band_exits_2_with_one_clear_line(window_composite, tmp_path):  # noqa: F811
    done = _run(
        "autolabel",
        "--composite",
        str(window_composite),
        "--rule",
        "NDVI > 0.3 && B13 < 2",
        "--out-mask",
        str(tmp_path / "m.tif"),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("geedl: Rule") and "B13" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_polygonize_rasterize_chips_denoise_in_process(window_composite, osm_gpkg, tmp_path, capsys):  # noqa: F811
    assert (
        main(
            [
                "autolabel",
                "--composite",
                str(window_composite),
                "--rule",
                "crop+soil",
                "--out-mask",
                str(tmp_path / "cs.tif"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "polygonize",
                "--mask",
                str(tmp_path / "cs.tif"),
                "--out-vector",
                str(tmp_path / "cs.gpkg"),
                "--geometry",
                "bbox",
                "--classes",
                "2",
                "--connectedness",
                "8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "features:" in out and "area_stats_m2:" in out
    dataset = ogr.Open(str(tmp_path / "cs.gpkg"))
    assert {f["class_name"] for f in dataset.GetLayer(0)} == {"soil"}
    assert (
        main(
            [
                "rasterize",
                "--labels",
                str(osm_gpkg),
                "--class-field",
                "fclass",
                "--class-map",
                "water=1,forest=2",
                "--inward-buffer",
                "10",
                "--reference",
                str(window_composite),
                "--out",
                str(tmp_path / "osm.tif"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "chips",
                "--image",
                str(window_composite),
                "--labels",
                str(tmp_path / "osm.tif"),
                "--out-dir",
                str(tmp_path / "chips"),
                "--size",
                "128",
                "--overlap",
                "0",
                "--min-labelled",
                "0.01",
            ]
        )
        == 0
    )
    assert (tmp_path / "chips" / "manifest.json").exists()
    assert (
        main(
            [
                "denoise",
                "--composite",
                str(window_composite),
                "--mask",
                str(tmp_path / "cs.tif"),
                "--out-mask",
                str(tmp_path / "fixed.tif"),
                "--samples",
                "300",
                "--epochs",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "fixed.tif").exists() and (tmp_path / "fixed_changes.tif").exists()
    assert (
        main(
            [
                "chips",
                "--image",
                str(window_composite),
                "--labels",
                str(tmp_path / "osm.tif"),
                "--out-dir",
                str(tmp_path / "chips"),
            ]
        )
        == 2
    )  # not empty: refused, not overwritten
    assert "not empty" in capsys.readouterr().err


def test_option_parsers():
    assert parse_thresholds(["0.2", "hue=-0.1", "method=ndwi"]) == {
        "threshold": 0.2,
        "hue": -0.1,
        "method": "ndwi",
    }
    assert parse_class_map("water=1, farm=2") == {"water": 1, "farm": 2}
    assert parse_class_map('{"water": 3}') == {"water": 3}
    with pytest.raises(GeedlError, match="class-map"):
        parse_class_map("water")
