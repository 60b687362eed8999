"""The training run: from checked data to a verified ONNX model, metrics and a picture.

Order of work (every check before the first step): outputs writable and enough disk space ->
split into spatial blocks -> normalisation from training pixels -> model (pretrained encoder,
fine-tune start or resume state) -> epochs of class-balanced, augmented chips with a weighted
loss -> validation on held-out blocks after each epoch -> atomic checkpoint -> early stopping
-> the kept epoch's weights (best on the validation blocks, or the last) exported to ONNX
(checked against torch) with metadata -> metrics JSON and comparison PNG.

Progress goes two ways: ``feedback.progress`` (percent and a message, for Processing and the
text CLI) and ``on_record`` (structured dicts: epoch, step, loss, validation metrics, ETA, for
the JSON-lines CLI a QgsTask reads). Cancellation is checked between steps; a cancel raises
:class:`CancelledError` and leaves the last complete epoch's checkpoint as it was.

Fast retrain (``head_only``): the backbone of an existing model is frozen, its features at the
corrected pixels are computed once, and only the per-pixel head is fitted on them, which takes
seconds on a CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import check_writable
from ..class_decision import ThresholdChoice, decide, threshold_vector, tune_threshold
from ..errors import GeedlError
from ..model_metadata import DEFAULT_COLORS, IGNORE_INDEX, ModelClass, ModelMetadata
from ..models import GeedlModel, build_model, load_pretrained_encoder, model_spec, rebuild_model
from ..progress import Feedback, silent
from ..version import plugin_version_if_known
from .checkpoint import check_free_space, checkpoint_for, load_checkpoint, save_checkpoint
from .data import TrainingData
from .export import export_onnx
from .loop import (
    LoopPlan,
    Progress,
    Record,
    Validation,
    backup_previous,
    checkpoint_payload,
    run_epochs,
    state_cpu,
)
from .losses import SegmentationLoss
from .metrics import compact, confusion_matrix, label_edges, scores
from .predict import iter_tiles, predict_map
from .report import write_comparison_png, write_metrics_json
from .sampler import ChipSampler, Normalization, class_weights, compute_normalization
from .settings import AUTO_BALANCE_SHARE, TrainSettings
from .split import BlockSplit, block_split, no_split, preset_split


@dataclass
class TrainOutputs:
    model: Path
    checkpoint: Path
    metrics: Path
    comparison: Path

    @classmethod
    def beside(cls, model: str | Path, checkpoint: str | Path | None = None) -> TrainOutputs:
        model = Path(model)
        if model.suffix.lower() != ".onnx":
            raise GeedlError(f"The model output {model.name} should end in .onnx.")
        return cls(
            model,
            Path(checkpoint) if checkpoint else model.with_suffix(".ckpt"),
            model.with_suffix(".metrics.json"),
            model.with_suffix(".comparison.png"),
        )


@dataclass
class TrainResult:
    outputs: TrainOutputs
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    train_seconds: float
    samples_per_second: float
    export: dict[str, Any] = field(default_factory=dict)
    #: class name -> tuned probability threshold the model carries (empty: arg-max)
    class_thresholds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the CLI prints as its ``result`` line."""
        return {
            "model": str(self.outputs.model),
            "checkpoint": str(self.outputs.checkpoint),
            "metrics_json": str(self.outputs.metrics),
            "comparison_png": str(self.outputs.comparison),
            "metrics": compact(self.metrics) if self.metrics else {},
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.train_seconds, 2),
            "samples_per_second": round(self.samples_per_second, 1),
            "onnx_max_abs_diff": self.export.get("max_abs_diff"),
        }


def resolve_device(name: str) -> str:
    """``auto``: CUDA when torch has a GPU, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise GeedlError("--device cuda was asked for but this torch has no CUDA GPU; use --device cpu.")
    if name not in ("cpu", "cuda"):
        raise GeedlError(f"Unknown device {name!r}; use auto, cpu or cuda.")
    return name


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities of ``N x K x H x W`` logits (what the class decision reads)."""
    return torch.softmax(logits, dim=1)


