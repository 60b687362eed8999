"""Temporal 1D CNN over each pixel's time series (document 003), optional attention pooling.

Source: document 003 (LULC mapping with 1D convolutions over monthly Sentinel-2 data cubes, time
x bands x height x width, optional attention), in the style of TempCNN (Pelletier, Webb &
Petitjean 2019, "Temporal Convolutional Neural Network for the Classification of Satellite
Image Time Series").

Layout: the input is ``N x (T * C) x H x W``, time-major (all C bands of step 0, then step 1,
...), the layout :mod:`..model_metadata` prescribes for temporal models. Inside, it is viewed as
``N x C x T x H x W`` and the 1D convolutions over time are 3D convolutions with kernel
``(k, 1, 1)``: each pixel is processed on its own, no spatial mixing, and the whole model stays
fully convolutional over images (dynamic H and W in ONNX) with no per-pixel reshaping.

Pooling over time:
- ``flatten`` (default): the T feature vectors are concatenated and mixed by a 1 x 1 layer, so
  the model knows which date is which (needed when the label belongs to one date of the window);
- ``attention``: a learned score per time step (softmax over time) weights the features, with a
  learned per-step embedding so attention can depend on the date as well as on the content;
- ``mean``: average over time (order-free, e.g. for land cover from a whole year).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import GeedlError
from .base import GeedlModel

POOLINGS = ("flatten", "attention", "mean")


class TemporalCNN(GeedlModel):
    name = "temporal"
    model_type = "temporal"

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        time_steps: int = 1,
        width: int = 64,
        layers: int = 3,
        kernel: int = 3,
        pooling: str = "flatten",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        time_steps = int(time_steps)
        if time_steps < 1 or in_channels % time_steps:
            raise GeedlError(
                f"The temporal model got {in_channels} input bands, which is not a whole number of bands "
                f"per time step for {time_steps} steps. Stack the same bands for every date."
            )
        if pooling not in POOLINGS:
            raise GeedlError(f"Temporal pooling {pooling!r} is not one of {', '.join(POOLINGS)}.")
        if layers < 1 or width < 1 or kernel < 1 or kernel % 2 == 0:
            raise GeedlError(
                "The temporal model needs at least one layer, a positive width and an odd kernel."
            )
        self.config = {
            "time_steps": time_steps,
            "width": int(width),
            "layers": int(layers),
            "kernel": int(kernel),
            "pooling": pooling,
            "dropout": float(dropout),
        }
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.time_steps = time_steps
        self.bands = in_channels // time_steps
        self.pooling = pooling
        blocks: list[nn.Module] = []
        previous = self.bands
        for _ in range(layers):
            blocks += [
                nn.Conv3d(previous, width, (kernel, 1, 1), padding=(kernel // 2, 0, 0), bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
            ]
            previous = width
        self.temporal = nn.Sequential(*blocks)
        if pooling == "attention":
            self.step_embedding = nn.Parameter(torch.zeros(1, width, time_steps, 1, 1))
            self.score = nn.Conv3d(width, 1, 1)
        mixed_in = width * time_steps if pooling == "flatten" else width
        self.mix = nn.Sequential(
            nn.Conv2d(mixed_in, width * 2, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
        )
        self.classifier = nn.Conv2d(width * 2, n_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        cube = x.reshape(n, self.time_steps, self.bands, height, width).transpose(1, 2)  # N C T H W
        y = self.temporal(cube)
        if self.pooling == "flatten":
            pooled = y.reshape(n, -1, height, width)  # channel-major, time-minor
        elif self.pooling == "attention":
            y = y + self.step_embedding
            weights = torch.softmax(self.score(y), dim=2)
            pooled = (y * weights).sum(dim=2)
        else:
            pooled = y.mean(dim=2)
        return self.mix(pooled)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def head_modules(self) -> list[nn.Module]:
        return [self.classifier]

    @property
    def receptive_field(self) -> int:
        return 1

    @property
    def tile_overlap(self) -> int:
        return 0  # pixels are independent
