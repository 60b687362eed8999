"""Spatial block split into training and validation pixels.

Neighbouring pixels are nearly copies of each other, so a random pixel split scores a model on
pixels it has practically seen and overstates accuracy. geedl cuts the map into square blocks
(``block_size`` pixels a side, in map coordinates so scenes sharing a grid share blocks) and
holds out whole blocks. Which blocks: among many seeded random draws the one whose held-out
share of every class is closest to ``val_fraction`` (stratified), so that every class appears on
both sides when the labels allow it. The choice is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GeedlError
from ..model_metadata import IGNORE_INDEX
from .data import Scene


@dataclass
class BlockSplit:
    """Per-scene boolean masks of validation pixels, and what was chosen."""

    val_masks: list[np.ndarray]
    block_size: int
    n_blocks: int
    val_blocks: list[tuple[int, int]]
    val_share: list[float]

    def train_masks(self) -> list[np.ndarray]:
        return [~mask for mask in self.val_masks]

    def summary(self) -> dict:
        return {
            "method": "blocks",
            "block_size_px": self.block_size,
            "labelled_blocks": self.n_blocks,
            "val_blocks": len(self.val_blocks),
            "val_share_per_class": [round(s, 3) for s in self.val_share],
        }


# random draws compared for the ordinary split (block_split and fold 0 of block_folds)
SPLIT_TRIES = 400


def _block_ids(scene: Scene, origin: tuple[float, float], block_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Block column and row of every pixel of ``scene`` (pixel centres, map coordinates)."""
    x0, dx, _, y0, _, dy = scene.geotransform
    height, width = scene.shape
    xs = x0 + (np.arange(width) + 0.5) * dx
    ys = y0 + (np.arange(height) + 0.5) * dy
    cols = np.floor((xs - origin[0]) / block_m).astype(np.int64)
    rows = np.floor((origin[1] - ys) / block_m).astype(np.int64)
    return cols, rows


