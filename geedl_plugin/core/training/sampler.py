"""Normalisation and the stream of training chips.

Normalisation: ``(x - mean) / std`` per input channel, with mean and std computed from the
training pixels only (validation blocks never leak into it) and stored in the model metadata,
where the inference runner applies the same numbers. Nodata (NaN) becomes 0 after normalising,
i.e. the band mean, and its pixels are never labels. For temporal stacks the statistics are
pooled per band over all time steps and repeated for each step: a band should mean the same
thing whatever date sits in which slot of the window.

Chips: square windows lying wholly inside training blocks. With class balancing each chip is
centred (for the pixel CNN: exactly centred, as document 001's 7 x 7 samples) on a labelled
pixel of a class drawn uniformly, so rare classes (water) are seen as often as common ones.
Augmentation is flips and 90-degree rotations only: they change nothing about a pixel's spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GeedlError
from ..model_metadata import IGNORE_INDEX
from .data import Scene
from .settings import check_augmentation


@dataclass
class Normalization:
    mean: np.ndarray
    std: np.ndarray

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Normalised float32 copy, NaN -> 0."""
        out = (image - self.mean[:, None, None]) / self.std[:, None, None]
        out = out.astype(np.float32, copy=False)
        out[~np.isfinite(out)] = 0.0
        return out

    def as_lists(self) -> tuple[list[float], list[float]]:
        return [float(v) for v in self.mean], [float(v) for v in self.std]


def compute_normalization(
    scenes: list[Scene],
    train_masks: list[np.ndarray],
    time_steps: int = 1,
    max_pixels: int = 2_000_000,
    seed: int = 0,
) -> Normalization:
    """Per-channel mean/std over finite pixels of the training area (a random subset when large)."""
    rng = np.random.default_rng(seed)
    channels = scenes[0].image.shape[0]
    per_step = channels // max(1, time_steps)
    total = sum(int(mask.sum()) for mask in train_masks)
    keep = min(1.0, max_pixels / max(1, total))
    samples = []
    for scene, mask in zip(scenes, train_masks):
        rr, cc = np.nonzero(mask)
        if keep < 1.0:
            pick = rng.random(rr.size) < keep
            rr, cc = rr[pick], cc[pick]
        samples.append(scene.image[:, rr, cc].astype(np.float64))
    values = np.concatenate(samples, axis=1) if samples else np.zeros((channels, 0))
    if time_steps > 1:  # pool each band over the time steps
        values = values.reshape(time_steps, per_step, -1).transpose(1, 0, 2).reshape(per_step, -1)
    mean = np.zeros(values.shape[0])
    std = np.ones(values.shape[0])
    for i, row in enumerate(values):
        finite = row[np.isfinite(row)]
        if finite.size == 0:
            raise GeedlError(
                f"Band {i + 1} has no valid pixel in the training area; remove it or fix the image."
            )
        mean[i] = finite.mean()
        spread = finite.std()
        std[i] = spread if spread > 1e-6 else 1.0
    if time_steps > 1:
        mean, std = np.tile(mean, time_steps), np.tile(std, time_steps)
    return Normalization(mean.astype(np.float32), std.astype(np.float32))


