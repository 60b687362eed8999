"""Spatial k-fold cross-validation on the real Brandenburg labels (OSM land use).

Every labelled block is held out exactly once, fold 0 is the ordinary single split, every fold
holds about its share of every class, and a trainer given one fold scores exactly that fold.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_training import build_brandenburg_image, rasterize_osm

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.model_metadata import IGNORE_INDEX
from geedl_plugin.core.training import TrainSettings, load_training_data, train_on_data
from geedl_plugin.core.training.split import block_folds, block_split

RECIPE = {"bands": ["B2", "B11"], "indices": [], "reducer": "max", "scale": 10.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("folds")
    image = build_brandenburg_image(folder / "composite.tif", recipe=RECIPE)
    labels, _names = rasterize_osm(image, folder / "labels.tif")
    return load_training_data(image, labels)


def test_folds_hold_out_every_labelled_block_once(data):
    folds = block_folds(data.scenes, data.n_classes, folds=4, block_size=64, seed=0)
    assert len(folds) == 4
    blocks = [set(f.val_blocks) for f in folds]
    assert all(a.isdisjoint(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    assert sum(len(b) for b in blocks) == folds[0].n_blocks
    label = data.scenes[0].label
    labelled = label != IGNORE_INDEX
    held = sum(f.val_masks[0].astype(int) for f in folds)
    assert (held[labelled] == 1).all()  # each labelled pixel scored in exactly one fold
    single = block_split(data.scenes, data.n_classes, block_size=64, val_fraction=0.25, seed=0)
    assert np.array_equal(single.val_masks[0], folds[0].val_masks[0])
    for fold in folds[:-1]:  # the stratified draws; the last fold is what is left
        assert all(0.12 < share < 0.38 for share in fold.val_share), fold.val_share
    with pytest.raises(GeedlError, match="at least 2 folds"):
        block_folds(data.scenes, data.n_classes, folds=1)


def test_trainer_scores_the_fold_it_is_given(data, tmp_path):
    fold = block_folds(data.scenes, data.n_classes, folds=4, block_size=64, seed=0)[2]
    data.validation = fold
    try:
        settings = TrainSettings(model="pixelcnn", epochs=1, samples_per_epoch=512, batch_size=128,
                                 block_size=64, threads=2, device="cpu")
        result = train_on_data(data, settings, tmp_path / "fold.onnx")
    finally:
        data.validation = None
    label = data.scenes[0].label
    expected = int((fold.val_masks[0] & (label != IGNORE_INDEX)).sum())
    assert int(np.sum(result.metrics["confusion_matrix"])) == expected
    assert result.metrics["scored_on"] and expected > 0
