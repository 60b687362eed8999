"""The epoch loop shared by classification (:mod:`.trainer`) and regression (:mod:`.regression`).

Why one loop: what an analyst relies on during a long run is the same whatever the network
predicts: a checkpoint after every complete epoch (written atomically, so a cancel or a crash
leaves the last one loadable), resume from it on the same learning-rate curve, cancellation
between steps, weight averaging and "precise" batch norm for steady validation scores, early
stopping on held-out blocks, and the structured progress records (epoch, step, loss, ETA) that
the QGIS task reads from the runner's JSON lines. What differs between tasks (the chips, the
loss, the validation scores, what else a checkpoint must carry) comes from an
:class:`Objective`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..atomic import backup
from ..errors import GeedlError
from ..models import GeedlModel, model_spec
from ..progress import Feedback
from .checkpoint import save_checkpoint

Record = Callable[[dict[str, Any]], None]
#: batches whose batch-norm statistics the kept weights get at the end (see settle_batchnorm)
FINAL_BN_BATCHES = 200


class BatchSource(Protocol):
    """Draws training batches; the first array of a batch is always the input chips."""

    def batch(self, size: int) -> tuple[np.ndarray, ...]: ...


@dataclass
class Validation:
    """One epoch's held-out scores, as the loop needs them."""

    score: float  # higher is better (mean IoU; minus the RMSE)
    metrics: dict[str, Any]  # kept with the best epoch
    entry: dict[str, Any]  # added to the epoch's history entry
    summary: str  # "val mIoU 0.612 (water 0.74, ...)" for the epoch's message


class Objective(Protocol):
    """What the loop asks of a task (see :class:`.trainer.Trainer`, :mod:`.regression`)."""

    #: smallest rise of the score that counts as an improvement (early stopping)
    min_delta: float
    #: what to tell the user when the loss becomes NaN/inf
    nan_advice: str

    def sampler(self, epoch: int) -> BatchSource: ...

    def loss(self, model: torch.nn.Module, batch: tuple[np.ndarray, ...]) -> torch.Tensor | None:
        """The batch's loss; None when the batch has nothing to learn from (skipped)."""

    def validate(self, model: GeedlModel) -> Validation | None:
        """Scores on the held-out blocks; None when there is no validation split."""

    def checkpoint_extras(self) -> dict[str, Any]:
        """What a checkpoint needs besides weights and progress (bands, normalisation, ...)."""


@dataclass
class LoopPlan:
    """How many epochs of how many steps, and the optimiser's schedule around them."""

    epochs: int
    steps: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int = 0
    schedule: str = "cosine"
    ema_decay: float = 0.0
    progress_interval_s: float = 1.0
    #: "best": the epoch that scores best on the validation blocks, stopping early after
    #: ``patience`` epochs without improvement; "last": every planned epoch, the last one kept
    keep: str = "best"
    describe: str = ""  # the model line shown before the first epoch


@dataclass
class LoopResult:
    best: dict[str, Any]  # score, epoch, state (CPU weights), metrics
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


