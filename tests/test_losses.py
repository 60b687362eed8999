"""The Lovász-softmax term: it is the Jaccard loss at hard predictions, ignores unlabelled pixels,
and its gradient moves predictions toward the labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geedl_plugin.core.model_metadata import IGNORE_INDEX
from geedl_plugin.core.training import TrainSettings
from geedl_plugin.core.training.losses import SegmentationLoss, lovasz_softmax


def _labels(generator: torch.Generator, classes: int = 4) -> torch.Tensor:
    target = torch.randint(0, classes, (2, 16, 16), generator=generator)
    target[0, :3] = IGNORE_INDEX
    return target


def test_at_hard_predictions_it_is_one_minus_iou_over_present_classes():
    generator = torch.Generator().manual_seed(1)
    target = _labels(generator)
    target[target == 3] = 0  # class 3 absent from the labels: not scored
    predicted = torch.randint(0, 4, target.shape, generator=generator)
    logits = torch.nn.functional.one_hot(predicted, 4).permute(0, 3, 1, 2).float() * 100.0
    labelled = target != IGNORE_INDEX
    expected = []
    for c in range(4):
        truth, guess = (target == c) & labelled, (predicted == c) & labelled
        if truth.any():
            expected.append(1.0 - float((truth & guess).sum()) / float((truth | guess).sum()))
    assert len(expected) == 3
    assert lovasz_softmax(logits, target).item() == pytest.approx(np.mean(expected), abs=1e-5)
    perfect = torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 100.0
    assert lovasz_softmax(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_unlabelled_pixels_do_not_count():
    generator = torch.Generator().manual_seed(2)
    target = _labels(generator)
    logits = torch.randn(2, 4, 16, 16, generator=generator)
    changed = logits.clone()
    changed[0, :, :3] = torch.randn(4, 3, 16, generator=generator) * 10
    assert lovasz_softmax(changed, target).item() == pytest.approx(lovasz_softmax(logits, target).item())
    nothing = torch.full_like(target, IGNORE_INDEX)
    logits.requires_grad_(True)
    empty = lovasz_softmax(logits, nothing)
    empty.backward()
    assert empty.item() == 0.0 and float(logits.grad.abs().sum()) == 0.0


def test_gradient_steps_lower_the_loss_and_raise_iou():
    generator = torch.Generator().manual_seed(3)
    target = _labels(generator)
    logits = torch.randn(2, 4, 16, 16, generator=generator, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.3)  # per-pixel gradients are ~1/pixels: Adam rescales
    first = None
    for _ in range(40):
        optimizer.zero_grad()
        loss = lovasz_softmax(logits, target)
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert lovasz_softmax(logits, target).item() < 0.5 * first
    labelled = target != IGNORE_INDEX
    accuracy = float((logits.argmax(1) == target)[labelled].float().mean())
    assert accuracy > 0.9


def test_segmentation_loss_adds_the_term_only_when_asked():
    generator = torch.Generator().manual_seed(4)
    target = _labels(generator)
    logits = torch.randn(2, 4, 16, 16, generator=generator)
    weights = np.array([2.0, 1.0, 1.0, 0.5], dtype=np.float32)
    cross_entropy = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights), ignore_index=IGNORE_INDEX)
    plain = SegmentationLoss(weights, "cpu", "ce")(logits, target)
    both = SegmentationLoss(weights, "cpu", "ce+lovasz")(logits, target)
    assert plain.item() == pytest.approx(cross_entropy(logits, target).item())
    assert both.item() == pytest.approx(plain.item() + lovasz_softmax(logits, target).item())


def test_auto_loss_is_lovasz_for_the_unet_only():
    assert TrainSettings(model="unet").effective_loss == "ce+lovasz"
    assert TrainSettings(model="pixelcnn").effective_loss == "ce"
    assert TrainSettings(model="unet", loss="ce").effective_loss == "ce"
    assert TrainSettings(model="temporal", loss="ce+lovasz").effective_loss == "ce+lovasz"
