"""The compiled pixel CNN as an Earth Engine graph, run on a recipe's composite, exported.

Document 001 deploys its pixel CNN into Earth Engine so that prediction over a whole region runs
there and lands as an asset. :func:`program_image` turns an :class:`~.ee_compile.OpProgram`
into Earth Engine image operations:

- ``normalize`` / ``affine``: ``subtract`` / ``divide`` / ``multiply`` / ``add`` with
  ``ee.Image.constant`` of one value per band;
- ``conv`` (``mode="taps"``, the default, cheap): the k x k neighbourhood is gathered as k*k
  shifted copies of the whole input (``convolve`` with a one-hot ``ee.Kernel.fixed``; the
  centre tap is the image itself), stacked with ``ee.Image.cat`` into one per-pixel vector of
  ``in * k * k`` values (``toArray``), multiplied by the ``out x (in * k * k)`` weight matrix
  (``matrixMultiply``) and flattened back into ``out`` bands (``arrayProject`` +
  ``arrayFlatten``), bias added. A 1 x 1 convolution is just the matrix product. This is the
  "cheaper equivalent" of document 001's mapping: 9 convolutions per 3 x 3 layer instead of
  ``in x out`` (2,560 for the 40 -> 64 layer of the table);
- ``conv`` (``mode="pairs"``): document 001's literal mapping, one ``ee.Kernel.fixed`` +
  ``convolve`` per input/output channel pair, summed with ``add``;
- ReLU: ``max(0)``; concatenation: ``ee.Image.cat``; channel slices: ``select``;
- the end: ``arrayArgmax`` of the logits for the class map, softmax (``exp``, ``reduce(sum)``,
  ``divide``) for probabilities.

Kernel orientation: ``ee.Kernel.fixed`` takes ``weights`` as rows from the top, ``x``/``y`` the
focus from the left/top, and ``convolve`` lays the kernel over the image (each output is the sum
of weight x the pixel under it), which is torch's cross-correlation; weights are used unflipped,
as Water_gee does with Keras weights. :func:`orientation_probe` builds a one-pixel check of that
convention to run once online (offline it cannot be observed; the offline tests verify the
graph's wiring against this stated meaning of each algorithm).

The input is reprojected to the export grid at the model's resolution before the network, so
every kernel spans model pixels whatever scale Earth Engine is asked for (document 001
reprojects to its 30 m grid the same way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeedlError
from ..model_metadata import read_metadata
from ..progress import Feedback, silent
from .ee_compile import OpProgram, compile_onnx

MODES = ("taps", "pairs")


def _ee() -> Any:
    from ..earthengine.connection import load_ee

    return load_ee()


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{i}" for i in range(count)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "class"


def _constant(values: np.ndarray | list[float]) -> Any:
    ee = _ee()
    return ee.Image.constant([float(v) for v in np.asarray(values).ravel()])


def _one_hot(kh: int, kw: int, ky: int, kx: int) -> list[list[float]]:
    rows = [[0.0] * kw for _ in range(kh)]
    rows[ky][kx] = 1.0
    return rows


def _conv_taps(x: Any, weight: np.ndarray, bias: np.ndarray, name: str, in_names: list[str]) -> Any:
    ee = _ee()
    out_c, in_c, kh, kw = weight.shape
    cy, cx = kh // 2, kw // 2
    if kh == 1 and kw == 1:
        stacked = x
        matrix = weight[:, :, 0, 0]
    else:
        taps = []
        for ky in range(kh):
            for kx in range(kw):
                tap = ky * kw + kx
                shifted = (
                    x
                    if (ky, kx) == (cy, cx)
                    else x.convolve(ee.Kernel.fixed(kw, kh, _one_hot(kh, kw, ky, kx), cx, cy, False))
                )
                taps.append(shifted.rename([f"{name}_t{tap}_{i}" for i in range(in_c)]))
        stacked = ee.Image.cat(taps)
        # column t * in_c + i holds weight[o, i, ky, kx] with t = ky * kw + kx (the stacking order)
        matrix = weight.transpose(0, 2, 3, 1).reshape(out_c, kh * kw * in_c)
    vector = stacked.toArray().toArray(1)
    product = ee.Image(ee.Array(matrix.tolist())).matrixMultiply(vector)
    out = product.arrayProject([0]).arrayFlatten([_names(name, out_c)])
    return out.add(_constant(bias)).rename(_names(name, out_c))


def _balanced(items: list[Any], combine: Any) -> Any:
    """Combine items pairwise in a balanced tree: a left-deep chain of hundreds of ``add`` or
    ``addBands`` is too deep for the serializer (and for Earth Engine's own recursion)."""
    while len(items) > 1:
        items = [
            combine(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
    return items[0]


def _conv_pairs(x: Any, weight: np.ndarray, bias: np.ndarray, name: str, in_names: list[str]) -> Any:
    """Document 001's literal mapping: one kernel per (input, output) channel pair, summed.
    1 x 1 layers are a matrix product either way (``in x out`` multiplications would only make
    the request bigger)."""
    ee = _ee()
    out_c, in_c, kh, kw = weight.shape
    if kh == kw == 1:
        return _conv_taps(x, weight, bias, name, in_names)
    cy, cx = kh // 2, kw // 2
    outputs = []
    for o in range(out_c):
        terms = [
            x.select([in_names[i]]).convolve(ee.Kernel.fixed(kw, kh, weight[o, i].tolist(), cx, cy, False))
            for i in range(in_c)
        ]
        total = _balanced(terms, lambda a, b: a.add(b))
        outputs.append(total.add(float(bias[o])).rename([f"{name}_{o}"]))
    return _balanced(outputs, lambda a, b: ee.Image.cat([a, b]))


def program_image(
    program: OpProgram,
    image: Any,
    mode: str = "taps",
    crs: str | None = None,
    crs_transform: list[float] | None = None,
) -> Any:
    """The program's output (logits, or the regression value) as an ee.Image.

    ``image`` must have the program's bands by name (a geedl recipe composite does). With
    ``crs`` / ``crs_transform`` the normalised input is reprojected to that grid first.
    """
    if mode not in MODES:
        raise GeedlError(f"Convolution mode {mode!r} is not one of {', '.join(MODES)}.")
    conv = _conv_taps if mode == "taps" else _conv_pairs
    values: dict[str, Any] = {}
    names: dict[str, list[str]] = {}
    for op in program.ops:
        p = op.params
        out_names = _names(op.output, op.channels)
        if op.kind == "normalize":
            x = image.select(list(p["bands"]))
            x = x.subtract(_constant(p["mean"])).divide(_constant(p["std"])).rename(out_names)
            if crs is not None:
                x = x.reproject(crs=crs, crsTransform=crs_transform)
        else:
            src = values[op.inputs[0]]
            if op.kind == "conv":
                x = conv(src, p["weight"], p["bias"], op.output, names[op.inputs[0]])
            elif op.kind == "relu":
                x = src.max(0).rename(out_names)
            elif op.kind == "leaky_relu":
                x = src.where(src.lt(0), src.multiply(float(p["alpha"]))).rename(out_names)
            elif op.kind == "sigmoid":
                x = src.multiply(-1).exp().add(1).pow(-1).rename(out_names)
            elif op.kind == "affine":
                x = src.multiply(_constant(p["scale"])).add(_constant(p["shift"])).rename(out_names)
            elif op.kind == "concat":
                x = _ee().Image.cat([values[name] for name in op.inputs]).rename(out_names)
            elif op.kind == "select":
                source_names = names[op.inputs[0]]
                x = src.select([source_names[c] for c in p["channels"]]).rename(out_names)
            else:  # pragma: no cover - compile_onnx makes only the kinds above
                raise GeedlError(f"Unknown operation {op.kind}")
        values[op.output] = x
        names[op.output] = out_names
    result = values[program.output]
    if program.model_type == "regression":
        return result.multiply(program.output_scale).add(program.output_offset).rename(["value"])
    return result.rename([_safe(n) for n in program.class_names])


def classify(program: OpProgram, logits: Any, probabilities: bool = False) -> Any:
    """Class map (band ``class``, the model's class ids) from logits, decided as the local runner
    decides (arg-max, then the model's class thresholds: :func:`..class_decision.decide`); with
    ``probabilities`` the softmax bands ``p_<class>`` are added (float, 0-1)."""
    ee = _ee()
    index = logits.toArray().arrayArgmax().arrayGet([0])
    top = logits.reduce(ee.Reducer.max())
    exp = logits.subtract(top).exp()
    probs = exp.divide(exp.reduce(ee.Reducer.sum())).rename([f"p_{_safe(n)}" for n in program.class_names])
    margin = None
    for k, name in enumerate(program.class_names):
        if name not in program.class_thresholds:
            continue
        above = probs.select([f"p_{_safe(name)}"]).subtract(float(program.class_thresholds[name]))
        wins = above.gte(0) if margin is None else above.gte(0).And(above.gt(margin))
        index = index.where(wins, k)
        margin = above if margin is None else margin.max(above)
    ids = list(program.class_ids)
    if ids != list(range(len(ids))):
        index = index.remap(list(range(len(ids))), ids)
    out = index.rename(["class"]).toUint8()
    if probabilities:
        out = out.addBands(probs.toFloat())
    return out


def orientation_probe() -> Any:
    """A tiny graph whose value at one pixel shows ``convolve``'s orientation (run it online once):
    ``ee.Image.pixelCoordinates`` shifted by a one-hot kernel whose 1 sits left of and above the
    focus. Under the convention this module relies on, the result at pixel (x, y) is (x - 1,
    y - 1) in the image's pixel coordinates."""
    ee = _ee()
    projection = ee.Projection("EPSG:32633").atScale(10)
    coords = ee.Image.pixelCoordinates(projection)
    return coords.convolve(ee.Kernel.fixed(3, 3, _one_hot(3, 3, 0, 0), 1, 1, False)).reproject(projection)


# -- deployment ----------------------------------------------------------------------------------


@dataclass
class DeployParams:
    """Predict with a (pixel CNN) model inside Earth Engine on a recipe's composite and export."""

    model: str | Path
    recipe: Any  # CompositeRecipe
    query: Any  # earthengine.query.SceneQuery
    target: Any  # earthengine.export.ExportTarget
    description: str = ""
    probabilities: bool = False
    mode: str = "taps"
    #: None: only build the graph (dry run); True: start the export task
    start: bool = True


@dataclass
class DeployResult:
    program: OpProgram
    image: Any
    grid: Any
    band_names: list[str]
    task: Any = None
    algorithms: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict() if self.task is not None else None,
            "operations": len(self.program.ops),
            "bands": ",".join(self.band_names),
            "grid": self.grid.to_dict() if self.grid is not None else None,
            "algorithms": len(self.algorithms),
        }


def serialized_algorithms(image: Any) -> list[str]:
    """Every Earth Engine algorithm name the image's graph invokes (sorted, unique)."""
    import json

    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            invocation = node.get("functionInvocationValue")
            if isinstance(invocation, dict) and invocation.get("functionName"):
                found.add(invocation["functionName"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(image.serialize(for_cloud_api=True)))
    return sorted(found)


def deploy_model(params: DeployParams, feedback: Feedback | None = None) -> DeployResult:
    """Compile the model, build it on the recipe's Earth Engine composite, and (``start``) export
    the class map to an asset / Drive / Cloud Storage as a batch task on the composite's grid."""
    from ..earthengine.compile import compile_recipe
    from ..earthengine.export import export_image

    feedback = feedback or silent()
    metadata = read_metadata(params.model)
    program = compile_onnx(str(params.model), metadata)
    feedback.progress(20, f"compiled {len(program.ops)} operations")
    recipe = params.recipe
    if abs(float(recipe.scale) - float(metadata.resolution)) > 1e-6 * float(metadata.resolution):
        raise GeedlError(
            f"The recipe's scale is {recipe.scale:g} m but the model was trained at "
            f"{metadata.resolution:g} m; set the recipe scale to {metadata.resolution:g}."
        )
    compiled = compile_recipe(recipe, params.query)
    missing = [band for band in program.bands if band not in compiled.band_names]
    if missing:
        raise GeedlError(
            f"The recipe's composite lacks {', '.join(missing)} that the model needs; it has "
            f"{', '.join(compiled.band_names)}. Add them to the recipe's bands or indices."
        )
    grid = compiled.grid()
    transform = [grid.scale, 0, grid.x0, 0, -grid.scale, grid.y0]
    logits = program_image(program, compiled.image, params.mode, crs=grid.crs, crs_transform=transform)
    if metadata.model_type == "regression":
        image, dtype, bands = logits.toFloat(), "float32", ["value"]
    else:
        image = classify(program, logits, params.probabilities)
        dtype = "float32" if params.probabilities else "uint8"
        bands = ["class"] + ([f"p_{_safe(n)}" for n in program.class_names] if params.probabilities else [])
        if params.target.destination != "asset":
            image = image.unmask(255, False)  # the local class maps' nodata
    algorithms = serialized_algorithms(image)
    feedback.progress(60, f"Earth Engine graph with {len(algorithms)} algorithms")
    result = DeployResult(program, image, grid, bands, algorithms=algorithms)
    if params.start:
        description = params.description or f"geedl_{Path(params.model).stem}_prediction"
        result.task = export_image(image, grid, description, params.target, dtype=dtype)
        feedback.progress(100, f"export task {result.task.task_id} started")
    return result
