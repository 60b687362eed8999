"""What an ONNX model file says about itself, so inference needs nothing else.

Training writes these fields into the ONNX ``metadata_props`` (one key per field, values JSON
encoded); the inference runner, the dock's Predict form and the Earth Engine compiler read them
back. Keys are plain so that other tools (Netron, onnxruntime's ``custom_metadata_map``) show
them readably. The format is versioned by ``geedl_format``.

Input convention of every exported model: float32, ``NCHW`` for image models (``N x bands x H x
W``), ``N x (time_steps * bands) x H x W`` for temporal models (time-major: all bands of step 0,
then step 1, ...). Normalisation ``(x - norm_mean) / norm_std`` per input channel is applied by
the runner, not baked into the graph, so the same numbers can be shown in the Predict form.
Output: ``N x classes x H x W`` logits (``segmentation``/``temporal``) or ``N x 1 x H x W`` values
(``regression``, to be multiplied by ``output_scale`` and added to ``output_offset``).
A class map takes the arg-max of the softmax, except that a class named in ``class_thresholds``
(class name -> probability, chosen on the training pixels) is called wherever its probability
reaches its threshold (:mod:`.class_decision`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import GeedlError

FORMAT_VERSION = 1
MODEL_TYPES = ("segmentation", "temporal", "regression")
IGNORE_INDEX = 255

DEFAULT_COLORS = (
    "#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928",
    "#a6cee3", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99",
)


@dataclass
class ModelClass:
    id: int
    name: str
    color: str


@dataclass
class ModelMetadata:
    """Everything inference must know; see the module docstring for the tensor layout."""

    model_type: str
    architecture: str
    bands: list[str]
    norm_mean: list[float]
    norm_std: list[float]
    classes: list[ModelClass] = field(default_factory=list)
    tile_size: int = 256
    tile_overlap: int = 32
    resolution: float = 10.0
    time_steps: int = 1
    receptive_field: int = 0
    recipe: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    class_thresholds: dict[str, float] = field(default_factory=dict)
    output_scale: float = 1.0
    output_offset: float = 0.0
    ignore_index: int = IGNORE_INDEX
    plugin_version: str = ""
    geedl_format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.classes = [c if isinstance(c, ModelClass) else ModelClass(**c) for c in self.classes]
        self.validate()

    def validate(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise GeedlError(f"model_type {self.model_type!r} is not one of {MODEL_TYPES}")
        n_inputs = len(self.bands) * max(1, int(self.time_steps))
        if len(self.norm_mean) != n_inputs or len(self.norm_std) != n_inputs:
            raise GeedlError(
                f"Model metadata has {len(self.norm_mean)} means / {len(self.norm_std)} stds for "
                f"{n_inputs} inputs ({len(self.bands)} bands x {self.time_steps} time steps)")
        if self.model_type != "regression" and len(self.classes) < 2:
            raise GeedlError("A classification model needs at least two classes in its metadata")
        unknown = [name for name in self.class_thresholds if name not in self.class_names]
        if unknown:
            raise GeedlError(
                f"Model metadata has a class threshold for {', '.join(unknown)}, which is not one of "
                f"its classes ({', '.join(self.class_names)})")
        for name, value in self.class_thresholds.items():
            if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
                raise GeedlError(f"The class threshold of {name} must be a probability between 0 and 1, "
                                 f"not {value!r}")

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def n_inputs(self) -> int:
        return len(self.bands) * max(1, int(self.time_steps))

    def to_props(self) -> dict[str, str]:
        data = asdict(self)
        return {key: json.dumps(value) for key, value in data.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "the model") -> ModelMetadata:
        required = ["model_type", "architecture", "bands", "norm_mean", "norm_std"]
        missing = [key for key in required if key not in props]
        if missing:
            raise GeedlError(
                f"{source} lacks geedl metadata keys: {', '.join(missing)}. Export it with "
                "'python -m geedl_plugin train' or add these metadata_props to the ONNX file.")
        known = {f.name for f in fields(cls)}
        data: dict[str, Any] = {}
        for key, raw in props.items():
            if key not in known:
                continue
            try:
                data[key] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise GeedlError(f"{source}: metadata key {key!r} is not valid JSON ({exc})") from exc
        return cls(**data)


def default_classes(names: list[str]) -> list[ModelClass]:
    return [ModelClass(i, name, DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i, name in enumerate(names)]


def write_metadata(onnx_path: str | Path, metadata: ModelMetadata) -> None:
    """Store metadata in an ONNX file in place (needs the ``onnx`` package; training has it)."""
    import onnx

    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value
    onnx.save(model, str(onnx_path))


def read_metadata(onnx_path: str | Path) -> ModelMetadata:
    """Read metadata with onnxruntime alone (what an inference-only install has)."""
    path = Path(onnx_path)
    if not path.is_file():
        raise GeedlError(f"Model file {path} does not exist.")
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise GeedlError(
            f"{path.name} is not a model onnxruntime {ort.__version__} can load: {exc}. "
            "The file may be truncated or need a newer opset; re-export it.") from exc
    props = dict(session.get_modelmeta().custom_metadata_map)
    return ModelMetadata.from_props(props, source=path.name)
