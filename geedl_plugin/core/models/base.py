"""What every geedl network shares, so training, export and fine-tuning treat them alike.

Each model splits into ``features`` (the backbone) and ``head`` (the last, cheap layers). The
split lets the fast retrain after corrections freeze the backbone, compute its features once and
fit only the head (seconds on a CPU), and lets a pretrained encoder be frozen for transfer
learning. ``margin`` says how many border pixels a forward pass loses on each side (padding-free
convolutions, the pixel CNN of document 001); exported models wrap it in :class:`SamePadding` so
every ONNX model maps ``N x C x H x W`` to ``N x K x H x W``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class GeedlModel(nn.Module):
    """Base class: ``forward(x) = head(features(x))`` plus the facts export needs."""

    #: registry name (``unet``, ``pixelcnn``, ``temporal``, ``segnet``)
    name: str = ""
    #: ``segmentation`` or ``temporal`` (the ModelMetadata.model_type)
    model_type: str = "segmentation"
    #: pixels lost on each side by padding-free convolutions
    margin: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}
        self._frozen: list[nn.Module] = []

    # -- the split ---------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def head_modules(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # -- facts for export and tiling ---------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        """Approximate receptive field in pixels (how much context one output pixel sees)."""
        return 1 + 2 * self.margin

    @property
    def tile_overlap(self) -> int:
        """Overlap the tiled inference runner should use so tile seams do not show."""
        return max(8, self.margin * 2)

    # -- freezing ----------------------------------------------------------------------------
    def freeze(self, modules: list[nn.Module]) -> None:
        """Stop training ``modules``: no gradients, and batch-norm statistics fixed (eval mode)."""
        for module in modules:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            module.eval()
            self._frozen.append(module)

    def freeze_backbone(self) -> None:
        """Freeze everything except the head (fast retrain from corrections)."""
        head_params = {id(p) for module in self.head_modules() for p in module.parameters()}
        leaves = [m for m in self.modules() if not list(m.children()) and m is not self]
        self.freeze([m for m in leaves if not any(id(p) in head_params for p in m.parameters())])
        for parameter in self.parameters():  # parameters held directly by a container module
            if id(parameter) not in head_params:
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> GeedlModel:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)


class SamePadding(nn.Module):
    """Reflect-pad a padding-free model's input by its margin so output size equals input size.

    Used for export and whole-image prediction of the pixel CNN: each border pixel is classified
    from a mirrored 7 x 7 neighbourhood, the usual choice for image borders (the inference runner
    overlaps tiles, so only the outer border of the whole raster relies on it).
    """

    def __init__(self, model: GeedlModel) -> None:
        super().__init__()
        self.model = model
        self.margin = int(model.margin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.margin:
            x = F.pad(x, (self.margin,) * 4, mode="reflect")
        return self.model(x)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right by edge replication to a multiple of ``multiple`` (exports to ONNX Pad
    with sizes computed from the input shape, so dynamic H/W keep working)."""
    if multiple <= 1:
        return x
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    """Convolution, batch norm, ReLU. Batch norm (not group/instance norm) on purpose: at
    inference it uses fixed statistics, so a pixel's output does not depend on the tile size
    or on what else is in the tile (group norm trained on 48 px chips scored worse on 256 px
    validation tiles in the Brandenburg study, and would show tile seams)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