def state_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def learning_rate(base: float, epoch: int, epochs: int, schedule: str = "cosine") -> float:
    """Cosine decay from the base rate to 5 % of it over the planned epochs (a function of the
    epoch alone, so a resumed run continues on the same curve)."""
    if schedule == "constant" or epochs <= 1:
        return base
    progress = (epoch - 1) / (epochs - 1)
    floor = 0.05
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class Progress:
    """Percent, ETA and throttled structured records."""

    def __init__(
        self,
        feedback: Feedback,
        on_record: Record | None,
        total_steps: int,
        interval: float,
        start_step: int = 0,
    ) -> None:
        self.feedback = feedback
        self.on_record = on_record
        self.total = max(1, total_steps)
        self.interval = interval
        self.started = time.monotonic()
        self.start_step = start_step
        self.last = -math.inf

    def eta(self, step: int) -> float | None:
        done = step - self.start_step
        if done <= 0:
            return None
        return (time.monotonic() - self.started) / done * (self.total - step)

    def percent(self, step: int) -> float:
        return 90.0 * step / self.total

    def wrap(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as a ``progress`` line: percent and ETA at its step added."""
        step = int(record.get("step", 0))
        eta = self.eta(step)
        return {
            "type": "progress",
            "percent": round(self.percent(step), 2),
            "eta_s": None if eta is None else round(eta, 1),
            **record,
        }

    def emit(self, record: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        record = self.wrap(record)
        short = (
            f"epoch {record.get('epoch')}/{record.get('epochs')} done"
            if record.get("phase") == "epoch_end" and self.on_record is None
            else record.get("message", "")
        )  # without a record consumer the epoch summary goes to feedback.info, once
        self.feedback.progress(record["percent"], short)
        if self.on_record is not None:
            self.on_record(record)


def epoch_record(
    entry: dict[str, Any], plan: LoopPlan, best_epoch: int, checkpoint: Path, message: str
) -> dict[str, Any]:
    """The ``epoch_end`` progress record of one history entry (what the dock plots)."""
    epoch = int(entry["epoch"])
    return {
        "phase": "epoch_end",
        "epoch": epoch,
        "epochs": plan.epochs,
        "step": epoch * plan.steps,
        "steps": max(1, plan.epochs * plan.steps),
        "loss": round(float(entry["train_loss"]), 5),
        "val": entry.get("val"),
        "val_loss": entry.get("val_loss"),
        "best_epoch": best_epoch,
        "checkpoint": str(checkpoint),
        "message": message,
    }


@torch.no_grad()
def update_average(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``averaged = decay * averaged + (1 - decay) * model`` for every trainable weight."""
    for mine, theirs in zip(averaged.parameters(), model.parameters()):
        if theirs.requires_grad:
            mine.lerp_(theirs.detach(), 1.0 - decay)


@torch.no_grad()
def recalibrate_batchnorm(
    model: torch.nn.Module,
    sampler: BatchSource,
    batch_size: int,
    device: str,
    batches: int = 12,
    check_cancelled: Callable[[], None] | None = None,
) -> None:
    """Recompute batch-norm statistics for the current weights ("precise BN").

    The running averages collected during training mix statistics of older weights and, with
    small batches of very different chips (a lake, a field, a cloud), swing from batch to
    batch; validation scores then jumped by 0.2 IoU between epochs on the Brandenburg scene.
    A cumulative average over a dozen fresh batches with the weights fixed is stable and costs
    a fraction of an epoch. Frozen (pretrained, eval-mode) layers keep their statistics.
    """
    layers = [
        m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
    ]
    if not layers:
        return
    saved = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average
    try:
        for _ in range(batches):
            if check_cancelled is not None:
                check_cancelled()
            chips = sampler.batch(batch_size)[0]
            model(torch.from_numpy(chips).to(device))
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


def settle_batchnorm(
    template: torch.nn.Module,
    best: dict[str, Any],
    objective: Objective,
    plan: LoopPlan,
    device: str,
    feedback: Feedback,
) -> bool:
    """Give the kept weights batch-norm statistics from FINAL_BN_BATCHES batches (never more
    than the run's own steps), in place in ``best``; False when the model has no batch norm.

    Why: the dozen batches that suffice to follow the validation curve are too few for the model
    that is handed over. On the Brandenburg accuracy study the same final weights of one fold
    scored 0.83-0.90 held-out water IoU with statistics from four draws of 12 batches (0.80 with
    the draw stored at its last epoch), and 0.851 / 0.854 with two draws of 300 batches.
    """
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in template.modules()):
        return False
    kept = copy.deepcopy(template)
    kept.load_state_dict(best["state"])
    batches = max(1, min(FINAL_BN_BATCHES, plan.epochs * plan.steps))
    feedback.progress(90.0, f"batch-norm statistics of the kept weights ({batches} batches)")
    torch.manual_seed(plan.seed * 1000 + plan.epochs + 1)
    kept.train()
    recalibrate_batchnorm(
        kept,
        objective.sampler(plan.epochs + 1),
        plan.batch_size,
        device,
        batches=batches,
        check_cancelled=feedback.check_cancelled,
    )
    best["state"] = state_cpu(kept)
    return True


def backup_previous(model: Path, checkpoint: Path, resume: Path | None, feedback: Feedback) -> None:
    """Copy a model (and its checkpoint) from an earlier run aside before this run replaces
    them: a retrained model must never silently destroy the one it was made from. The
    checkpoint a run resumes from is its own and is carried on, not backed up."""
    resuming = resume is not None and Path(resume).resolve() == Path(checkpoint).resolve()
    for path in (model, None if resuming else checkpoint):
        if path is not None and Path(path).exists():
            saved = backup(path)
            feedback.info(f"{Path(path).name} exists; the previous version was kept as {saved.name}")


