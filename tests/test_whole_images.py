"""Whole-image evaluation: every image of the split, uncropped, at the top left of a fixed
canvas (image padded with 0.0 after normalizing, label with the ignore index), list order,
nothing dropped; on both backends, equal to the images' own pixels and labels."""

import numpy as np
import pytest
import torch

from dali_voc import OptionError, load_data_voc
from dali_voc.tools.synth import SynthSpec, synthesize_voc
from dali_voc.datasets.scan import scan_samples
from dali_voc.datasets.voc import VOCLayout
from tests.helpers import (CPU_IMAGE_TOLERANCE, class_stripes, config_for, coordinate_rgb, loader_for, make_tree,
                           raw_image)

SHAPES = [(375, 500), (500, 375), (300, 500), (512, 512), (200, 300), (333, 511)]


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_every_image_whole_on_the_canvas(tmp_path, backend):
    make_tree(tmp_path, SHAPES, split="val", label_fn=class_stripes)
    config = config_for(tmp_path, backend, batch_size=4, void_label="ignore", return_meta=True)
    loader = loader_for(config.whole_image(), split="val")
    batches = list(loader)
    assert [len(b.ids) for b in batches] == [4, 2]  # list order, the last partial batch kept
    assert sum((b.ids.tolist() for b in batches), []) == list(range(len(SHAPES)))
    for batch in batches:
        assert batch.images.shape[-2:] == (512, 512) and (batch.windows == 0).all()
        for x, y, index in zip(batch.images, batch.labels, batch.ids.tolist()):
            h, w = SHAPES[index]
            assert np.array_equal(raw_image(x[:, :h, :w].numpy()), coordinate_rgb(h, w, index))  # the image's pixels
            assert (x[:, h:] == 0).all() and (x[:, :, w:] == 0).all()  # padding: the mean
            assert np.array_equal(y[:h, :w].numpy(), class_stripes(index, h, w))  # void kept as 255 (ignore)
            assert (y[h:] == 255).all() and (y[:, w:] == 255).all()


def test_both_backends_give_the_same_whole_images(tmp_path):
    make_tree(tmp_path, SHAPES, split="val", label_fn=class_stripes)
    got = {}
    for backend in ("reference", "dali"):
        config = config_for(tmp_path, backend, batch_size=3, return_meta=True)
        got[backend] = [tuple(t.clone() for t in b) for b in loader_for(config.whole_image(), split="val")]
    for (x_ref, y_ref, *_), (x, y, *_) in zip(got["reference"], got["dali"]):
        assert torch.equal(y, y_ref) and (x - x_ref).abs().max() <= CPU_IMAGE_TOLERANCE


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_an_image_larger_than_the_canvas_is_named(tmp_path, backend):
    make_tree(tmp_path, SHAPES + [(360, 640)], split="val")
    with pytest.raises(OptionError, match=r"1 image\(s\) larger than the 512x512 canvas.*s_0006\.jpg \(360x640\)"):
        loader_for(config_for(tmp_path, backend).whole_image(), split="val")


def test_load_data_voc_whole_validation(tmp_path):
    for split in ("train", "val"):
        make_tree(tmp_path, SHAPES, split=split, label_fn=class_stripes)
    train_iter, test_iter = load_data_voc(2, (128, 128), root=tmp_path, backend="reference", val_mode="whole",
                                          verbose=False, num_workers=0)
    assert len(test_iter) == 3 and next(iter(test_iter))[0].shape == (2, 3, 512, 512)
    assert next(iter(train_iter))[0].shape == (2, 3, 128, 128)


@pytest.mark.slow  # writes a VOC-sized val split (1,449 images) and loads all of it at 512x512
def test_a_voc_sized_val_split_is_covered_exactly_once(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc-val")
    synthesize_voc(root, SynthSpec(num_train=1, num_val=1449), workers=2, progress=False)
    sizes = {s.index: (s.height, s.width) for s in scan_samples(VOCLayout.locate(root), "val")}
    config = config_for(root, "dali", batch_size=32, void_label="ignore", return_meta=True).whole_image()
    loader = loader_for(config, split="val")
    seen = []
    for batch in loader:
        for x, y, index in zip(batch.images, batch.labels, batch.ids.tolist()):
            h, w = sizes[index]
            assert (x[:, h:] == 0).all() and (x[:, :, w:] == 0).all()
            assert (y[h:] == 255).all() and (y[:, w:] == 255).all() and (y[:h, :w] != 255).any()
            seen.append(index)
    assert sorted(seen) == list(range(1449)) and len(seen) == 1449 and len(loader) == 46
