"""U-Net for per-pixel classification of multi-band composites.

Source: Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical Image
Segmentation", as used for crop-type mapping in document 002 (there with an ImageNet
InceptionResNetV2 encoder) and for the labels of document 000. Plain torch, no torchvision: the
encoder is ``depth`` stages of two 3 x 3 conv-BN-ReLU layers (``width``, 2 x ``width``, ...) with
2 x 2 max pooling, the decoder mirrors it with transposed convolutions and skip concatenation.

Transfer learning (document 002): ImageNet RGB weights do not fit 6- or 13-band reflectance, so
the pretrained encoder comes from a user checkpoint, normally a geedl U-Net trained on labels of
another region with the same bands. :func:`load_pretrained_encoder` copies its ``encoder.*``
weights and can freeze them; a checkpoint with another band count or shape is refused with a
:class:`GeedlError` that says which bands it expects.

Any input size works: the input is padded (edge replication) to a multiple of ``2**depth`` and
the output cropped back, inside the graph, so the exported ONNX model takes any tile size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import GeedlError
from .base import GeedlModel, conv_bn_relu, pad_to_multiple


def double_conv(in_channels: int, out_channels: int, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [
        conv_bn_relu(in_channels, out_channels),
        conv_bn_relu(out_channels, out_channels),
    ]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class UNetEncoder(nn.Module):
    """The contracting path; kept as one module so it can be loaded and frozen as a unit."""

    def __init__(self, in_channels: int, depth: int, width: int, dropout: float) -> None:
        super().__init__()
        channels = [width * 2**i for i in range(depth + 1)]
        self.blocks = nn.ModuleList()
        previous = in_channels
        for level, out in enumerate(channels):
            self.blocks.append(double_conv(previous, out, dropout if level == depth else 0.0))
            previous = out
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for level, block in enumerate(self.blocks):
            if level:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        return skips


class UNet(GeedlModel):
    name = "unet"
    model_type = "segmentation"

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        depth: int = 4,
        width: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise GeedlError(f"U-Net depth ({depth}) and width ({width}) must be at least 1.")
        self.config = {"depth": int(depth), "width": int(width), "dropout": float(dropout)}
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.depth = int(depth)
        self.encoder = UNetEncoder(in_channels, depth, width, dropout)
        channels = [width * 2**i for i in range(depth + 1)]
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2))
            self.decoder.append(double_conv(2 * channels[level], channels[level]))
        self.classifier = nn.Conv2d(width, n_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        skips = self.encoder(pad_to_multiple(x, 2**self.depth))
        y = skips[-1]
        for up, block, skip in zip(self.ups, self.decoder, reversed(skips[:-1])):
            y = block(torch.cat([up(y), skip], dim=1))
        return y[..., :height, :width]

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def head_modules(self) -> list[nn.Module]:
        return [self.classifier]

    @property
    def receptive_field(self) -> int:
        # two 3x3 convs per level on the way down and up; each pooling doubles the step
        return 1 + sum(4 * 2**level for level in range(self.depth)) * 2 + 4 * 2**self.depth

    @property
    def tile_overlap(self) -> int:
        return max(32, 2**self.depth * 2)

    def freeze_encoder(self) -> None:
        self.freeze([self.encoder])


def _encoder_state(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` tensors of a geedl checkpoint or a plain state dict."""
    state = checkpoint
    if isinstance(checkpoint, dict):
        for key in ("model_state", "state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                state = checkpoint[key]
                break
    if not isinstance(state, dict):
        raise GeedlError(
            f"{source} is not a model checkpoint (expected a state dict with encoder.* weights)."
        )
    encoder = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        raise GeedlError(
            f"{source} holds no U-Net encoder weights (no 'encoder.*' keys). Use a checkpoint written "
            "by 'python -m geedl_plugin train --model unet' (the .pt file beside the model)."
        )
    return encoder


def load_pretrained_encoder(
    model: UNet, checkpoint_path: str | Path, freeze: bool = False, band_names: list[str] | None = None
) -> None:
    """Copy a pretrained encoder into ``model`` (transfer learning, document 002).

    Raises GeedlError when the checkpoint was trained on another number of bands or another
    U-Net width/depth, naming what it expects.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise GeedlError(f"Pretrained encoder checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for damaged files
        raise GeedlError(f"Cannot read {path.name} as a torch checkpoint: {exc}") from exc
    encoder = _encoder_state(checkpoint, path.name)
    first = encoder.get("blocks.0.0.0.weight")
    if first is None:
        raise GeedlError(f"{path.name} is not a geedl U-Net encoder (no first convolution found).")
    if first.shape[1] != model.in_channels:
        saved_bands = checkpoint.get("bands") if isinstance(checkpoint, dict) else None
        expected = f" ({', '.join(saved_bands)})" if saved_bands else ""
        have = f" ({', '.join(band_names)})" if band_names else ""
        raise GeedlError(
            f"The pretrained encoder in {path.name} expects {first.shape[1]} input bands{expected}, "
            f"but the image has {model.in_channels}{have}. Build the composite with the same bands "
            "as the model was trained on, or train without --pretrained-encoder."
        )
    own = model.encoder.state_dict()
    mismatched = [k for k, v in encoder.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in encoder]
    if mismatched or missing:
        raise GeedlError(
            f"The encoder in {path.name} has another U-Net shape (depth/width) than this model "
            f"(depth {model.depth}, width {model.config['width']}); set --depth/--width to the values "
            "it was trained with."
        )
    model.encoder.load_state_dict(encoder)
    if freeze:
        model.freeze_encoder()
