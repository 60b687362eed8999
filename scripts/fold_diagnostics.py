"""What the fold models of an accuracy study get wrong, without training again.

    .venv/bin/python scripts/fold_diagnostics.py --out study-output [--data FILE.npz] [--threads 2]

Reads the ``*.record.json`` files ``scripts/accuracy_study.py`` leaves beside each fold's model,
rebuilds each fold's held-out blocks, runs the fold's checkpoint on them and prints the pooled
held-out IoU per class (decided by arg-max):

- ``as trained``: must equal the study's own arg-max figure (a check that the folds were rebuilt
  as they were scored);
- ``half a pixel north`` (south, west, east): the predicted probabilities moved half a pixel
  (each pixel takes the mean of itself and its neighbour). A gain in one direction means the
  labels sit off the image that way, which a model trained on turned chips cannot learn: on the
  Brandenburg scene moving them north helped and south hurt (README, "How accurate is it");
- ``mirror pair`` and ``eight views``: probabilities averaged over the left-right mirror, or
  over all quarter turns and mirrors of the input (test-time augmentation).

``--data`` names the study's training data when the records point at a file that is elsewhere
here (a study run on a GPU machine from ``--save-data``'s npz).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from accuracy_study import _training_data  # noqa: E402

from geedl_plugin.core.training.metrics import confusion_matrix, scores  # noqa: E402

# (rows, columns) a prediction moves by half a pixel
SHIFTS = {"half a pixel north": (-1, 0), "half a pixel south": (1, 0), "half a pixel west": (0, -1),
          "half a pixel east": (0, 1)}
# test-time views: (quarter turns, mirrored left-right)
VIEWS = {
    "mirror pair": [(0, False), (0, True)],
    "eight views": [(k, m) for k in range(4) for m in (False, True)],
}


@dataclass(frozen=True)
class Fold:
    """One trained fold: where its checkpoint is and which blocks it held out."""

    record: Path
    checkpoint: Path
    image: str
    inward_buffer: float
    folds: int
    fold: int
    block_size: int
    seed: int
    argmax_matrix: np.ndarray


def study_folds(out: Path, data: str | None = None) -> list[Fold]:
    """The folds a study left in ``out``, each with the checkpoint beside its record (so a study
    folder copied from another machine still reads)."""
    found = []
    for path in sorted(out.glob("*.record.json")):
        saved = json.loads(path.read_text())
        job, settings = saved["job"], saved["job"]["settings"]
        checkpoint = path.with_name(Path(job["model_path"]).name).with_suffix(".ckpt")
        if not checkpoint.is_file():
            raise SystemExit(f"{path.name}: its checkpoint {checkpoint.name} is missing beside it.")
        found.append(Fold(path, checkpoint, data or job["image"], float(job["inward_buffer"]),
                          int(job["folds"]), int(job["fold"]), int(settings["block_size"]),
                          int(settings["seed"]), np.asarray(saved["record"]["argmax_matrix"])))
    if not found:
        raise SystemExit(f"No *.record.json in {out}: run scripts/accuracy_study.py --folds 2 or more there.")
    return found


def view_probabilities(model, image: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """Class probabilities (K x H x W) of the model on a turned / mirrored copy of ``image``,
    turned back onto the image's grid."""
    import torch

    from geedl_plugin.core.training.predict import predict_map

    view = np.rot90(image, turns, axes=(1, 2))
    if mirrored:
        view = view[:, :, ::-1]
    probs = predict_map(model, np.ascontiguousarray(view), transform=lambda x: torch.softmax(x, 1))
    if mirrored:
        probs = probs[:, :, ::-1]
    return np.rot90(probs, -turns, axes=(1, 2))


def held_out_scenes(fold: Fold, norm: dict) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(normalised image, label, held-out labelled pixels) of each scene, as the fold scored them;
    ``norm`` is the normalisation its checkpoint stores."""
    from geedl_plugin.core.model_metadata import IGNORE_INDEX
    from geedl_plugin.core.training.sampler import Normalization
    from geedl_plugin.core.training.split import block_folds

    data = _training_data(fold.image, fold.inward_buffer)
    split = block_folds(data.scenes, data.n_classes, fold.folds, fold.block_size, fold.seed)[fold.fold]
    normalization = Normalization(np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))
    for scene, held_out in zip(data.scenes, split.val_masks):
        needed = held_out & (scene.label != IGNORE_INDEX)
        if needed.any():
            yield normalization.apply(scene.image), scene.label, needed


def diagnose(folds: list[Fold]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and the pooled confusion matrix of every way of deciding (see the module text)."""
    from geedl_plugin.core.models import rebuild_model
    from geedl_plugin.core.training.checkpoint import load_checkpoint

    class_names = _training_data(folds[0].image, folds[0].inward_buffer).class_names
    n = len(class_names)
    pooled = {name: np.zeros((n, n), np.int64) for name in ["as trained", *SHIFTS, *VIEWS]}
    for fold in folds:
        state = load_checkpoint(fold.checkpoint)
        model = rebuild_model(state["model_spec"])
        model.load_state_dict(state["model_state"])
        model.eval()
        for image, label, needed in held_out_scenes(fold, state["normalization"]):
            rows, cols = np.nonzero(needed)
            truth = label[rows, cols].astype(np.int64)
            views = {view: view_probabilities(model, image, *view) for view in VIEWS["eight views"]}
            plain = views[(0, False)]
            pooled["as trained"] += confusion_matrix(truth, plain[:, rows, cols].argmax(0), n)
            for name, (dy, dx) in SHIFTS.items():
                # moving the prediction by (dy, dx) / 2: each pixel averages itself and the
                # neighbour on the opposite side (the scene's edge repeats itself)
                r2 = np.clip(rows - dy, 0, label.shape[0] - 1)
                c2 = np.clip(cols - dx, 0, label.shape[1] - 1)
                moved = 0.5 * (plain[:, rows, cols] + plain[:, r2, c2])
                pooled[name] += confusion_matrix(truth, moved.argmax(0), n)
            for name, chosen in VIEWS.items():
                mean = np.mean([views[v][:, rows, cols] for v in chosen], axis=0)
                pooled[name] += confusion_matrix(truth, mean.argmax(0), n)
        print(f"{fold.record.name.removesuffix('.record.json')}: done", flush=True)
    return class_names, pooled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the accuracy study's --out folder")
    parser.add_argument(
        "--data", help="the study's training data (npz or image), if not where the records say"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    folds = study_folds(Path(args.out), args.data)
    expected = sum(fold.argmax_matrix for fold in folds)
    class_names, pooled = diagnose(folds)
    if not np.array_equal(pooled["as trained"], expected):
        raise SystemExit(
            "The rebuilt folds do not score as the study scored them; is --data the study's data?"
        )
    print(f"{len(folds)} folds, held-out IoU by arg-max, pooled")
    print(f"{'':22s}" + "".join(f"{name:>9s}" for name in class_names))
    for name, matrix in pooled.items():
        per_class = scores(matrix, class_names)["per_class"]
        print(f"{name:22s}" + "".join(f"{per_class[c]['iou']:9.3f}" for c in class_names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
