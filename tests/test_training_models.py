"""The four networks: shapes, document 001's pixel CNN table, SegNet's unpooling, the encoder
transfer, the registry. Small random-free inputs come from the real Brandenburg bands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.models import (
    MODEL_NAMES,
    PixelCNN,
    SamePadding,
    SegNet,
    TemporalCNN,
    UNet,
    build_model,
    load_pretrained_encoder,
    model_spec,
    rebuild_model,
)

torch.set_num_threads(2)

SMALL = {
    "unet": {"depth": 2, "width": 4},
    "segnet": {"depth": 2, "width": 4},
    "pixelcnn": {},
    "temporal": {"time_steps": 3, "width": 8},
}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("bands", [3, 6, 13])
def test_forward_keeps_the_image_size(name, bands):
    in_channels = bands * (3 if name == "temporal" else 1)
    model = build_model(name, in_channels, 5, **SMALL[name]).eval()
    runner = SamePadding(model) if model.margin else model
    for height, width in [(32, 32), (37, 45), (7, 9)]:
        with torch.no_grad():
            out = runner(torch.zeros(2, in_channels, height, width))
        assert out.shape == (2, 5, height, width)


def test_pixel_cnn_follows_document_001_table():
    model = PixelCNN(8, 2)
    table = model.layer_table()
    shapes = [row[2] for row in table]
    assert shapes == [
        (7, 7, 8),
        (5, 5, 16),
        (3, 3, 32),
        (3, 3, 8),
        (3, 3, 40),
        (1, 1, 64),
        (1, 1, 8),
        (1, 1, 72),
        (1, 1, 128),
        (1, 1, 2),
    ]
    assert [row[3] for row in table if row[3]] == [1168, 4640, 23104, 9344, 258]
    assert sum(p.numel() for p in model.parameters()) == 38514
    assert model(torch.zeros(4, 8, 7, 7)).shape == (4, 2, 1, 1)


def test_pixel_cnn_runs_fully_convolutionally(rng_image):
    """Output pixel (i, j) of a whole image equals the 7 x 7 window prediction for (i+3, j+3)."""
    torch.manual_seed(0)
    model = PixelCNN(6, 3).eval()
    image = torch.from_numpy(rng_image[:6, :20, :24])[None]
    with torch.no_grad():
        full = model(image)
        assert full.shape == (1, 3, 14, 18)
        for i, j in [(0, 0), (5, 11), (13, 17)]:
            patch = model(image[..., i : i + 7, j : j + 7])[0, :, 0, 0]
            assert torch.allclose(full[0, :, i, j], patch, atol=1e-5)
        same = SamePadding(model)(image)
    assert same.shape == (1, 3, 20, 24)
    assert torch.allclose(same[..., 3:-3, 3:-3], full, atol=1e-5)


def test_segnet_switch_unpooling_equals_max_unpool():
    x = torch.randn(2, 3, 8, 10)
    pooled, switches = SegNet._pool(x)
    reference_pooled, indices = nn.functional.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(pooled, reference_pooled)
    decoded = torch.randn_like(pooled)
    ours = nn.functional.interpolate(decoded, scale_factor=2.0, mode="nearest") * switches
    reference = nn.functional.max_unpool2d(decoded, indices, 2, output_size=x.shape[-2:])
    assert torch.allclose(ours, reference)


def test_temporal_model_treats_pixels_independently():
    torch.manual_seed(0)
    model = TemporalCNN(12, 4, time_steps=4, width=8, pooling="attention").eval()
    x = torch.randn(1, 12, 5, 6)
    with torch.no_grad():
        whole = model(x)
        single = model(x[..., 2:3, 4:5])
    assert torch.allclose(whole[..., 2:3, 4:5], single, atol=1e-5)
    with pytest.raises(GeedlError, match="whole number of bands"):
        TemporalCNN(10, 4, time_steps=4)


def test_registry_rejects_unknown_names_and_options():
    with pytest.raises(GeedlError, match="Unknown model"):
        build_model("resnet", 3, 2)
    with pytest.raises(GeedlError, match="no option"):
        build_model("unet", 3, 2, widht=8)
    with pytest.raises(GeedlError, match="two classes"):
        build_model("unet", 3, 1)
    model = build_model("unet", 4, 3, depth=2, width=4)
    clone = rebuild_model(model_spec(model))
    assert isinstance(clone, UNet) and clone.config == model.config


def test_pretrained_encoder_loads_freezes_and_checks_bands(tmp_path):
    torch.manual_seed(1)
    source = UNet(6, 3, depth=2, width=4)
    checkpoint = tmp_path / "encoder.ckpt"
    torch.save(
        {"model_state": source.state_dict(), "bands": ["B2", "B3", "B4", "B8", "B11", "B12"]}, checkpoint
    )
    target = UNet(6, 5, depth=2, width=4)
    load_pretrained_encoder(target, checkpoint, freeze=True)
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(target.encoder.state_dict()[key], value)
    assert not any(p.requires_grad for p in target.encoder.parameters())
    assert all(p.requires_grad for p in target.classifier.parameters())
    target.train()
    assert not target.encoder.training  # frozen batch-norm statistics stay fixed
    with pytest.raises(GeedlError, match="expects 6 input bands.*B11.*has 13"):
        load_pretrained_encoder(UNet(13, 3, depth=2, width=4), checkpoint)
    with pytest.raises(GeedlError, match="depth/width"):
        load_pretrained_encoder(UNet(6, 3, depth=2, width=8), checkpoint)


def test_freeze_backbone_leaves_only_the_head_trainable():
    for name in MODEL_NAMES:
        model = build_model(
            name,
            6 if name != "temporal" else 6,
            3,
            **({"time_steps": 2} if name == "temporal" else SMALL[name]),
        )
        model.freeze_backbone()
        trainable = {id(p) for p in model.trainable_parameters()}
        head = {id(p) for m in model.head_modules() for p in m.parameters()}
        assert trainable == head and head


@pytest.fixture(scope="module")
def rng_image(tmp_path_factory):
    """Real reflectances (not random numbers) from the Brandenburg sample, standardised."""
    from fixtures_training import build_brandenburg_image

    path = build_brandenburg_image(tmp_path_factory.mktemp("img") / "img.tif", window=(300, 450, 32, 32))
    from osgeo import gdal

    array = gdal.Open(str(path)).ReadAsArray().astype(np.float32)
    return (array - array.mean(axis=(1, 2), keepdims=True)) / (array.std(axis=(1, 2), keepdims=True) + 1e-6)
