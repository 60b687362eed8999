"""SegNet encoder-decoder for segmentation (document 004).

Source: Badrinarayanan, Kendall & Cipolla (2015), "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", as implemented in Keras in document 004 (there for the
ISPRS Potsdam/Vaihingen contest and Sentinel-2 cropland mapping with CDL/AAFC/LUCAS labels).

A VGG-like encoder (stages of 3 x 3 conv-BN-ReLU, 2 x 2 max pooling) remembers where each
pooling window's maximum was; the decoder upsamples with those *pooling indices* (no learned
upsampling, no skip concatenation as in U-Net) followed by convolutions, and a per-pixel
soft-max classifier (a 1 x 1 convolution giving logits) ends it.

Pooling indices are kept as a switch mask (1 where a pixel was its window's maximum). Unpooling
is nearest upsampling times the mask, which equals MaxUnpool2d except where two pixels of a
window tie exactly; it is written this way because torch's ONNX exporter has no MaxUnpool
conversion, and it keeps H and W dynamic. Inputs are padded to a multiple of ``2**depth`` and
the output cropped back inside the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GeedlError
from .base import GeedlModel, conv_bn_relu, pad_to_multiple

# convolutions per stage as in SegNet's VGG16 encoder (2, 2, 3, 3, 3)
STAGE_CONVS = (2, 2, 3, 3, 3)


def _stage(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers = [conv_bn_relu(in_channels, out_channels)]
    layers += [conv_bn_relu(out_channels, out_channels) for _ in range(convs - 1)]
    return nn.Sequential(*layers)


class SegNet(GeedlModel):
    name = "segnet"
    model_type = "segmentation"

    def __init__(self, in_channels: int, n_classes: int, depth: int = 4, width: int = 32) -> None:
        super().__init__()
        if not 1 <= depth <= len(STAGE_CONVS) or width < 1:
            raise GeedlError(
                f"SegNet depth must be 1 to {len(STAGE_CONVS)} and width positive (got {depth}, {width})."
            )
        self.config = {"depth": int(depth), "width": int(width)}
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.depth = int(depth)
        channels = [width * 2 ** min(i, 3) for i in range(depth)]
        self.encoder = nn.ModuleList()
        previous = in_channels
        for stage in range(depth):
            self.encoder.append(_stage(previous, channels[stage], STAGE_CONVS[stage]))
            previous = channels[stage]
        self.decoder = nn.ModuleList()
        for stage in reversed(range(depth)):
            out = channels[stage - 1] if stage else width
            convs = STAGE_CONVS[stage]
            layers = [conv_bn_relu(channels[stage], channels[stage]) for _ in range(convs - 1)]
            layers.append(conv_bn_relu(channels[stage], out))
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(width, n_classes, 1)

    @staticmethod
    def _pool(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = F.max_pool2d(x, 2)
        switches = (x == F.interpolate(pooled, scale_factor=2.0, mode="nearest")).to(x.dtype)
        return pooled, switches

    def features(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        y = pad_to_multiple(x, 2**self.depth)
        switches = []
        for stage in self.encoder:
            y, mask = self._pool(stage(y))
            switches.append(mask)
        for stage, mask in zip(self.decoder, reversed(switches)):
            y = stage(F.interpolate(y, scale_factor=2.0, mode="nearest") * mask)
        return y[..., :height, :width]

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def head_modules(self) -> list[nn.Module]:
        return [self.classifier]

    @property
    def receptive_field(self) -> int:
        return 1 + sum(2 * STAGE_CONVS[s] * 2**s * 2 for s in range(self.depth))

    @property
    def tile_overlap(self) -> int:
        return max(32, 2**self.depth * 2)