def _block_table(
    scenes: list[Scene], n_classes: int, block_size: int
) -> tuple[list[tuple[int, int]], np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(labelled blocks as (row, col), their per-class pixel counts, block ids of every scene)."""
    if block_size < 1:
        raise GeedlError("The block size must be at least one pixel.")
    resolution = abs(scenes[0].geotransform[1])
    block_m = block_size * resolution
    origin = (min(s.geotransform[0] for s in scenes), max(s.geotransform[3] for s in scenes))
    ids_per_scene = []
    counts: dict[tuple[int, int], np.ndarray] = {}
    for scene in scenes:
        cols, rows = _block_ids(scene, origin, block_m)
        ids_per_scene.append((cols, rows))
        labelled = scene.label != IGNORE_INDEX
        rr, cc = np.nonzero(labelled)
        if rr.size == 0:
            continue
        keys = rows[rr] * 1_000_003 + cols[cc]
        classes = scene.label[rr, cc].astype(np.int64)
        uniq, inverse = np.unique(keys, return_inverse=True)
        table = np.zeros((uniq.size, n_classes), dtype=np.int64)
        np.add.at(table, (inverse, classes), 1)
        for key, row in zip(uniq, table):
            block = (int(key // 1_000_003), int(key % 1_000_003))
            counts[block] = counts.get(block, 0) + row
    blocks = sorted(counts)
    if len(blocks) < 2:
        raise GeedlError(
            f"All labels fall in one {block_size} x {block_size} px block, so no block can be held out for "
            "validation. Use a smaller --block-size, label a wider area, or --val-split none."
        )
    return blocks, np.stack([counts[b] for b in blocks]).astype(np.float64), ids_per_scene


def _stratified_draw(
    table: np.ndarray, candidates: list[int], n_val: int, target: float, rng: np.random.Generator, tries: int
) -> list[int]:
    """Among ``tries`` random draws of ``n_val`` of the ``candidates`` (rows of ``table``), the one
    whose share of every class (of all labelled pixels) is closest to ``target``."""
    totals = table.sum(axis=0)
    present = totals > 0
    best, best_score = None, np.inf
    for _ in range(max(1, tries)):
        chosen = [candidates[i] for i in rng.choice(len(candidates), size=n_val, replace=False)]
        share = np.divide(table[chosen].sum(axis=0), totals, out=np.zeros_like(totals), where=present)
        # every present class on both sides first, then shares close to the target
        missing = np.sum(present & ((share <= 0) | (share >= 1)))
        score = missing * 10.0 + float(np.sum((share[present] - target) ** 2))
        if score < best_score:
            best, best_score = chosen, score
    assert best is not None
    return best


def _split_of(
    blocks: list[tuple[int, int]],
    table: np.ndarray,
    ids_per_scene: list[tuple[np.ndarray, np.ndarray]],
    chosen: list[int],
    block_size: int,
) -> BlockSplit:
    val_blocks = {blocks[i] for i in chosen}
    val_keys = np.array(sorted(r * 1_000_003 + c for r, c in val_blocks), dtype=np.int64)
    masks = []
    for cols, rows in ids_per_scene:
        keys = rows[:, None] * 1_000_003 + cols[None, :]
        masks.append(np.isin(keys, val_keys))
    totals = table.sum(axis=0)
    share = np.divide(table[chosen].sum(axis=0), totals, out=np.zeros_like(totals), where=totals > 0)
    return BlockSplit(masks, int(block_size), len(blocks), sorted(val_blocks), [float(v) for v in share])


def _first_draw(table: np.ndarray, val_fraction: float, seed: int, tries: int) -> list[int]:
    """The ordinary split's blocks: ``val_fraction`` of all labelled blocks, drawn from ``seed``."""
    n_blocks = len(table)
    n_val = int(np.clip(round(val_fraction * n_blocks), 1, n_blocks - 1))
    rng = np.random.default_rng(seed)
    return _stratified_draw(table, list(range(n_blocks)), n_val, val_fraction, rng, tries)


def block_split(
    scenes: list[Scene],
    n_classes: int,
    block_size: int = 128,
    val_fraction: float = 0.25,
    seed: int = 0,
    tries: int = SPLIT_TRIES,
) -> BlockSplit:
    """Choose validation blocks; see the module docstring."""
    if not 0.0 < val_fraction < 1.0:
        raise GeedlError(f"The validation fraction {val_fraction} must be between 0 and 1.")
    blocks, table, ids_per_scene = _block_table(scenes, n_classes, block_size)
    chosen = _first_draw(table, val_fraction, seed, tries)
    return _split_of(blocks, table, ids_per_scene, chosen, block_size)


def block_folds(
    scenes: list[Scene],
    n_classes: int,
    folds: int = 4,
    block_size: int = 128,
    seed: int = 0,
    tries: int = 2000,
) -> list[BlockSplit]:
    """``folds`` disjoint sets of validation blocks covering every labelled block once (spatial
    k-fold cross-validation): a single split is one draw of held-out blocks, and on a scene
    with few water bodies that draw alone can move a class's IoU by 0.1 or more. Fold 0 is
    :func:`block_split`'s split with the same seed (so it matches a normal training run); the
    next folds are stratified draws from the blocks not yet held out; the last takes the rest."""
    if folds < 2:
        raise GeedlError("Cross-validation needs at least 2 folds.")
    blocks, table, ids_per_scene = _block_table(scenes, n_classes, block_size)
    if len(blocks) < folds:
        raise GeedlError(
            f"Only {len(blocks)} labelled {block_size} px blocks for {folds} folds; use fewer folds or a "
            "smaller --block-size."
        )
    first = _first_draw(table, 1.0 / folds, seed, SPLIT_TRIES)  # = block_split(..., 1 / folds, seed)
    taken = set(first)
    splits = [_split_of(blocks, table, ids_per_scene, first, block_size)]
    rng = np.random.default_rng(seed + 1)
    for _ in range(folds - 2):
        rest = [i for i in range(len(blocks)) if i not in taken]
        chosen = _stratified_draw(table, rest, len(first), 1.0 / folds, rng, tries)
        taken.update(chosen)
        splits.append(_split_of(blocks, table, ids_per_scene, chosen, block_size))
    last = [i for i in range(len(blocks)) if i not in taken]
    splits.append(_split_of(blocks, table, ids_per_scene, last, block_size))
    return splits


def preset_split(scenes: list[Scene], val: list[bool]) -> BlockSplit:
    """Whole scenes (chips) held out as given, e.g. by the chips manifest's own block split."""
    if len(val) != len(scenes):
        raise GeedlError("The chips manifest's split does not list every chip.")
    masks = [np.full(s.shape, bool(v)) for s, v in zip(scenes, val)]
    return BlockSplit(masks, 0, len(scenes), [(i, 0) for i, v in enumerate(val) if v], [])


def no_split(scenes: list[Scene]) -> BlockSplit:
    """Everything trains (fine-tuning on a few corrected polygons); metrics are then training fit."""
    return BlockSplit([np.zeros(s.shape, dtype=bool) for s in scenes], 0, 0, [], [])
