"""Training options, with defaults per model that work on a laptop CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GeedlError

# the registry's names (core.models.MODEL_NAMES), repeated so settings load without torch
MODEL_NAMES = ("unet", "pixelcnn", "temporal", "segnet")
BALANCE_MODES = ("auto", "sampling", "weights", "both", "none")
# "auto" weights the loss only when the rarest class has less than this share of the labelled
# training pixels. Measured on the Brandenburg scene (water 4 % of labels): weighting or balanced
# sampling raised water recall but cost more precision, so held-out water IoU fell (U-Net 0.55
# with both vs 0.61 without; a per-pixel MLP 0.57 vs 0.68). Below ~2 % an unweighted model tends
# to never predict the class at all, and weighting is the lesser evil.
AUTO_BALANCE_SHARE = 0.02
VAL_SPLITS = ("blocks", "none")
SCHEDULES = ("cosine", "constant")
# which epoch's weights become the model: "best" scores best on the validation blocks (and stops
# early when they stop improving), "last" is the end of the planned schedule. Choosing the epoch on
# the validation blocks makes their scores optimistic: on the Brandenburg accuracy study the
# selected epoch's held-out water IoU was up to 0.15 above the last epoch's on one fold and 0.045
# on a pooled 4-fold figure. With "last" the validation blocks only report, so their scores are an
# unbiased held-out estimate.
KEEP_MODES = ("best", "last")
# the training loss: "auto" is the model's default below; "ce" cross-entropy alone; "ce+lovasz" adds
# the Lovász-softmax term that optimises IoU (core.training.losses). On the Brandenburg accuracy
# study (width-64 U-Net, 4 repeats of spatial 4-fold CV, last epoch) it raised pooled held-out water
# IoU from 0.758 to 0.791, in every repeat (+0.004 to +0.047), and farm, forest and other slightly.
LOSSES = ("auto", "ce", "ce+lovasz")
# geometric augmentation of the training chips (core.training.sampler.augment): "all" quarter turns
# and mirrors, "mirror" left-right mirrors only (north stays up), "none"
AUGMENTATIONS = ("all", "mirror", "none")


def check_augmentation(mode: str) -> None:
    """One message for an unknown augmentation, wherever it is given (settings, a sampler)."""
    if mode not in AUGMENTATIONS:
        raise GeedlError(f"Augmentation {mode!r} is not one of {', '.join(AUGMENTATIONS)}.")

DEFAULT_LOSS = {"unet": "ce+lovasz", "segnet": "ce", "pixelcnn": "ce", "temporal": "ce"}

# chip (training window) sizes: the U-Net/SegNet see 64 px of context; the pixel CNN trains on
# 7 x 7 windows as in document 001 unless told otherwise; the temporal model is per pixel
DEFAULT_CHIP = {"unet": 64, "segnet": 64, "pixelcnn": 7, "temporal": 8}
DEFAULT_BATCH = {"unet": 16, "segnet": 16, "pixelcnn": 256, "temporal": 64}
DEFAULT_MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "unet": {"depth": 3, "width": 16},
    "segnet": {"depth": 3, "width": 16},
    "pixelcnn": {},
    "temporal": {},
}


@dataclass
class TrainSettings:
    """How to train. ``None`` means "the model's default" (see the tables above)."""

    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int | None = None
    chip_size: int | None = None
    samples_per_epoch: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    val_split: str = "blocks"
    val_fraction: float = 0.25
    block_size: int = 128
    balance: str = "auto"
    augment: str = "all"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    tile_size: int = 256
    pretrained_encoder: Path | None = None
    freeze_encoder: bool = False
    resume: Path | None = None
    checkpoint: Path | None = None
    finetune_from: Path | None = None
    head_only: bool = False
    schedule: str = "cosine"
    keep: str = "best"
    loss: str = "auto"
    #: exponential moving average of the weights (per step) that is validated and exported; 0
    #: turns it off. The U-Net's held-out water IoU swung by up to 0.3 between epochs on the
    #: Brandenburg scene; the average of the last few hundred steps is steadier.
    ema_decay: float = 0.99
    #: a class whose probability threshold is chosen on the training pixels after training and
    #: stored in the model (core.class_decision); None keeps arg-max. Fine-tuning a model that has
    #: one re-tunes the same class.
    tune_threshold: str | None = None
    progress_interval_s: float = 1.0

    def __post_init__(self) -> None:
        self.model = str(self.model).strip().lower()
        if isinstance(self.augment, bool):  # settings written before the modes: on or off
            self.augment = "all" if self.augment else "none"
        if self.tune_threshold is not None:
            self.tune_threshold = str(self.tune_threshold).strip() or None
        for name in ("pretrained_encoder", "resume", "checkpoint", "finetune_from"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        self.validate()

    def validate(self) -> None:
        if self.model not in MODEL_NAMES:
            raise GeedlError(f"Unknown model {self.model!r}; choose one of {', '.join(MODEL_NAMES)}.")
        if self.epochs < 0:
            raise GeedlError("The number of epochs cannot be negative.")
        if self.balance not in BALANCE_MODES:
            raise GeedlError(f"Class balancing {self.balance!r} is not one of {', '.join(BALANCE_MODES)}.")
        if self.val_split not in VAL_SPLITS:
            raise GeedlError(f"Validation split {self.val_split!r} is not one of {', '.join(VAL_SPLITS)}.")
        if self.schedule not in SCHEDULES:
            raise GeedlError(
                f"Learning-rate schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}."
            )
        if self.keep not in KEEP_MODES:
            raise GeedlError(
                f"Keep {self.keep!r} is not one of {', '.join(KEEP_MODES)} (the epoch whose weights to keep)."
            )
        check_augmentation(self.augment)
        if self.loss not in LOSSES:
            raise GeedlError(f"Loss {self.loss!r} is not one of {', '.join(LOSSES)}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise GeedlError("The batch size must be at least 1.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise GeedlError(f"The weight averaging decay {self.ema_decay} must be in [0, 1).")
        if self.learning_rate <= 0:
            raise GeedlError("The learning rate must be positive.")
        if self.head_only and self.finetune_from is None:
            raise GeedlError(
                "--head-only retrains the head of an existing model; give it with --finetune-from."
            )
        if self.resume is not None and self.finetune_from is not None:
            raise GeedlError(
                "Use either --resume (continue an interrupted run) or --finetune-from, not both."
            )
        if self.freeze_encoder and self.pretrained_encoder is None:
            raise GeedlError("--freeze-encoder needs a pretrained encoder (--pretrained-encoder checkpoint).")
        if self.pretrained_encoder is not None and self.model != "unet":
            raise GeedlError("A pretrained encoder can only be loaded into the U-Net (--model unet).")

    @property
    def effective_batch(self) -> int:
        return int(self.batch_size or DEFAULT_BATCH[self.model])

    @property
    def effective_chip(self) -> int:
        return int(self.chip_size or DEFAULT_CHIP[self.model])

    @property
    def effective_loss(self) -> str:
        return DEFAULT_LOSS[self.model] if self.loss == "auto" else self.loss

    def effective_model_options(self) -> dict[str, Any]:
        options = dict(DEFAULT_MODEL_OPTIONS[self.model])
        options.update(self.model_options)
        return options

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
