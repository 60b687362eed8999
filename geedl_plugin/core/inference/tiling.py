"""Where tiles go and how much each tile pixel counts, so tiled prediction has no seams.

Tiles of ``tile`` pixels sit on a global grid with stride ``tile - overlap``; tile ``j`` starts
at ``j * stride`` (the last ones run past the raster and are padded). The stride is a multiple
of ``align``, the model's total pooling factor (``2**depth`` for a U-Net, read from the graph):
only shifts that are multiples of it give the same result as a whole-image pass.

Blending: in the ``overlap`` pixels shared by two neighbouring tiles, the left/top tile's weight
falls from 1 to 0 while the right/bottom one rises from 0 to 1 (a cosine ramp), so the two
weights sum to exactly 1 and no normalisation pass is needed. The first ``margin`` pixels of the
overlap on each side get weight 0: a tile's outputs near its edge see padding instead of
neighbours and are wrong by up to the receptive field. With ``margin`` at least the model's
receptive radius (``receptive_field // 2``) every pixel that counts was computed with its full
context, and the blended map equals a whole-image prediction (up to float rounding) everywhere
except within the receptive radius of the raster border. When the overlap is too small for that,
the margin shrinks to a quarter of the overlap and the ramp hides what is left of the seam.

Column bands: the runner walks the raster in vertical bands of ``tiles_per_band`` tile columns,
top to bottom inside each band, so the state it carries is one band's tile row plus a thin
column of overlap between bands: memory does not grow with the raster. The band width in pixels
(``tiles_per_band * stride``) is chosen as a multiple of the GeoTIFF block (512) when that is
cheap, so every output block is written once, whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import GeedlError

BLOCK = 512
MAX_BAND_PIXELS = 8192


def _count(size: int, tile: int, stride: int) -> int:
    if size <= tile:
        return 1
    return math.ceil((size - tile) / stride) + 1


@dataclass(frozen=True)
class TileGrid:
    """Tile positions over a ``width`` x ``height`` raster."""

    width: int
    height: int
    tile: int
    overlap: int
    margin: int
    tiles_per_band: int
    #: True when blending only uses pixels computed with their full receptive field (exact)
    exact: bool = False

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def nx(self) -> int:
        return _count(self.width, self.tile, self.stride)

    @property
    def ny(self) -> int:
        return _count(self.height, self.tile, self.stride)

    @property
    def n_tiles(self) -> int:
        return self.nx * self.ny

    @property
    def n_bands(self) -> int:
        return math.ceil(self.nx / self.tiles_per_band)

    def band_tiles(self, band: int) -> range:
        """Tile columns of column band ``band``."""
        start = band * self.tiles_per_band
        return range(start, min(self.nx, start + self.tiles_per_band))

    def band_columns(self, band: int) -> tuple[int, int]:
        """Output columns [start, end) that band ``band`` finalizes."""
        start = band * self.tiles_per_band * self.stride
        end = self.width if band == self.n_bands - 1 else (band + 1) * self.tiles_per_band * self.stride
        return start, min(end, self.width)

    def weights_1d(self, index: int, count: int) -> np.ndarray:
        """Weight of each pixel along one axis of tile ``index`` of ``count``."""
        return _profile(self.tile, self.overlap, self.margin, index > 0, index < count - 1)

    def weights(self, row: int, col: int) -> np.ndarray:
        """2-D weight of tile (row, col): outer product of the two axis profiles."""
        return _outer(
            self.tile, self.overlap, self.margin, row > 0, row < self.ny - 1, col > 0, col < self.nx - 1
        )


@lru_cache(maxsize=64)
def _profile(tile: int, overlap: int, margin: int, has_before: bool, has_after: bool) -> np.ndarray:
    weights = np.ones(tile, dtype=np.float32)
    if overlap <= 0:
        return weights
    ramp = _ramp(overlap, margin)
    if has_before:
        weights[:overlap] *= ramp
    if has_after:
        weights[tile - overlap :] *= 1.0 - ramp
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=32)
def _outer(
    tile: int, overlap: int, margin: int, top: bool, bottom: bool, left: bool, right: bool
) -> np.ndarray:
    wy = _profile(tile, overlap, margin, top, bottom)
    wx = _profile(tile, overlap, margin, left, right)
    weights = np.outer(wy, wx).astype(np.float32)
    weights.setflags(write=False)
    return weights


def _ramp(overlap: int, margin: int) -> np.ndarray:
    """Rising weight over the overlap: 0 in the first ``margin`` pixels, 1 in the last ``margin``,
    a cosine in between; ``ramp + ramp[::-1] == 1`` so the two tiles' weights sum to one."""
    k = np.arange(overlap, dtype=np.float64)
    span = overlap - 2 * margin
    t = np.clip((k - margin + 0.5) / span, 0.0, 1.0)
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


def plan_grid(
    width: int,
    height: int,
    tile: int,
    overlap: int,
    receptive_field: int = 0,
    align: int = 32,
    fixed_size: tuple[int, int] | None = None,
    band_width: int | None = None,
) -> TileGrid:
    """The tile grid for a raster; ``overlap`` is rounded up so the stride stays aligned.

    ``band_width`` (pixels) overrides the automatic column-band width (tests use it to force
    several bands on a small raster)."""
    if width <= 0 or height <= 0:
        raise GeedlError("The raster (or the region inside it) is empty; nothing to predict.")
    if fixed_size is not None:
        if fixed_size[0] != fixed_size[1]:
            raise GeedlError(
                f"The model only takes {fixed_size[0]} x {fixed_size[1]} tiles; geedl tiles "
                "are square. Export the model with dynamic height and width."
            )
        tile = fixed_size[0]
    tile = int(tile)
    overlap = max(0, int(overlap))
    if tile < 8:
        raise GeedlError(f"Tile size {tile} is too small; use at least 64 pixels (256 or 512 is usual).")
    if overlap * 2 > tile:
        raise GeedlError(
            f"Overlap {overlap} is more than half the tile size {tile}; use a smaller overlap "
            f"(at most {tile // 2}) or a bigger tile."
        )
    step = align
    while step > 1 and tile % step:
        step //= 2
    stride = ((tile - overlap) // step) * step
    if stride <= 0 or tile - stride > tile // 2:
        stride = tile - overlap
    overlap = tile - stride
    radius = max(0, int(receptive_field) // 2)
    if overlap == 0:
        margin, exact = 0, radius == 0
    elif 2 * radius + 1 <= overlap:
        margin, exact = radius, True
    else:
        margin, exact = overlap // 4, False
    per_band = max(1, MAX_BAND_PIXELS // (2 * stride))
    aligned = BLOCK // math.gcd(stride, BLOCK)
    if aligned * stride <= MAX_BAND_PIXELS:
        per_band = aligned * max(1, (MAX_BAND_PIXELS // 2) // (aligned * stride))
    if band_width:
        per_band = max(1, int(band_width) // stride)
    return TileGrid(width, height, tile, overlap, margin, per_band, exact=exact)
