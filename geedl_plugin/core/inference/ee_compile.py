"""A trained convolutional net as a list of per-pixel image operations (document 001's deployment).

Document 001 (Water_gee) runs its pixel CNN inside Earth Engine by rewriting every layer as an
Earth Engine image operation: convolution -> ``ee.Kernel`` + ``convolve``, concatenation ->
``ee.Image.cat``, slicing -> ``select``. This module does the engine-neutral half: it reads an
ONNX model (the file training writes; a torch module is exported first) and compiles it into an
:class:`OpProgram`, a short list of operations on multi-band images:

``normalize``  (x - mean) / std per input band (the model metadata's normalisation)
``conv``       k x k convolution, stride 1, centred, zero outside the image; weights in torch
               layout ``out x in x kh x kw`` (cross-correlation, as torch and Keras compute it)
``affine``     per-channel ``x * scale + shift`` (folded batch norm, constant Add/Mul)
``relu``, ``leaky_relu``, ``sigmoid``
``concat``     channels of several images, in order
``select``     a subset of channels

Spatial bookkeeping: Earth Engine images have no edges, so a padding-free 3 x 3 convolution is
just a centred one, the reflect ``Pad`` that geedl exports put in front of padding-free models
is dropped, and "slice the centre of the input" (document 001's skip connections) is the input
itself, already aligned with the output pixel. The compiler tracks how many pixels each tensor
has lost on each side and refuses graphs where tensors of different alignment are
concatenated or where a crop is not centred, because those could not be expressed per pixel.

:func:`run_program` interprets a program in numpy. It is the offline proof of the compilation:
on a real image window it reproduces onnxruntime / torch to 1e-4 away from the window border.
:mod:`.ee_deploy` turns the same program into an Earth Engine graph.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeedlError
from ..model_metadata import ModelMetadata

SUPPORTED = (
    "Conv",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Concat",
    "Slice",
    "Pad",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Identity",
    "Dropout",
)
CONSTANT_OPS = (
    "Constant",
    "ConstantOfShape",
    "Concat",
    "Reshape",
    "Slice",
    "Transpose",
    "Cast",
    "Unsqueeze",
    "Squeeze",
    "Identity",
    "Gather",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
)


@dataclass
class Op:
    """One image operation: ``output = kind(inputs, params)`` with ``channels`` output channels."""

    kind: str
    inputs: list[str]
    output: str
    channels: int
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "op": self.kind,
            "in": self.inputs,
            "out": self.output,
            "channels": self.channels,
        }
        for key, value in self.params.items():
            info[key] = list(value.shape) if isinstance(value, np.ndarray) else value
        return info


@dataclass
class OpProgram:
    """A compiled model: band names in, ``outputs`` logits out (or one regression value)."""

    bands: list[str]
    ops: list[Op]
    output: str
    outputs: int
    class_names: list[str] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)
    model_type: str = "segmentation"
    output_scale: float = 1.0
    output_offset: float = 0.0
    #: class name -> probability at which the class is called (core.class_decision)
    class_thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return int(
            sum(
                p.size
                for op in self.ops
                for p in op.params.values()
                if isinstance(p, np.ndarray) and op.kind in ("conv",)
            )
        )

    def describe(self) -> list[dict[str, Any]]:
        return [op.describe() for op in self.ops]

    def to_json(self) -> str:
        """Human-readable summary (shapes, not weights) for logs and the dry run."""
        return json.dumps(
            {
                "bands": self.bands,
                "outputs": self.outputs,
                "classes": self.class_names,
                "ops": self.describe(),
            },
            indent=1,
        )


# -- ONNX -> program ------------------------------------------------------------------------------


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold(node: Any, values: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    """numpy for the constant sub-graphs torch exports (pad sizes, slice bounds)."""
    from onnx import numpy_helper

    op = node.op_type
    if op == "Constant":
        return (
            numpy_helper.to_array(attrs["value"])
            if "value" in attrs
            else np.asarray(
                attrs.get(
                    "value_ints", attrs.get("value_floats", attrs.get("value_int", attrs.get("value_float")))
                )
            )
        )
    if op == "ConstantOfShape":
        fill = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
        return np.full(tuple(int(v) for v in values[0]), fill.ravel()[0], dtype=fill.dtype)
    if op == "Concat":
        return np.concatenate(values, axis=int(attrs.get("axis", 0)))
    if op == "Reshape":
        shape = [int(v) for v in values[1]]
        shape = [
            values[0].shape[i] if v == 0 and not attrs.get("allowzero") else v for i, v in enumerate(shape)
        ]
        return values[0].reshape(shape)
    if op == "Slice":
        data, starts, ends = values[0], values[1], values[2]
        axes = values[3] if len(values) > 3 and values[3] is not None else np.arange(len(starts))
        steps = values[4] if len(values) > 4 and values[4] is not None else np.ones(len(starts), np.int64)
        index = [slice(None)] * data.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            index[int(a)] = slice(int(s), int(e), int(st))
        return data[tuple(index)]
    if op == "Transpose":
        return np.transpose(values[0], attrs.get("perm"))
    if op == "Cast":
        from onnx import helper

        return values[0].astype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    if op == "Unsqueeze":
        axes = [int(a) for a in (values[1] if len(values) > 1 else attrs["axes"])]
        out = values[0]
        for axis in sorted(a % (out.ndim + len(axes)) for a in axes):
            out = np.expand_dims(out, axis)
        return out
    if op == "Squeeze":
        axes = values[1] if len(values) > 1 else attrs.get("axes")
        return np.squeeze(values[0], axis=None if axes is None else tuple(int(a) for a in axes))
    if op == "Identity":
        return values[0]
    if op == "Gather":
        return np.take(values[0], values[1], axis=int(attrs.get("axis", 0)))
    if op == "Neg":
        return -values[0]
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
    return binary[op](values[0], values[1])


@dataclass
class _Tensor:
    name: str
    channels: int
    margin: tuple[int, int]  # pixels lost (y, x) on each side relative to the input


def _per_channel(value: np.ndarray, channels: int, what: str) -> np.ndarray:
    """A constant broadcast over an N x C x H x W tensor, as one value per channel."""
    array = np.asarray(value, dtype=np.float64)
    if array.size == 1:
        return np.full(channels, float(array.ravel()[0]))
    if array.ndim >= 3 and array.shape[-2:] == (1, 1) and array.size == channels:
        return array.reshape(channels)
    raise GeedlError(
        f"{what}: a constant of shape {array.shape} is not one value per channel "
        f"(1 x {channels} x 1 x 1), so it cannot run per pixel."
    )


def compile_onnx(model: str | Path | bytes, metadata: ModelMetadata | None = None) -> OpProgram:
    """Compile an ONNX model (path or bytes) into an :class:`OpProgram`.

    ``metadata`` defaults to the file's geedl metadata (band names, normalisation, classes).
    Raises GeedlError naming the first operation that has no per-pixel equivalent (pooling,
    upsampling, strides: a U-Net cannot run as Earth Engine image math, the pixel CNN can).
    """
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    except Exception as exc:
        raise GeedlError(f"Cannot read the ONNX model to compile it: {exc}") from exc
    if metadata is None:
        props = {p.key: p.value for p in proto.metadata_props}
        metadata = ModelMetadata.from_props(
            props, source=str(model)[:80] if not isinstance(model, bytes) else "the model"
        )
    if metadata.time_steps > 1:
        raise GeedlError("Temporal models are not compiled to Earth Engine; use the pixel CNN.")
    graph = proto.graph
    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise GeedlError(f"The model has {len(inputs)} inputs; a geedl model has one image input.")
    n_in = len(metadata.bands)
    tensors: dict[str, _Tensor] = {}
    ops: list[Op] = []
    counter = {"n": 0}

    def new_name(kind: str) -> str:
        counter["n"] += 1
        return f"{kind}{counter['n']}"

    mean = np.asarray(metadata.norm_mean, np.float64)
    std = np.asarray(metadata.norm_std, np.float64)
    first = Op("normalize", ["input"], "x0", n_in, {"bands": list(metadata.bands), "mean": mean, "std": std})
    ops.append(first)
    tensors[inputs[0].name] = _Tensor("x0", n_in, (0, 0))

    for node in graph.node:
        attrs = _attributes(node)
        op = node.op_type
        live = [name for name in node.input if name and name in tensors]
        if not live:  # constant sub-graph (pad sizes, slice bounds ...)
            if op not in CONSTANT_OPS:
                raise GeedlError(f"Cannot compile {op} ({node.name}) on constants.")
            values = [constants.get(name) if name else None for name in node.input]
            if any(v is None for name, v in zip(node.input, values) if name):
                missing = [name for name, v in zip(node.input, values) if name and v is None]
                raise GeedlError(
                    f"{op} ({node.name}) depends on the input's shape ({missing[0]}); "
                    "export the model with constant folding."
                )
            constants[node.output[0]] = _fold(node, values, attrs)
            continue
        if op not in SUPPORTED:
            raise GeedlError(
                f"The model uses {op} ({node.name or 'unnamed'}), which has no per-pixel Earth Engine "
                "equivalent. Only convolutional nets without pooling or strides (the pixel CNN, document "
                "001) compile to Earth Engine; run this model locally with 'geedl predict'."
            )
        src = tensors[live[0]]
        out_name = node.output[0]
        if op in ("Identity", "Dropout"):
            tensors[out_name] = src
        elif op == "Pad":
            pads = constants.get(node.input[1]) if len(node.input) > 1 else attrs.get("pads")
            if pads is None:
                raise GeedlError("A Pad with sizes computed from the input shape cannot be compiled.")
            pads = [int(v) for v in np.asarray(pads).ravel()]
            half = len(pads) // 2
            begin, end = pads[:half], pads[half:]
            if any(begin[:2]) or any(end[:2]) or begin[2:] != end[2:]:
                raise GeedlError(f"Pad {pads} is not a symmetric spatial padding; cannot compile it.")
            tensors[out_name] = _Tensor(
                src.name, src.channels, (src.margin[0] - begin[2], src.margin[1] - begin[3])
            )
        elif op == "Conv":
            weight = constants.get(node.input[1])
            if weight is None:
                raise GeedlError("Convolution weights must be constants of the model.")
            bias = (
                constants.get(node.input[2])
                if len(node.input) > 2 and node.input[2]
                else np.zeros(weight.shape[0])
            )
            strides = list(attrs.get("strides", [1, 1]))
            dilations = list(attrs.get("dilations", [1, 1]))
            group = int(attrs.get("group", 1))
            if any(s != 1 for s in strides) or any(d != 1 for d in dilations) or group != 1:
                raise GeedlError(
                    f"Convolution {node.name} has strides {strides}, dilations {dilations} or "
                    f"groups {group}; only stride-1 dense convolutions compile to Earth Engine."
                )
            kh, kw = weight.shape[2:]
            if kh % 2 == 0 or kw % 2 == 0:
                raise GeedlError(
                    f"Convolution {node.name} has an even kernel {kh} x {kw}; it has no centre pixel."
                )
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise GeedlError(f"Convolution {node.name} uses auto_pad; export with explicit padding.")
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[0] != pads[2] or pads[1] != pads[3]:
                raise GeedlError(f"Convolution {node.name} pads {pads} asymmetrically; cannot compile it.")
            if weight.shape[1] != src.channels:
                raise GeedlError(
                    f"Convolution {node.name} expects {weight.shape[1]} channels, gets {src.channels}."
                )
            name = new_name("conv")
            ops.append(
                Op(
                    "conv",
                    [src.name],
                    name,
                    int(weight.shape[0]),
                    {"weight": np.asarray(weight, np.float64), "bias": np.asarray(bias, np.float64)},
                )
            )
            margin = (src.margin[0] + kh // 2 - pads[0], src.margin[1] + kw // 2 - pads[1])
            tensors[out_name] = _Tensor(name, int(weight.shape[0]), margin)
        elif op in ("Relu", "Sigmoid", "LeakyRelu"):
            name = new_name(op.lower())
            kind = {"Relu": "relu", "Sigmoid": "sigmoid", "LeakyRelu": "leaky_relu"}[op]
            params = {"alpha": float(attrs.get("alpha", 0.01))} if op == "LeakyRelu" else {}
            ops.append(Op(kind, [src.name], name, src.channels, params))
            tensors[out_name] = _Tensor(name, src.channels, src.margin)
        elif op == "Concat":
            if int(attrs.get("axis", 1)) not in (1, -3):
                raise GeedlError("Only channel concatenation (axis 1) compiles to Earth Engine.")
            parts = [tensors[name] for name in node.input]
            margins = {part.margin for part in parts}
            if len(margins) != 1:
                raise GeedlError(
                    f"Concat {node.name} joins tensors of different alignment {sorted(margins)}; "
                    "the centre slices do not line up with the convolutions."
                )
            name = new_name("concat")
            channels = sum(part.channels for part in parts)
            ops.append(Op("concat", [part.name for part in parts], name, channels))
            tensors[out_name] = _Tensor(name, channels, parts[0].margin)
        elif op == "Slice":
            starts = np.asarray(constants[node.input[1]]).ravel()
            ends = np.asarray(constants[node.input[2]]).ravel()
            axes = (
                np.asarray(constants[node.input[3]]).ravel()
                if len(node.input) > 3 and node.input[3]
                else np.arange(len(starts))
            )
            steps = (
                np.asarray(constants[node.input[4]]).ravel()
                if len(node.input) > 4 and node.input[4]
                else np.ones(len(starts), np.int64)
            )
            margin = list(src.margin)
            current = src
            for s, e, a, st in zip(starts, ends, axes, steps):
                axis = int(a) % 4
                if int(st) != 1:
                    raise GeedlError(f"Slice {node.name} has step {st}; only contiguous slices compile.")
                if axis == 1:
                    channels = list(range(current.channels))[int(s) : int(e) if int(e) < 2**62 else None]
                    name = new_name("select")
                    ops.append(Op("select", [current.name], name, len(channels), {"channels": channels}))
                    current = _Tensor(name, len(channels), tuple(margin))
                elif axis in (2, 3):
                    start, end = int(s), int(e)
                    if start < 0 or not (end < 0 and -end == start or end >= 2**62 and start == 0):
                        raise GeedlError(
                            f"Slice {node.name} crops {start}:{end}; only centred crops compile."
                        )
                    margin[axis - 2] += start
                else:
                    raise GeedlError(
                        f"Slice {node.name} on axis {axis}; only channels and centred crops compile."
                    )
            tensors[out_name] = _Tensor(current.name, current.channels, (margin[0], margin[1]))
        elif op == "BatchNormalization":
            scale, shift, mean_, var = (constants[name] for name in node.input[1:5])
            eps = float(attrs.get("epsilon", 1e-5))
            factor = scale / np.sqrt(var + eps)
            name = new_name("affine")
            ops.append(
                Op(
                    "affine",
                    [src.name],
                    name,
                    src.channels,
                    {
                        "scale": np.asarray(factor, np.float64),
                        "shift": np.asarray(shift - mean_ * factor, np.float64),
                    },
                )
            )
            tensors[out_name] = _Tensor(name, src.channels, src.margin)
        elif op in ("Add", "Sub", "Mul", "Div"):
            if len(live) != 1:
                raise GeedlError(f"{op} of two image tensors ({node.name}) is not supported yet.")
            other = next(name for name in node.input if name not in tensors)
            constant = _per_channel(constants[other], src.channels, f"{op} {node.name}")
            if op in ("Sub", "Div") and node.input[0] != live[0]:
                raise GeedlError(f"{op} with the image as the second operand is not supported.")
            scale = np.ones(src.channels)
            shift = np.zeros(src.channels)
            if op == "Add":
                shift = constant
            elif op == "Sub":
                shift = -constant
            elif op == "Mul":
                scale = constant
            else:
                scale = 1.0 / constant
            name = new_name("affine")
            ops.append(Op("affine", [src.name], name, src.channels, {"scale": scale, "shift": shift}))
            tensors[out_name] = _Tensor(name, src.channels, src.margin)
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1 or outputs[0] not in tensors:
        raise GeedlError("The model's output is not computed from its input; cannot compile it.")
    final = tensors[outputs[0]]
    n_out = 1 if metadata.model_type == "regression" else len(metadata.classes)
    if final.channels != n_out:
        raise GeedlError(f"The model outputs {final.channels} channels but its metadata has {n_out}.")
    return OpProgram(
        list(metadata.bands),
        _prune(ops, final.name),
        final.name,
        n_out,
        metadata.class_names,
        [c.id for c in metadata.classes],
        metadata.model_type,
        metadata.output_scale,
        metadata.output_offset,
        dict(metadata.class_thresholds),
    )


def _prune(ops: list[Op], output: str) -> list[Op]:
    """Drop operations the output does not depend on."""
    needed = {output}
    kept: list[Op] = []
    for op in reversed(ops):
        if op.output in needed:
            kept.append(op)
            needed.update(op.inputs)
    return list(reversed(kept))


def compile_torch(module: Any, metadata: ModelMetadata, size: int = 32) -> OpProgram:
    """Export a torch module to ONNX in memory (as training does) and compile it."""
    import warnings

    import torch

    from ..models.base import SamePadding

    module = module.eval()
    if getattr(module, "margin", 0) and not isinstance(module, SamePadding):
        module = SamePadding(module)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, len(metadata.bands), size, size),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            do_constant_folding=True,
            dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
        )
    return compile_onnx(buffer.getvalue(), metadata)


# -- the numpy interpreter ------------------------------------------------------------------------


def _conv_same(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Centred k x k cross-correlation, zero outside the image (C x H x W -> O x H x W)."""
    out_c, _, kh, kw = weight.shape
    _, height, width = x.shape
    cy, cx = kh // 2, kw // 2
    padded = np.pad(x, ((0, 0), (cy, cy), (cx, cx)))
    out = np.zeros((out_c, height, width), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            window = padded[:, ky : ky + height, kx : kx + width]
            out += np.tensordot(weight[:, :, ky, kx], window, axes=(1, 0))
    out += bias[:, None, None]
    return out


def run_program(program: OpProgram, image: np.ndarray, band_names: list[str] | None = None) -> np.ndarray:
    """Evaluate ``program`` on raw bands (C x H x W, reflectance x 10000 as in the composite);
    returns logits (K x H x W, float64) or the scaled regression value (1 x H x W).

    ``band_names`` picks the program's bands by name from ``image``; by default the image's
    channels are the program's bands in order."""
    data = np.asarray(image, np.float64)
    if band_names is not None:
        missing = [b for b in program.bands if b not in band_names]
        if missing:
            raise GeedlError(f"The image lacks {', '.join(missing)}.")
        data = np.stack([data[band_names.index(b)] for b in program.bands])
    values: dict[str, np.ndarray] = {"input": data}
    for op in program.ops:
        x = values[op.inputs[0]]
        p = op.params
        if op.kind == "normalize":
            out = (x - p["mean"][:, None, None]) / p["std"][:, None, None]
        elif op.kind == "conv":
            out = _conv_same(x, p["weight"], p["bias"])
        elif op.kind == "relu":
            out = np.maximum(x, 0.0)
        elif op.kind == "leaky_relu":
            out = np.where(x < 0, x * p["alpha"], x)
        elif op.kind == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-x))
        elif op.kind == "affine":
            out = x * p["scale"][:, None, None] + p["shift"][:, None, None]
        elif op.kind == "concat":
            out = np.concatenate([values[name] for name in op.inputs], axis=0)
        elif op.kind == "select":
            out = x[p["channels"]]
        else:  # pragma: no cover - compile_onnx makes only the kinds above
            raise GeedlError(f"Unknown operation {op.kind}")
        values[op.output] = out
    result = values[program.output]
    if program.model_type == "regression":
        return result * program.output_scale + program.output_offset
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=0))
    return exp / exp.sum(axis=0)
