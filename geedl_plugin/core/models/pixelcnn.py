"""Pixel-based CNN on 7 x 7 neighbourhoods (document 001, Water_gee).

The layer table of document 001, for ``C`` input bands (8 there) and ``K`` classes (2 there)::

    input               7 x 7 x C
    conv 3x3, 16        5 x 5 x 16        (no padding)
    conv 3x3, 32        3 x 3 x 32
    slice centre 3x3 of the input -> concat    3 x 3 x (32 + C)
    conv 3x3, 64        1 x 1 x 64
    slice centre 1x1 of the input -> concat    1 x 1 x (64 + C)
    conv 1x1, 128       1 x 1 x 128
    conv 1x1, K         1 x 1 x K        (logits; softmax in the loss)

With C = 8 and K = 2 this has exactly the 38,514 parameters the table lists. ReLU follows every
convolution but the last.

Fully convolutional use: the same layers run over a whole H x W image give an (H-6) x (W-6)
output, because the convolutions are padding-free; "slice the centre" becomes cropping the input
by 2 (after two convolutions) and 3 (after three) pixels on each side, which aligns every input
pixel with the output pixel it is the centre of. Output pixel (i, j) is then exactly the 7 x 7
prediction for input pixel (i+3, j+3). Whole-image inference (the ONNX export and the torch
validation) reflect-pads the input by 3 pixels (:class:`..base.SamePadding`) so the output keeps
the input's size; border pixels see a mirrored neighbourhood.

Earth Engine (document 001's deployment): every layer maps to one operation: conv ->
``ee.Image.convolve`` per output channel with an ``ee.Kernel.fixed`` built from the weights,
bias added, ``max(0)`` for ReLU; "slice centre and concatenate" -> ``ee.Image.cat(features,
input)``, because Earth Engine convolutions keep the image size, so the input pixel already sits
where the centre slice would put it. The weights are ``conv1`` ... ``conv5`` in
:meth:`PixelCNN.layer_table`, in torch layout (out, in, kh, kw); the concatenation order is
features first, then input bands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GeedlError
from .base import GeedlModel


class PixelCNN(GeedlModel):
    name = "pixelcnn"
    model_type = "segmentation"
    margin = 3  # 7 x 7 window -> 1 x 1

    def __init__(self, in_channels: int, n_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if len(widths) != 4:
            raise GeedlError(
                f"The pixel CNN takes four layer widths (16, 32, 64, 128 by default), got {widths}."
            )
        w1, w2, w3, w4 = (int(w) for w in widths)
        self.config = {"widths": [w1, w2, w3, w4]}
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.conv1 = nn.Conv2d(in_channels, w1, 3)
        self.conv2 = nn.Conv2d(w1, w2, 3)
        self.conv3 = nn.Conv2d(w2 + in_channels, w3, 3)
        self.conv4 = nn.Conv2d(w3 + in_channels, w4, 1)
        self.conv5 = nn.Conv2d(w4, n_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (x.shape[-1] < 7 or x.shape[-2] < 7):
            raise GeedlError("The pixel CNN needs at least a 7 x 7 window.")
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        y = torch.cat([y, x[..., 2:-2, 2:-2]], dim=1)  # slice centre 3x3 -> concatenate
        y = F.relu(self.conv3(y))
        return torch.cat([y, x[..., 3:-3, 3:-3]], dim=1)  # slice centre 1x1 -> concatenate

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv5(F.relu(self.conv4(features)))

    def head_modules(self) -> list[nn.Module]:
        return [self.conv4, self.conv5]

    @property
    def receptive_field(self) -> int:
        return 7

    @property
    def tile_overlap(self) -> int:
        return 8

    def layer_table(self) -> list[tuple[str, str, tuple[int, ...], int]]:
        """(layer, kind, output shape for one 7 x 7 window as H x W x C, parameters): the table
        of document 001, for checking and for the Earth Engine compiler."""
        c, k = self.in_channels, self.n_classes
        w1, w2, w3, w4 = self.config["widths"]

        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        return [
            ("input", "input", (7, 7, c), 0),
            ("conv1", "conv3x3", (5, 5, w1), count(self.conv1)),
            ("conv2", "conv3x3", (3, 3, w2), count(self.conv2)),
            ("slice1", "slice", (3, 3, c), 0),
            ("concat1", "concat", (3, 3, w2 + c), 0),
            ("conv3", "conv3x3", (1, 1, w3), count(self.conv3)),
            ("slice2", "slice", (1, 1, c), 0),
            ("concat2", "concat", (1, 1, w3 + c), 0),
            ("conv4", "conv1x1", (1, 1, w4), count(self.conv4)),
            ("conv5", "conv1x1", (1, 1, k), count(self.conv5)),
        ]