def evaluate(
    model: GeedlModel,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    masks: list[np.ndarray],
    class_names: list[str],
    tile: int,
    device: str,
    loss_weights: np.ndarray | None = None,
    thresholds: list[float | None] | None = None,
) -> dict[str, Any]:
    """Scores and loss of ``model`` on the labelled pixels inside ``masks``, plus the scores away
    from label edges (``away_from_edges``: see :func:`label_edges`). Classes are decided as the
    exported model's class maps decide them (``thresholds``: :func:`decide`); with a threshold the
    arg-max scores are kept beside them (``argmax``) to show what it changed."""
    n = len(class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    plain = np.zeros((n, n), dtype=np.int64)  # arg-max alone, when thresholds change the decision
    inner = np.zeros((n, n), dtype=np.int64)  # the same pixels less the 1 px band at label edges
    loss_sum, loss_den = 0.0, 0.0
    weights = loss_weights if loss_weights is not None else np.ones(n, dtype=np.float32)
    for image, label, mask in zip(images, labels, masks):
        needed = mask & (label != IGNORE_INDEX)
        if not needed.any():
            continue
        logits = predict_map(model, image, tile=tile, needed=needed, device=device)
        rows, cols = np.nonzero(needed)
        picked = logits[:, rows, cols].T  # P x K
        truth = label[rows, cols].astype(np.int64)
        shifted = picked - picked.max(axis=1, keepdims=True)
        log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        predicted = decide(np.exp(log_prob).T, thresholds)
        matrix += confusion_matrix(truth, predicted, n)
        if thresholds and any(t is not None for t in thresholds):
            plain += confusion_matrix(truth, np.argmax(picked, axis=1), n)
        away = ~label_edges(label)[rows, cols]
        inner += confusion_matrix(truth[away], predicted[away], n)
        w = weights[truth]
        loss_sum += float(-(w * log_prob[np.arange(truth.size), truth]).sum())
        loss_den += float(w.sum())
    result = scores(matrix, class_names)
    result["loss"] = loss_sum / loss_den if loss_den else None
    away = scores(inner, class_names)
    result["away_from_edges"] = {
        "pixels": away["pixels"],
        "iou": {k: v["iou"] for k, v in away["per_class"].items()},
        "f1": {k: v["f1"] for k, v in away["per_class"].items()},
        "confusion_matrix": away["confusion_matrix"],
    }
    if plain.any():
        argmax = scores(plain, class_names)
        result["argmax"] = {
            "iou": {k: v["iou"] for k, v in argmax["per_class"].items()},
            "f1": {k: v["f1"] for k, v in argmax["per_class"].items()},
            "confusion_matrix": argmax["confusion_matrix"],
        }
    return result


@torch.no_grad()
def collect_features(
    model: GeedlModel, image: np.ndarray, pixels: np.ndarray, tile: int, device: str
) -> np.ndarray:
    """Backbone features (P x F) at the pixels where ``pixels`` is True, tile by tile."""
    model.eval()
    margin = model.margin
    found = []
    for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in iter_tiles(*image.shape[1:], tile, model.tile_overlap):
        core = pixels[y0:y1, x0:x1]
        if not core.any():
            continue
        window = torch.from_numpy(np.ascontiguousarray(image[:, ry0:ry1, rx0:rx1]))[None].to(device)
        if margin:
            window = F.pad(window, (margin,) * 4, mode="reflect")
        feats = model.features(window)[0]
        rr, cc = np.nonzero(core)
        found.append(feats[:, rr + (y0 - ry0), cc + (x0 - rx0)].T.float().cpu().numpy())
    return np.concatenate(found) if found else np.zeros((0, 0), dtype=np.float32)


class _Classification:
    """The loop's objective for class labels: balanced chips, weighted cross-entropy with the
    ignore index, mean IoU on the validation blocks."""

    min_delta = 1e-4
    nan_advice = "lower --lr or check the image for extreme values."

    def __init__(self, trainer: Trainer, model: GeedlModel, context: dict[str, Any]) -> None:
        self.trainer = trainer
        self.model = model
        self.context = context
        self.loss_fn = SegmentationLoss(context["weights"], trainer.device, trainer.settings.effective_loss)
        self.val_masks = context["split"].val_masks
        self.has_val = any(m.any() for m in self.val_masks)

    def sampler(self, epoch: int) -> ChipSampler:
        return self.trainer._sampler(self.model, self.context, epoch)

    def loss(self, model: torch.nn.Module, batch: tuple[np.ndarray, ...]) -> torch.Tensor | None:
        device = self.trainer.device
        x, y = torch.from_numpy(batch[0]).to(device), torch.from_numpy(batch[1]).to(device)
        loss = self.loss_fn(model(x), y)
        if not torch.isfinite(loss) and bool((y == IGNORE_INDEX).all()):
            return None  # a chip with no labelled pixel: nothing to learn, not an error
        return loss

    def validate(self, model: GeedlModel) -> Validation | None:
        if not self.has_val:
            return None
        t = self.trainer
        metrics = evaluate(
            model,
            self.context["images"],
            self.context["labels"],
            self.val_masks,
            t.data.class_names,
            t.settings.tile_size,
            t.device,
            self.context["weights"],
        )
        entry = {"val_loss": metrics["loss"], "val": compact(metrics)}
        if metrics["mean_iou"] is None:
            return Validation(-metrics["loss"], metrics, entry, "")
        per_class = ", ".join(
            f"{name} {v['iou']:.2f}" for name, v in metrics["per_class"].items() if v["iou"] is not None
        )
        return Validation(
            metrics["mean_iou"], metrics, entry, f"val mIoU {metrics['mean_iou']:.3f} ({per_class})"
        )

    def checkpoint_extras(self) -> dict[str, Any]:
        return self.trainer._checkpoint_extras(self.context)


class Trainer:
    """One training (or fine-tuning) run over :class:`TrainingData`."""

    def __init__(
        self,
        data: TrainingData,
        settings: TrainSettings,
        outputs: TrainOutputs,
        feedback: Feedback | None = None,
        on_record: Record | None = None,
    ) -> None:
        self.data = data
        self.settings = settings
        self.outputs = outputs
        self.feedback = feedback or silent()
        self.on_record = on_record
        self.device = resolve_device(settings.device)
        self.start_state: dict[str, Any] | None = None  # checkpoint we start from (resume/fine-tune)

    # -- preparation ---------------------------------------------------------------------------
    def _prepare_outputs(self) -> None:
        for path in (
            self.outputs.model,
            self.outputs.checkpoint,
            self.outputs.metrics,
            self.outputs.comparison,
        ):
            check_writable(path)

    def _balance(self, counts: np.ndarray) -> str:
        """The balancing actually used ("auto" resolved from the class shares)."""
        if self.settings.balance != "auto":
            return self.settings.balance
        present = counts[counts > 0]
        rare = float(present.min() / present.sum()) if present.size else 1.0
        chosen = "weights" if rare < AUTO_BALANCE_SHARE else "none"
        self.feedback.info(f"Class balancing: {chosen} (rarest class {rare:.1%} of the training labels)")
        return chosen

    def _align_classes(self, state: dict[str, Any]) -> None:
        """Fine-tuning keeps the model's classes and bands: map the new labels onto them."""
        model_classes = list(state["class_names"])
        unknown = [
            c for c, n in zip(self.data.class_names, self.data.class_counts()) if n and c not in model_classes
        ]
        if unknown:
            raise GeedlError(
                f"The corrected labels use class(es) {', '.join(unknown)} that the model does not have "
                f"({', '.join(model_classes)}). Train a new model to add classes."
            )
        lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for i, name in enumerate(self.data.class_names):
            if name in model_classes:
                lookup[i] = model_classes.index(name)
        for scene in self.data.scenes:
            scene.label = lookup[scene.label]
            if scene.train_label is not None:
                scene.train_label = lookup[scene.train_label]
        self.data.class_names = model_classes
        self.data.class_colors = state.get("class_colors")
        self.data.class_ids = state.get("class_ids")
        if (
            list(state["bands"]) != list(self.data.band_names)
            or int(state["time_steps"]) != self.data.time_steps
        ):
            raise GeedlError(
                f"The model was trained on bands {', '.join(state['bands'])} x {state['time_steps']} "
                "step(s); "
                f"this image has {', '.join(self.data.band_names)} x {self.data.time_steps}. Use a composite "
                "built with the model's recipe."
            )

    def _load_start(self) -> None:
        s = self.settings
        if s.resume is not None:
            self.start_state = load_checkpoint(s.resume)
            saved = self.start_state
            if saved.get("model_type") == "regression":
                raise GeedlError(
                    f"The checkpoint {s.resume.name} is from a regression run; resume it with 'regress' "
                    "(or start a new classification training)."
                )
            if saved["model_spec"]["name"] != s.model:
                raise GeedlError(
                    f"The checkpoint {s.resume.name} is a {saved['model_spec']['name']} model, not "
                    f"{s.model}; resume with --model {saved['model_spec']['name']}."
                )
            if list(saved["class_names"]) != list(self.data.class_names):
                raise GeedlError(
                    f"The checkpoint {s.resume.name} has classes {', '.join(saved['class_names'])}, "
                    f"the labels now give {', '.join(self.data.class_names)}; resume needs the same "
                    "classes (or start a new training)."
                )
            if (
                list(saved["bands"]) != list(self.data.band_names)
                or saved["time_steps"] != self.data.time_steps
            ):
                raise GeedlError(
                    f"The checkpoint {s.resume.name} was trained on other bands "
                    f"({', '.join(saved['bands'])}); resume with the same image."
                )
        elif s.finetune_from is not None:
            self.start_state = load_checkpoint(checkpoint_for(s.finetune_from))
            if self.start_state["model_spec"]["name"] != s.model:
                s.model = self.start_state["model_spec"]["name"]
            self._align_classes(self.start_state)

    def _split(self) -> BlockSplit:
        s = self.settings
        if s.val_split == "none":
            return no_split(self.data.scenes)
        if self.data.validation is not None:  # one fold of a cross-validation
            return self.data.validation
        if self.data.preset_val is not None:  # a chips manifest that already chose its blocks
            self.feedback.info("Validation chips: the spatial-block split recorded in the chips manifest")
            return preset_split(self.data.scenes, self.data.preset_val)
        try:
            return block_split(
                self.data.scenes,
                self.data.n_classes,
                block_size=s.block_size,
                val_fraction=s.val_fraction,
                seed=s.seed,
            )
        except GeedlError as exc:
            if s.finetune_from is None:
                raise
            # a few corrected polygons rarely fill two blocks: fine-tune on all of them
            self.feedback.info(f"{exc} Fine-tuning on all corrected pixels without a validation split.")
            return no_split(self.data.scenes)

    def _normalization(self, train_masks: list[np.ndarray]) -> Normalization:
        if self.start_state is not None:
            norm = self.start_state["normalization"]
            return Normalization(np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))
        return compute_normalization(
            self.data.scenes, train_masks, self.data.time_steps, seed=self.settings.seed
        )

    def _model(self) -> GeedlModel:
        s = self.settings
        if self.start_state is not None:
            model = rebuild_model(self.start_state["model_spec"])
            key = "last_state" if s.resume is not None else "model_state"
            model.load_state_dict(self.start_state[key])
        else:
            options = s.effective_model_options()
            if s.model == "temporal":
                options.setdefault("time_steps", self.data.time_steps)
                if int(options["time_steps"]) != self.data.time_steps:
                    raise GeedlError(
                        f"--time-steps {options['time_steps']} does not match the image's "
                        f"{self.data.time_steps} time steps."
                    )
            elif self.data.time_steps > 1:
                self.feedback.info(
                    f"The image stacks {self.data.time_steps} dates; the {s.model} model sees them as "
                    f"{self.data.n_inputs} independent bands (use --model temporal for time series)."
                )
            model = build_model(s.model, self.data.n_inputs, self.data.n_classes, **options)
            if s.pretrained_encoder is not None:
                load_pretrained_encoder(
                    model,
                    s.pretrained_encoder,
                    freeze=s.freeze_encoder,
                    band_names=list(self.data.band_names),
                )
                self.feedback.info(
                    f"Loaded the pretrained encoder from {s.pretrained_encoder.name}"
                    + (" (frozen)" if s.freeze_encoder else "")
                )
        if s.head_only:
            model.freeze_backbone()
        return model

    def _ids(self) -> list[int]:
        """Label id of each output channel (what the prediction raster writes)."""
        ids = self.data.class_ids
        if ids and len(ids) == self.data.n_classes:
            return [int(i) for i in ids]
        return list(range(self.data.n_classes))

    def _colors(self) -> list[str]:
        colors = self.data.class_colors or []
        return [
            colors[i] if i < len(colors) and colors[i] else DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
            for i in range(self.data.n_classes)
        ]

    def _tuned_class(self) -> str | None:
        """The class whose threshold is tuned: the setting, or when fine-tuning or resuming a model
        that had one, the same class again."""
        if self.settings.tune_threshold:
            return self.settings.tune_threshold
        if self.start_state is not None:
            return (self.start_state.get("settings") or {}).get("tune_threshold") or None
        return None

    def _check_tuned_class(self) -> None:
        name = self._tuned_class()
        if name is not None and name not in self.data.class_names:
            raise GeedlError(
                f"--tune-threshold names class {name!r}, which the labels do not have; choose one of "
                f"{', '.join(self.data.class_names)}."
            )

    def _tune_threshold(self, model: GeedlModel, context: dict[str, Any]) -> ThresholdChoice | None:
        """Choose the tuned class's threshold on the labelled training pixels (never the validation
        blocks, whose scores must stay held out)."""
        name = self._tuned_class()
        if name is None:
            return None
        self.feedback.progress(88.0, f"choosing the {name} threshold on the training pixels")
        probabilities, truth = [], []
        for image, label, mask in zip(context["images"], context["labels"], context["train_masks"]):
            self.feedback.check_cancelled()
            needed = mask & (label != IGNORE_INDEX)
            if not needed.any():
                continue
            probs = predict_map(
                model,
                image,
                tile=self.settings.tile_size,
                needed=needed,
                device=self.device,
                transform=_softmax,
            )
            probabilities.append(probs[:, needed])
            truth.append(label[needed])
        if not truth:
            return None
        choice = tune_threshold(
            np.concatenate(probabilities, axis=1),
            np.concatenate(truth),
            self.data.class_names.index(name),
            name,
        )
        self.feedback.info(choice.message())
        return choice

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        s = self.settings
        if s.threads:
            torch.set_num_threads(int(s.threads))
        self._prepare_outputs()
        self._load_start()
        self.data.check()
        self._check_tuned_class()
        split = self._split()
        train_masks = split.train_masks()
        if s.val_split == "blocks":
            self.feedback.info(
                f"Spatial split: {len(split.val_blocks)} of {split.n_blocks} labelled "
                f"{split.block_size} px blocks held out for validation"
            )
        norm = self._normalization(train_masks)
        torch.manual_seed(s.seed)
        model = self._model().to(self.device)
        n_params = sum(p.numel() for p in model.parameters())
        check_free_space([self.outputs.checkpoint, self.outputs.model], n_params)
        backup_previous(
            self.outputs.model, self.outputs.checkpoint, s.resume, self.feedback
        )
        images = [norm.apply(scene.image) for scene in self.data.scenes]
        labels = [scene.label for scene in self.data.scenes]
        train_labels = [scene.training_label for scene in self.data.scenes]
        counts = np.zeros(self.data.n_classes, dtype=np.int64)
        for label, mask in zip(train_labels, train_masks):
            values = label[mask & (label != IGNORE_INDEX)]
            counts += np.bincount(values, minlength=self.data.n_classes)[: self.data.n_classes]
        if int((counts > 0).sum()) < 2:
            raise GeedlError(
                "After holding out validation blocks, fewer than two classes are left for training. "
                "Label more areas, use a smaller --block-size or --val-split none."
            )
        balance = self._balance(counts)
        weights = class_weights(counts) if balance in ("weights", "both") else None
        context = {
            "split": split,
            "train_masks": train_masks,
            "norm": norm,
            "images": images,
            "labels": labels,
            "train_labels": train_labels,
            "weights": weights,
            "counts": counts,
            "n_params": n_params,
            "balance": balance,
        }
        if s.head_only:
            return self._run_head_only(model, context)
        return self._run_epochs(model, context)

    def _sampler(self, model: GeedlModel, context: dict[str, Any], epoch: int) -> ChipSampler:
        s = self.settings
        chip = s.effective_chip
        return ChipSampler(
            context["images"],
            context["train_labels"],
            context["train_masks"],
            self.data.n_classes,
            chip=chip,
            margin=model.margin,
            balance=context["balance"] in ("sampling", "both"),
            augment=s.augment,
            seed=s.seed * 1000 + epoch,
        )

    def _steps_per_epoch(self, sampler: ChipSampler) -> int:
        s = self.settings
        if s.samples_per_epoch:
            samples = int(s.samples_per_epoch)
        else:
            # every labelled training pixel about twice per epoch, and 32 to 200 optimiser steps:
            # fewer made the U-Net's epochs too short to learn between two validations
            out_side = max(1, sampler.chip - 2 * sampler.margin)
            samples = int(
                np.clip(
                    2 * sampler.training_pixels / out_side**2, 32 * s.effective_batch, 200 * s.effective_batch
                )
            )
        return max(1, math.ceil(samples / s.effective_batch))

    def _checkpoint_extras(self, context: dict[str, Any]) -> dict[str, Any]:
        mean, std = context["norm"].as_lists()
        return {
            "class_names": list(self.data.class_names),
            "class_colors": self._colors(),
            "class_ids": self._ids(),
            "bands": list(self.data.band_names),
            "time_steps": int(self.data.time_steps),
            "resolution": float(self.data.resolution),
            "recipe": self.data.recipe,
            "normalization": {"mean": mean, "std": std},
            "settings": self.settings.to_dict(),
            "split": context["split"].summary(),
            "source": self.data.source,
        }

    def _run_epochs(self, model: GeedlModel, context: dict[str, Any]) -> TrainResult:
        s = self.settings
        optimizer = torch.optim.AdamW(
            model.trainable_parameters(), lr=s.learning_rate, weight_decay=s.weight_decay
        )
        resuming = s.resume is not None and self.start_state is not None
        if resuming:
            self.feedback.info(f"Resuming from {s.resume.name} after epoch {self.start_state['epoch']}")
        objective = _Classification(self, model, context)
        probe = objective.sampler(0)
        steps = self._steps_per_epoch(probe)
        plan = LoopPlan(
            epochs=s.epochs,
            steps=steps,
            batch_size=s.effective_batch,
            learning_rate=s.learning_rate,
            patience=s.patience,
            seed=s.seed,
            schedule=s.schedule,
            ema_decay=s.ema_decay,
            progress_interval_s=s.progress_interval_s,
            keep=s.keep,
            describe=f"{s.model}: {context['n_params']:,} parameters, {steps} steps of {s.effective_batch} "
            f"{probe.chip} px chips per epoch, device {self.device}",
        )
        loop = run_epochs(
            model,
            optimizer,
            objective,
            plan,
            self.outputs.checkpoint,
            self.device,
            self.feedback,
            self.on_record,
            self.start_state if resuming else None,
        )
        return self._finish(
            model,
            context,
            loop.history,
            loop.best,
            loop.epochs_run,
            loop.stopped_early,
            loop.train_seconds,
            loop.samples_per_second,
        )

    def _run_head_only(self, model: GeedlModel, context: dict[str, Any]) -> TrainResult:
        """Fit only the head on backbone features of the (corrected) labelled training pixels."""
        s = self.settings
        device = self.device
        started = time.monotonic()
        features, targets = [], []
        for image, label, mask in zip(context["images"], context["train_labels"], context["train_masks"]):
            self.feedback.check_cancelled()
            pixels = mask & (label != IGNORE_INDEX)
            if pixels.any():
                features.append(collect_features(model, image, pixels, s.tile_size, device))
                targets.append(label[pixels].astype(np.int64))
        x_all = torch.from_numpy(np.concatenate(features))[:, :, None, None].to(device)
        y_all = torch.from_numpy(np.concatenate(targets))[:, None, None].to(device)
        head_params = [p for m in model.head_modules() for p in m.parameters()]
        optimizer = torch.optim.AdamW(head_params, lr=s.learning_rate, weight_decay=s.weight_decay)
        loss_fn = SegmentationLoss(context["weights"], device, s.effective_loss)
        batch = 4096
        steps_per_epoch = max(1, math.ceil(len(x_all) / batch))
        total = max(1, s.epochs * steps_per_epoch)
        progress = Progress(self.feedback, self.on_record, total, s.progress_interval_s)
        generator = torch.Generator().manual_seed(s.seed)
        history: list[dict[str, Any]] = []
        for head_module in model.head_modules():
            head_module.train()
        for epoch in range(1, s.epochs + 1):
            order = torch.randperm(len(x_all), generator=generator).to(device)
            running = 0.0
            for step in range(steps_per_epoch):
                self.feedback.check_cancelled()
                index = order[step * batch : (step + 1) * batch]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model.head(x_all[index]), y_all[index])
                loss.backward()
                optimizer.step()
                running += float(loss.item())
                progress.emit(
                    {
                        "phase": "train",
                        "epoch": epoch,
                        "epochs": s.epochs,
                        "step": (epoch - 1) * steps_per_epoch + step + 1,
                        "steps": total,
                        "loss": round(running / (step + 1), 5),
                        "message": f"head epoch {epoch}/{s.epochs} loss {running / (step + 1):.4f}",
                    }
                )
            history.append({"epoch": epoch, "train_loss": running / steps_per_epoch})
        train_time = time.monotonic() - started
        self.feedback.info(f"Head retrained on {len(x_all):,} corrected pixels in {train_time:.1f} s")
        best = {"score": 0.0, "epoch": s.epochs, "state": state_cpu(model), "metrics": None}
        optimizer_full = torch.optim.AdamW(head_params, lr=s.learning_rate)
        save_checkpoint(
            self.outputs.checkpoint,
            checkpoint_payload(
                model, optimizer_full, s.epochs, best, history, False, self._checkpoint_extras(context)
            ),
        )
        rate = len(x_all) * s.epochs / train_time if train_time > 0 else 0.0
        return self._finish(model, context, history, best, s.epochs, False, train_time, rate)

    # -- results ---------------------------------------------------------------------------------
    def _finish(
        self,
        model: GeedlModel,
        context: dict[str, Any],
        history: list[dict[str, Any]],
        best: dict[str, Any],
        epochs_run: int,
        stopped: bool,
        train_time: float,
        rate: float,
    ) -> TrainResult:
        s = self.settings
        choice = self._tune_threshold(model, context)
        tuned = choice.thresholds() if choice else {}
        thresholds = threshold_vector(self.data.class_names, tuned)
        self.feedback.progress(90.0, f"validating the weights of epoch {best['epoch']}")
        val_masks = context["split"].val_masks
        has_val = any(m.any() for m in val_masks)
        scored_on = "validation blocks" if has_val else "training pixels (no validation split)"
        masks = val_masks if has_val else context["train_masks"]
        metrics = evaluate(
            model,
            context["images"],
            context["labels"],
            masks,
            self.data.class_names,
            s.tile_size,
            self.device,
            context["weights"],
            thresholds,
        )
        metrics["scored_on"] = scored_on
        if choice is not None:
            metrics["threshold_choice"] = asdict(choice)
        self.feedback.check_cancelled()
        self.feedback.progress(93.0, "exporting ONNX")
        mean, std = context["norm"].as_lists()
        colors = self._colors()
        model_cpu = model.to("cpu").eval()
        metadata = ModelMetadata(
            model_type=model.model_type,
            architecture=model.name,
            bands=list(self.data.band_names),
            norm_mean=mean,
            norm_std=std,
            classes=[ModelClass(self._ids()[i], n, colors[i]) for i, n in enumerate(self.data.class_names)],
            tile_size=int(s.tile_size),
            tile_overlap=int(model.tile_overlap),
            resolution=float(self.data.resolution),
            time_steps=int(self.data.time_steps),
            receptive_field=int(model.receptive_field),
            recipe=self.data.recipe,
            class_thresholds=tuned,
            metrics={
                **compact(metrics),
                "scored_on": scored_on,
                "best_epoch": best["epoch"],
                "epochs_run": epochs_run,
            },
            plugin_version=plugin_version_if_known(),
        )
        sample = self._export_sample(context)
        export = export_onnx(model_cpu, self.outputs.model, metadata, sample)
        self.feedback.progress(96.0, "writing metrics and comparison image")
        scene_index = self._comparison_scene(val_masks)
        scene = self.data.scenes[scene_index]
        predicted = decide(
            predict_map(
                model_cpu,
                context["images"][scene_index],
                tile=s.tile_size,
                transform=_softmax,
            ),
            thresholds,
        )
        write_comparison_png(
            self.outputs.comparison,
            scene.image,
            self.data.band_names,
            scene.label,
            predicted.astype(np.uint8),
            self.data.class_names,
            colors,
            val_mask=val_masks[scene_index] if has_val else None,
        )
        payload = {
            "model": str(self.outputs.model),
            "architecture": model.name,
            "model_spec": model_spec(model),
            "classes": self.data.class_names,
            "bands": self.data.band_names,
            "time_steps": self.data.time_steps,
            "validation": metrics,
            "class_thresholds": tuned,
            "history": history,
            "best_epoch": best["epoch"],
            "epochs_run": epochs_run,
            "stopped_early": stopped,
            "train_seconds": round(train_time, 3),
            "samples_per_second": round(rate, 2),
            "training_pixels_per_class": dict(
                zip(self.data.class_names, [int(c) for c in context["counts"]])
            ),
            "split": context["split"].summary(),
            "balance": context["balance"],
            "settings": s.to_dict(),
            "export": export,
            "source": self.data.source,
            "plugin_version": metadata.plugin_version,
        }
        write_metrics_json(self.outputs.metrics, payload)
        self.feedback.progress(100.0, "done")
        return TrainResult(
            self.outputs, metrics, history, epochs_run, best["epoch"], stopped, train_time, rate, export,
            class_thresholds=tuned,
        )

    def _export_sample(self, context: dict[str, Any]) -> np.ndarray:
        """A real normalised crop for the ONNX check: the labelled part of the first scene."""
        image = context["images"][0]
        label = context["labels"][0]
        rows, cols = np.nonzero(label != IGNORE_INDEX)
        top = int(np.clip(rows.min() if rows.size else 0, 0, max(0, image.shape[1] - 80)))
        left = int(np.clip(cols.min() if cols.size else 0, 0, max(0, image.shape[2] - 80)))
        return np.ascontiguousarray(image[:, top : top + 80, left : left + 80])

    def _comparison_scene(self, val_masks: list[np.ndarray]) -> int:
        sizes = [int((m & (s.label != IGNORE_INDEX)).sum()) for m, s in zip(val_masks, self.data.scenes)]
        if max(sizes, default=0) == 0:
            sizes = [int((s.label != IGNORE_INDEX).sum()) for s in self.data.scenes]
        return int(np.argmax(sizes))


def train_on_data(
    data: TrainingData,
    settings: TrainSettings,
    out: str | Path,
    feedback: Feedback | None = None,
    on_record: Record | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) on prepared data and write the model, checkpoint and reports."""
    outputs = TrainOutputs.beside(out, settings.checkpoint)
    return Trainer(data, settings, outputs, feedback, on_record).run()
