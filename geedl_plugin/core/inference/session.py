"""Open an ONNX model for inference, and refuse it clearly before any raster is touched.

Everything that can be wrong with a model file is checked here, once, in the order a user would
fix it: the file exists, it parses, its opsets are ones this onnxruntime runs, it carries the
geedl metadata (which keys are missing), its input and output tensors have the shapes the
metadata promises. onnxruntime's own messages are long C++ traces; they are kept as the cause
but the :class:`GeedlError` says what to do.

Memory: the CPU memory arena is off (see :func:`load_model`). Threads: one intra-op pool as
large as the CPUs this process may use (tiles are big, so the parallelism is inside each
convolution), one inter-op thread, sequential execution, no spinning. The CUDA provider is
taken when this onnxruntime build offers it, CPU otherwise (``device`` forces one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeedlError
from ..model_metadata import ModelMetadata
from ..raster_io import cpu_threads

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class LoadedModel:
    """An onnxruntime session with the facts the runner needs about its tensors."""

    path: Path
    session: Any
    metadata: ModelMetadata
    input_name: str
    output_name: str
    provider: str
    threads: int
    #: fixed batch size of the graph, or None when the batch axis is dynamic
    fixed_batch: int | None = None
    #: fixed (height, width) of the graph, or None when the spatial axes are dynamic
    fixed_size: tuple[int, int] | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    #: tile offsets must be multiples of this (product of the graph's pooling strides)
    alignment: int = 32

    @property
    def n_outputs(self) -> int:
        return 1 if self.metadata.model_type == "regression" else len(self.metadata.classes)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N x C x H x W float32) and return the first output as float32."""
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(out, dtype=np.float32)


def _inspect(path: Path) -> tuple[dict[str, int], int]:
    """The opsets a model file imports (domain -> version) and its pooling alignment, parsed
    without its external data.

    Alignment: the product of the strides of every pooling or strided convolution in the graph
    (2**depth for a U-Net or SegNet, 1 for the pixel CNN), capped at 64. Tile offsets that are
    multiples of it give the same result as a whole-image pass. Returns ({}, 32) when the
    ``onnx`` package is not installed (an inference-only setup).
    """
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is in requirements.txt
        return {}, 32
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise GeedlError(
            f"{path.name} is not a readable ONNX file ({type(exc).__name__}: {str(exc).strip()[:200]}); "
            "it may be truncated or damaged. Export or copy the model again."
        ) from exc
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    alignment = 1
    for node in model.graph.node:
        if node.op_type in ("MaxPool", "AveragePool", "Conv", "LpPool"):
            for attribute in node.attribute:
                if attribute.name == "strides" and attribute.ints:
                    alignment *= max(int(v) for v in attribute.ints)
    return opsets, max(1, min(64, alignment))


def max_runtime_opset() -> int:
    """The highest default-domain opset this onnxruntime loads, found by loading tiny probes.

    Only called to explain a failure, so the few milliseconds it costs do not matter.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    best = 0
    for version in range(7, 40):
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        model.ir_version = min(model.ir_version, onnx.IR_VERSION)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:
            break
        best = version
    return best


def choose_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``device`` (auto: CUDA when this build has it)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise GeedlError(f"Device {device!r} is not one of {', '.join(DEVICES)}.")
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise GeedlError(
                "The CUDA device was asked for, but this onnxruntime has no CUDA provider "
                f"(it offers {', '.join(available)}). Install onnxruntime-gpu or use --device cpu."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _dim(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None


def load_model(path: str | Path, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """Open ``path`` for inference; every problem with the file is a GeedlError raised here."""
    import onnxruntime as ort

    model_path = Path(path).expanduser()
    if not model_path.is_file():
        raise GeedlError(f"Model file {model_path} does not exist. Give the .onnx file written by training.")
    if model_path.stat().st_size == 0:
        raise GeedlError(f"Model file {model_path} is empty; export or copy the model again.")
    opsets, alignment = _inspect(model_path)

    options = ort.SessionOptions()
    n_threads = cpu_threads(threads)
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # without the arena, memory a batch used is returned after the run: about half the peak of a
    # U-Net batch on CPU, at a few percent of speed (the runner's memory must not depend on luck)
    options.enable_cpu_mem_arena = False
    # the reader and writer threads run beside onnxruntime; spinning workers would steal their CPU
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = choose_providers(device)
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        text = str(exc)
        if "opset" in text.lower() or "ValidateOpset" in text:
            runtime = max_runtime_opset()
            needed = ", ".join(f"{domain} {version}" for domain, version in sorted(opsets.items()))
            raise GeedlError(
                f"{model_path.name} needs opset {needed or '(unknown)'}, but onnxruntime {ort.__version__} "
                f"runs opsets up to {runtime}. Re-export the model with opset {min(17, runtime)} "
                "(python -m geedl_plugin train does) or update onnxruntime."
            ) from exc
        raise GeedlError(
            f"{model_path.name} cannot be loaded by onnxruntime {ort.__version__}: "
            f"{text.strip().splitlines()[0][:300]}. The file may be truncated or damaged; export it again."
        ) from exc

    props = dict(session.get_modelmeta().custom_metadata_map)
    metadata = ModelMetadata.from_props(props, source=model_path.name)

    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise GeedlError(f"{model_path.name} has {len(inputs)} inputs; geedl models take one image tensor.")
    shape = list(inputs[0].shape)
    if len(shape) != 4:
        raise GeedlError(
            f"{model_path.name} takes a {len(shape)}-D input {shape}; geedl models take "
            "N x channels x height x width."
        )
    channels = _dim(shape[1])
    if channels is not None and channels != metadata.n_inputs:
        raise GeedlError(
            f"{model_path.name} takes {channels} input channels but its metadata lists {metadata.n_inputs} "
            f"({len(metadata.bands)} bands x {metadata.time_steps} time steps); the metadata is wrong."
        )
    out_shape = list(outputs[0].shape)
    n_out = 1 if metadata.model_type == "regression" else len(metadata.classes)
    if len(out_shape) == 4 and _dim(out_shape[1]) is not None and _dim(out_shape[1]) != n_out:
        raise GeedlError(
            f"{model_path.name} outputs {out_shape[1]} channels but its metadata has {n_out} "
            f"{'output' if n_out == 1 else 'classes'}; the metadata is wrong."
        )
    height, width = _dim(shape[2]), _dim(shape[3])
    fixed_size = (height, width) if height is not None and width is not None else None
    provider = session.get_providers()[0]
    return LoadedModel(
        model_path,
        session,
        metadata,
        inputs[0].name,
        outputs[0].name,
        provider,
        n_threads,
        fixed_batch=_dim(shape[0]),
        fixed_size=fixed_size,
        opsets=opsets,
        alignment=alignment,
    )