def class_weights(counts: np.ndarray, power: float = 0.5, cap: float = 10.0) -> np.ndarray:
    """Loss weights ``(median / count) ** power`` (0 for absent classes), capped; mean 1 over
    present classes. ``power`` 0.5 is a mild correction that still helps rare classes."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    if present.any():
        median = np.median(counts[present])
        weights[present] = np.minimum((median / counts[present]) ** power, cap)
        weights[present] /= weights[present].mean()
    return weights.astype(np.float32)


class TrainingArea:
    """Where training chips may lie in one scene: wholly inside the training blocks.

    A chip that reached into a validation block would leak held-out pixels into training; the
    integral image of "not training" answers "does this window touch one?" in O(1) per chip.
    """

    def __init__(self, train_mask: np.ndarray) -> None:
        self.shape = train_mask.shape
        outside = ~train_mask
        self._table = np.zeros((outside.shape[0] + 1, outside.shape[1] + 1), dtype=np.int64)
        self._table[1:, 1:] = np.cumsum(np.cumsum(outside, axis=0), axis=1)

    def fits(self, top: int, left: int, size: int) -> bool:
        h, w = self.shape
        if top < 0 or left < 0 or top + size > h or left + size > w:
            return False
        t, b, r = self._table, top + size, left + size
        return int(t[b, r] - t[top, r] - t[b, left] + t[top, left]) == 0

    def random_window(self, rng: np.random.Generator, size: int) -> tuple[int, int] | None:
        """A uniformly drawn window of ``size`` px that fits, or None (the scene is too small)."""
        h, w = self.shape
        if h < size or w < size:
            return None
        top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        return (top, left) if self.fits(top, left, size) else None


def augment(
    rng: np.random.Generator, image: np.ndarray, *planes: np.ndarray, mode: str = "all"
) -> tuple[np.ndarray, ...]:
    """The same random quarter turn and mirror of a ``C x S x S`` chip and its ``S x S`` planes
    (labels, masks): geometric only, so no pixel's spectrum changes.

    ``mode="mirror"`` only mirrors left-right, so north stays up: quarter turns and up-down flips
    teach a model that direction does not matter, and then it cannot learn what depends on it,
    such as shadows that always fall north or labels that sit a fraction of a pixel north of the
    image. Fewer views of each object cost robustness, though: on the Brandenburg accuracy study
    (whose OSM shores sit about half a pixel north) it cut the water errors along label edges but
    turned two whole lakes into farm, so "all" stays the default (README, "How accurate is it").
    It draws the same random numbers as ``"all"``, so two runs that differ in the mode train on
    the same chips.
    """
    turns = int(rng.integers(4))
    mirrored = rng.random() < 0.5
    if mode == "all":
        image = np.rot90(image, turns, axes=(1, 2))
        planes = tuple(np.rot90(plane, turns) for plane in planes)
    if mirrored:
        image = image[:, :, ::-1]
        planes = tuple(plane[:, ::-1] for plane in planes)
    return (image, *planes)


class ChipSampler:
    """Random training chips ``(x: N x C x S x S, y: N x S' x S')``, S' = S - 2 * margin."""

    def __init__(
        self,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        train_masks: list[np.ndarray],
        n_classes: int,
        chip: int,
        margin: int = 0,
        balance: bool = True,
        augment: str = "all",
        seed: int = 0,
    ) -> None:
        if chip < 2 * margin + 1:
            raise GeedlError(f"Chip size {chip} is smaller than the model's {2 * margin + 1} px window.")
        self.images = images
        self.chip = int(chip)
        self.margin = int(margin)
        self.n_classes = n_classes
        self.balance = balance
        check_augmentation(augment)
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.labels = []
        self.areas: list[TrainingArea] = []
        self.pixels: list[list[np.ndarray]] = [[] for _ in range(n_classes)]  # per class: (scene, r, c)
        for index, (label, mask) in enumerate(zip(labels, train_masks)):
            label = np.where(mask, label, IGNORE_INDEX).astype(np.uint8)
            self.labels.append(label)
            self.areas.append(TrainingArea(mask))
            h, w = label.shape
            if h < self.chip or w < self.chip:
                continue
            for k in range(n_classes):
                rr, cc = np.nonzero(label == k)
                # centre pixels whose chip fits in the scene
                inner = (rr >= margin) & (rr < h - margin) & (cc >= margin) & (cc < w - margin)
                if inner.any():
                    self.pixels[k].append(
                        np.stack([np.full(inner.sum(), index), rr[inner], cc[inner]], axis=1)
                    )
        self.pools = [np.concatenate(p) if p else np.zeros((0, 3), dtype=np.int64) for p in self.pixels]
        self.present = [k for k in range(n_classes) if len(self.pools[k])]
        if not self.present:
            raise GeedlError(
                f"No labelled training pixel fits a {self.chip} px chip; use a smaller --chip-size "
                "or label larger areas."
            )
        sizes = np.array([len(self.pools[k]) for k in self.present], dtype=np.float64)
        self.class_probs = (
            np.full(len(self.present), 1.0 / len(self.present)) if balance else sizes / sizes.sum()
        )

    @property
    def training_pixels(self) -> int:
        return int(sum(len(p) for p in self.pools))

    def _window(self) -> tuple[int, int, int]:
        span = self.chip - 2 * self.margin  # output pixels per chip side
        for _ in range(64):
            k = self.present[self.rng.choice(len(self.present), p=self.class_probs)]
            scene, row, col = self.pools[k][self.rng.integers(len(self.pools[k]))]
            top = int(row) - self.margin - int(self.rng.integers(span))
            left = int(col) - self.margin - int(self.rng.integers(span))
            if self.areas[scene].fits(top, left, self.chip):
                return int(scene), top, left
        # a chip that fits may not exist around rare pixels near block edges: any fitting chip
        for _ in range(1000):
            scene = int(self.rng.integers(len(self.labels)))
            window = self.areas[scene].random_window(self.rng, self.chip)
            if window is not None:
                return (scene, *window)
        raise GeedlError(
            f"No {self.chip} x {self.chip} px chip fits inside the training blocks; use a smaller "
            "--chip-size or a larger --block-size."
        )

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        channels = self.images[0].shape[0]
        x = np.empty((size, channels, self.chip, self.chip), dtype=np.float32)
        span = self.chip - 2 * self.margin
        y = np.empty((size, span, span), dtype=np.int64)
        m = self.margin
        for i in range(size):
            scene, top, left = self._window()
            xi = self.images[scene][:, top : top + self.chip, left : left + self.chip]
            yi = self.labels[scene][top + m : top + self.chip - m, left + m : left + self.chip - m]
            if self.augment != "none":
                xi, yi = augment(self.rng, xi, yi, mode=self.augment)
            x[i] = xi
            y[i] = yi
        return x, y