def checkpoint_payload(
    model: GeedlModel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    best: dict[str, Any],
    history: list[dict[str, Any]],
    stopped: bool,
    extras: dict[str, Any],
    averaged: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """A checkpoint: the best weights (what is exported), the last weights, the averaged
    weights and the optimiser (what resume continues from), the history, and the task's extras."""
    return {
        "epoch": epoch,
        "model_spec": model_spec(model),
        "model_state": best["state"],
        "last_state": state_cpu(model),
        "ema_state": state_cpu(averaged) if averaged is not None and averaged is not model else None,
        "optimizer_state": optimizer.state_dict(),
        "best_epoch": best["epoch"],
        "best_score": best["score"],
        "best_metrics": best.get("metrics"),
        "history": history,
        "stopped_early": stopped,
        **extras,
    }


def run_epochs(
    model: GeedlModel,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    plan: LoopPlan,
    checkpoint: Path,
    device: str,
    feedback: Feedback,
    on_record: Record | None = None,
    resume_state: dict[str, Any] | None = None,
) -> LoopResult:
    """Train ``model`` for the planned epochs (or until early stopping) and load the kept
    epoch's weights into it. ``resume_state`` is a checkpoint of this run to continue from."""
    keep_last = plan.keep == "last"
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "state": state_cpu(model), "metrics": None}
    first_epoch = 1
    stopped = False
    averaged = copy.deepcopy(model) if plan.ema_decay > 0 else model  # what is validated and exported
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer_state"])
        if averaged is not model and resume_state.get("ema_state") is not None:
            averaged.load_state_dict(resume_state["ema_state"])
        history = list(resume_state.get("history", []))
        best = {
            "score": resume_state["best_score"],
            "epoch": resume_state["best_epoch"],
            "state": resume_state["model_state"],
            "metrics": resume_state.get("best_metrics"),
        }
        first_epoch = int(resume_state["epoch"]) + 1
        # an early-stopped run resumed with keep="last" trains on to the end of its schedule
        stopped = bool(resume_state.get("stopped_early")) and not keep_last
    steps = plan.steps
    total_steps = max(1, plan.epochs * steps)
    progress = Progress(
        feedback, on_record, total_steps, plan.progress_interval_s, start_step=(first_epoch - 1) * steps
    )
    if plan.describe:
        feedback.info(plan.describe)
    if on_record is not None:  # a resumed run's curve starts at epoch 1, not where it resumed
        for earlier in history:
            on_record({**progress.wrap(epoch_record(earlier, plan, best["epoch"], checkpoint, "")),
                       "replayed": True})
    seen_samples, train_time = 0, 0.0
    epoch = first_epoch - 1
    # a run resumed after it stopped early trains no further epoch
    for epoch in range(first_epoch, (first_epoch - 1 if stopped else plan.epochs) + 1):
        torch.manual_seed(plan.seed * 1000 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(plan.learning_rate, epoch, plan.epochs, plan.schedule)
        sampler = objective.sampler(epoch)
        model.train()
        running, count = 0.0, 0
        started = time.monotonic()
        for step in range(1, steps + 1):
            feedback.check_cancelled()
            optimizer.zero_grad(set_to_none=True)
            loss = objective.loss(model, sampler.batch(plan.batch_size))
            if loss is None:
                continue
            if not torch.isfinite(loss):
                raise GeedlError(f"The training loss became NaN/inf; {objective.nan_advice}")
            loss.backward()
            optimizer.step()
            if averaged is not model:
                done = (epoch - 1) * steps + step
                update_average(averaged, model, min(plan.ema_decay, (1 + done) / (10 + done)))
            running += float(loss.item())
            count += 1
            seen_samples += plan.batch_size
            progress.emit(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "epochs": plan.epochs,
                    "step": (epoch - 1) * steps + step,
                    "steps": total_steps,
                    "batch": step,
                    "batches": steps,
                    "loss": round(running / max(1, count), 5),
                    "message": f"epoch {epoch}/{plan.epochs} step {step}/{steps} "
                    f"loss {running / max(1, count):.4f}",
                }
            )
        feedback.check_cancelled()
        averaged.train()
        recalibrate_batchnorm(averaged, sampler, plan.batch_size, device, batches=min(12, max(2, steps // 2)))
        train_time += time.monotonic() - started
        train_loss = running / max(1, count)
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "seconds": round(time.monotonic() - started, 3),
        }
        validation = objective.validate(averaged)
        if validation is not None:
            score, metrics = validation.score, validation.metrics
            entry.update(validation.entry)
        else:
            score, metrics = -train_loss, None
        improved = score > best["score"] + objective.min_delta
        if improved or keep_last:
            best = {"score": score, "epoch": epoch, "state": state_cpu(averaged), "metrics": metrics}
        history.append(entry)
        stopped = not keep_last and epoch - best["epoch"] >= plan.patience
        save_checkpoint(
            checkpoint,
            checkpoint_payload(
                model, optimizer, epoch, best, history, stopped, objective.checkpoint_extras(), averaged
            ),
        )
        message = (
            f"epoch {epoch}/{plan.epochs}: loss {train_loss:.4f}"
            + (f", {validation.summary}" if validation is not None and validation.summary else "")
            + (" (best)" if improved and not keep_last else "")
        )
        progress.emit(epoch_record(entry, plan, best["epoch"], checkpoint, message), force=True)
        if on_record is None:  # the record already carries the message
            feedback.info(message)
        if stopped and epoch < plan.epochs:
            feedback.info(
                f"Early stopping: no improvement for {plan.patience} epochs; best epoch {best['epoch']}"
            )
            break
    if keep_last and best["epoch"] != epoch:  # resumed with keep="last" from a finished "best" run
        best = {"score": -math.inf, "epoch": epoch, "state": state_cpu(averaged), "metrics": None}
    if settle_batchnorm(averaged, best, objective, plan, device, feedback):
        save_checkpoint(  # the checkpoint's kept weights are the exported ones
            checkpoint,
            checkpoint_payload(
                model, optimizer, epoch, best, history, stopped, objective.checkpoint_extras(), averaged
            ),
        )
    model.load_state_dict(best["state"])
    return LoopResult(
        best,
        history,
        epoch,
        stopped and epoch < plan.epochs,
        train_time,
        seen_samples / train_time if train_time > 0 else 0.0,
    )
