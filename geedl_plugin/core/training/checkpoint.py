"""Training checkpoints: written atomically after every epoch, so a crash, a cancel or a kill at
any moment leaves the previous epoch's file intact and loadable.

One ``.ckpt`` file holds two sets of weights: ``model_state`` (the best epoch so far, or the
latest with ``keep="last"``: what is exported, fine-tuned, or used as a pretrained encoder) and
``last_state`` with the optimizer state (where ``--resume`` continues), plus everything needed to
rebuild the model and its inputs without the training data (model spec, classes, bands,
normalisation).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import GeedlError

CHECKPOINT_FORMAT = 1
MB = 1024 * 1024


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    state = dict(state)
    state["geedl_checkpoint"] = CHECKPOINT_FORMAT
    with atomic_path(path) as tmp:
        torch.save(state, str(tmp))
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GeedlError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise GeedlError(
            f"Cannot read the checkpoint {path.name} ({exc}); it is damaged or not a torch file."
        ) from exc
    if not isinstance(state, dict) or "geedl_checkpoint" not in state or "model_spec" not in state:
        raise GeedlError(
            f"{path.name} is not a geedl training checkpoint (written by 'python -m geedl_plugin train')."
        )
    if int(state["geedl_checkpoint"]) > CHECKPOINT_FORMAT:
        raise GeedlError(f"{path.name} was written by a newer geedl; update the plugin to use it.")
    return state


def checkpoint_for(model_or_checkpoint: str | Path) -> Path:
    """The checkpoint of a model: itself when a .ckpt/.pt is given, else ``<model>.ckpt`` beside it."""
    path = Path(model_or_checkpoint)
    if path.suffix.lower() in (".ckpt", ".pt", ".pth"):
        return path
    candidate = path.with_suffix(".ckpt")
    if candidate.is_file():
        return candidate
    raise GeedlError(
        f"Fine-tuning needs the training checkpoint written beside {path.name} ({candidate.name}), which is "
        "missing. Copy it next to the model or pass the .ckpt file itself."
    )


def estimated_sizes(n_parameters: int) -> tuple[int, int]:
    """(checkpoint bytes, ONNX bytes): best + last weights + Adam's two moments; weights once."""
    weights = 4 * int(n_parameters)
    return 4 * weights + MB, weights + MB


def check_free_space(paths: list[Path], n_parameters: int) -> None:
    """Refuse to start when the output folders cannot hold a checkpoint and the model (with the
    temporary copies atomic writing needs) so training never dies at the first save."""
    checkpoint_bytes, onnx_bytes = estimated_sizes(n_parameters)
    need = 2 * checkpoint_bytes + 2 * onnx_bytes + 16 * MB
    seen = set()
    for path in paths:
        folder = Path(path).expanduser().resolve().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder in seen:
            continue
        seen.add(folder)
        free = shutil.disk_usage(folder).free
        if free < need:
            raise GeedlError(
                f"Not enough disk space in {folder}: training needs about {need / MB:.0f} MB for the "
                f"checkpoint and the model, {free / MB:.0f} MB are free. Free some space or choose another "
                "output folder."
            )
