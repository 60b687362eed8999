"""Training losses for class labels: cross-entropy, optionally with the Lovász-softmax term.

Cross-entropy scores every pixel alone, so a rare class (water is 4 % of the Brandenburg labels)
is learned with high precision and lower recall, while what analysts read is the IoU. The
Lovász-softmax loss (Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: a tractable
surrogate for the optimization of the intersection-over-union measure in neural networks",
CVPR 2018) is the convex extension of each class's Jaccard loss, so its gradient pushes on the
pixels that cost the most IoU. It is added to cross-entropy (which keeps early training stable),
not used alone.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model_metadata import IGNORE_INDEX


def _lovasz_grad(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss for errors sorted in decreasing order."""
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1.0 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    if sorted_truth.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean over the classes present in ``target`` of the Lovász hinge on softmax probabilities,
    over all labelled pixels of the batch (``logits`` N x K x H x W, ``target`` N x H x W).
    Zero (with a gradient path) when no pixel is labelled."""
    classes = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, classes)
    labels = target.reshape(-1)
    keep = labels != ignore_index
    probs, labels = probs[keep], labels[keep].long()
    if labels.numel() == 0:
        return logits.sum() * 0.0
    losses = []
    for c in range(classes):
        truth = (labels == c).float()
        if truth.sum() == 0:
            continue  # "present" classes only: an absent class has no IoU to lose
        errors = (truth - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(truth[order])))
    return torch.stack(losses).mean()


class SegmentationLoss(torch.nn.Module):
    """Cross-entropy with class weights and the ignore index, plus the Lovász-softmax term when
    ``kind`` is "ce+lovasz" (``TrainSettings.effective_loss``)."""

    def __init__(self, weights: np.ndarray | None, device: str, kind: str = "ce"):
        super().__init__()
        weight = torch.from_numpy(weights).to(device) if weights is not None else None
        self.cross_entropy = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)
        self.lovasz = kind == "ce+lovasz"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.cross_entropy(logits, target)
        if self.lovasz and logits.dim() == 4:
            loss = loss + lovasz_softmax(logits, target)
        return loss
