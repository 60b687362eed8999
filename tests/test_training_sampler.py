"""Training chips stay inside the training blocks and augmentation moves labels with pixels.

Both the classification and the regression samplers draw their windows through
``sampler.TrainingArea`` and flip/turn them with ``sampler.augment``; a chip that reached into a
validation block would leak held-out pixels into training, so that is checked pixel by pixel.
"""

from __future__ import annotations

import numpy as np
import pytest

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.training.regression import RegressionSampler
from geedl_plugin.core.training.sampler import ChipSampler, TrainingArea, augment


def _position_image(height: int, width: int) -> np.ndarray:
    """Two bands holding each pixel's row and column, so a chip says where it came from."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols]).astype(np.float32)


def _checkerboard_mask(height: int, width: int, block: int) -> np.ndarray:
    """Training blocks (True) alternating with validation blocks, like a block split."""
    rows, cols = np.mgrid[0:height, 0:width]
    return ((rows // block + cols // block) % 2) == 0


def test_training_area_refuses_windows_touching_validation_or_the_border():
    mask = np.ones((40, 50), dtype=bool)
    mask[20, 30] = False  # one validation pixel
    area = TrainingArea(mask)
    assert area.fits(0, 0, 20)
    assert area.fits(21, 31, 19)
    assert not area.fits(10, 25, 11)  # covers (20, 30)
    assert not area.fits(20, 30, 1)
    assert not area.fits(-1, 0, 5) and not area.fits(0, 46, 5) and not area.fits(36, 0, 5)
    assert TrainingArea(mask).random_window(np.random.default_rng(0), 41) is None  # taller than the scene


def test_classification_chips_lie_wholly_in_training_blocks():
    height, width, block = 96, 128, 32
    mask = _checkerboard_mask(height, width, block)
    labels = (np.arange(height * width).reshape(height, width) % 3).astype(np.uint8)
    sampler = ChipSampler([_position_image(height, width)], [labels], [mask], n_classes=3, chip=16, seed=1)
    x, y = sampler.batch(200)
    for chip, chip_labels in zip(x, y):
        rows, cols = chip[0].astype(int), chip[1].astype(int)
        assert mask[rows, cols].all()
        # the labels travelled with their pixels through the flips and turns
        np.testing.assert_array_equal(chip_labels, labels[rows, cols])


def test_regression_chips_lie_wholly_in_training_blocks_with_their_targets():
    height, width, block = 96, 128, 32
    mask = _checkerboard_mask(height, width, block)
    image = _position_image(height, width)
    target = image[0] * 1000 + image[1]
    valid = np.ones((height, width), dtype=bool)
    valid[::7, ::5] = False
    sampler = RegressionSampler(image, target, valid, mask, chip=16, augment=True, seed=2)
    x, y, m = sampler.batch(100)
    for chip, chip_target, chip_valid in zip(x, y, m):
        rows, cols = chip[0].astype(int), chip[1].astype(int)
        assert mask[rows, cols].all()
        np.testing.assert_array_equal(chip_valid, valid[rows, cols])
        np.testing.assert_array_equal(chip_target[chip_valid], target[rows, cols][chip_valid])


def test_augment_turns_and_mirrors_every_plane_alike():
    rng = np.random.default_rng(3)
    seen = set()
    base = np.arange(16, dtype=np.float32).reshape(4, 4)
    for _ in range(64):
        image, labels, other = augment(rng, np.stack([base, -base]), base.copy(), base + 100)
        np.testing.assert_array_equal(image[0], labels)
        np.testing.assert_array_equal(image[1], -labels)
        np.testing.assert_array_equal(other, labels + 100)
        seen.add(labels.tobytes())
    assert len(seen) == 8  # the four turns, each mirrored or not


def test_mirror_augmentation_keeps_north_up_and_draws_like_the_full_one():
    """Labels offset north of the image stay north in every chip; the random draws are those of
    "all", so a run with either mode trains on the same chips (a paired comparison)."""
    base = np.arange(16, dtype=np.float32).reshape(4, 4)
    mirrored_rng, full_rng = np.random.default_rng(5), np.random.default_rng(5)
    seen = set()
    for _ in range(64):
        image, labels = augment(mirrored_rng, np.stack([base, -base]), base.copy(), mode="mirror")
        augment(full_rng, base[None], base.copy())
        np.testing.assert_array_equal(image[0], labels)
        np.testing.assert_array_equal(np.sort(labels, axis=1), base)  # every row where it was
        seen.add(labels.tobytes())
    assert seen == {base.tobytes(), base[:, ::-1].tobytes()}
    assert mirrored_rng.random() == full_rng.random()


def test_unknown_augmentation_is_a_clear_error():
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[:, 16:] = 1
    with pytest.raises(GeedlError, match="mirror"):
        ChipSampler([_position_image(32, 32)], [labels], [np.ones((32, 32), bool)], n_classes=2, chip=16,
                    augment="flip")
    # the on/off of older settings still reads as "all" / "none"
    from geedl_plugin.core.training.settings import TrainSettings

    assert TrainSettings(augment=True).augment == "all" and TrainSettings(augment=False).augment == "none"
    with pytest.raises(GeedlError, match="Augmentation 'turns'"):
        TrainSettings(augment="turns")


def test_no_fitting_chip_is_a_clear_error():
    mask = _checkerboard_mask(64, 64, 8)  # 8 px training blocks cannot hold a 16 px chip
    labels = np.zeros((64, 64), dtype=np.uint8)
    labels[::2] = 1
    sampler = ChipSampler([_position_image(64, 64)], [labels], [mask], n_classes=2, chip=16, seed=0)
    with pytest.raises(GeedlError, match="chip-size"):
        sampler.batch(1)
