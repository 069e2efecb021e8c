import numpy as np
import pytest
import torch

from dali_voc import ReferenceLoader, SampleDecodeError, UnknownColorError
from dali_voc.config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig
from dali_voc.loaders.reference import VOCSegmentation, normalize_image
from dali_voc.geometry.windows import CropWindow
from tests.helpers import class_stripes, config_for, make_tree


def _config(root, **kw):
    return config_for(root, "reference", **kw)


def test_batch_shapes_dtypes_and_ranges(synth_root):
    loader = ReferenceLoader(_config(synth_root, batch_size=4), "train", shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 320, 480) and x.dtype == torch.float32
    assert y.shape == (4, 320, 480) and y.dtype == torch.int64
    assert -2.2 < x.min() and x.max() < 2.7
    assert y.min() >= 0 and y.max() <= 20  # void -> background by default
    assert len(loader) == loader.selection.kept // 4


def test_normalization_values(tmp_path):
    color = (200, 100, 50)
    make_tree(tmp_path, [(330, 490)], image_fn=lambda i, h, w: np.full((h, w, 3), color, np.uint8),
              label_fn=lambda i, h, w: np.zeros((h, w), np.uint8))
    x, y = VOCSegmentation(_config(tmp_path), "train")[0]
    expected = [(c / 255 - m) / s for c, m, s in zip(color, IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(x[:, 0, 0], torch.tensor(expected), atol=1e-6)
    assert (y == 0).all()


def test_normalization_gives_the_arithmetic_bits_for_every_level_and_a_mirrored_view():
    """The table lookup of ``normalize_image`` against the definition computed in float32:
    equal bit for bit on all 256 levels of each channel, also through a mirrored (negative
    stride) view as flips pass it."""
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack([levels, levels[::-1], np.roll(levels, 77)], axis=-1).reshape(16, 16, 3)
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    for view in (rgb, rgb[:, ::-1]):
        expected = ((view.astype(np.float32) / np.float32(255.0) - mean) / std).transpose(2, 0, 1)
        got = normalize_image(view)
        assert got.dtype == np.float32 and got.shape == (3, 16, 16) and got.flags.c_contiguous
        assert np.array_equal(got.view(np.uint32), np.ascontiguousarray(expected).view(np.uint32))


def test_same_seed_same_batches_other_seed_other_batches(synth_root):
    def first_batches(seed):
        loader = ReferenceLoader(_config(synth_root, batch_size=4, seed=seed), "train", shuffle=True)
        return [next(iter(loader)) for _ in range(2)]  # two epochs
    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])  # a new epoch: new order and windows


def test_explicit_window_and_void_policies(stripe_tree):
    ds_bg = VOCSegmentation(_config(stripe_tree), "train")
    ds_ign = VOCSegmentation(_config(stripe_tree, void_label="ignore"), "train")
    window = CropWindow(3, 5)
    _, y_bg = ds_bg.load(0, window)
    _, y_ign = ds_ign.load(0, window)
    stripes = class_stripes(0, 375, 500)[3:323, 5:485]
    expected_bg = np.where(stripes == 255, 0, stripes)
    expected_ign = stripes.astype(np.int64)
    assert np.array_equal(y_bg.numpy(), expected_bg)
    assert np.array_equal(y_ign.numpy(), expected_ign)


def test_pad_policy_pads_image_with_mean_and_label_with_ignore(stripe_tree):
    ds = VOCSegmentation(_config(stripe_tree, small_images="pad"), "train")
    assert len(ds) == 8
    idx = [s.name for s in ds.samples].index("s_0003")  # 300x500: 20 rows short
    x, y = ds.load(idx, CropWindow(-7, 10))
    assert (x[:, :7] == 0).all() and (x[:, 307:] == 0).all()
    assert (y[:7] == 255).all() and (y[307:] == 255).all()
    assert (x[:, 7:307] != 0).any() and (y[7:307] != 255).all()


def test_unknown_colors_counted_or_raised(tmp_path):
    make_tree(tmp_path, [(330, 490)], label_fn=lambda i, h, w: np.full((h, w, 3), (1, 2, 3), np.uint8))
    ds = VOCSegmentation(_config(tmp_path), "train")
    _, y = ds[0]
    assert (y == 255).all() and ds.unknown_pixels == 320 * 480
    strict = VOCSegmentation(_config(tmp_path, unknown_colors="raise"), "train")
    with pytest.raises(UnknownColorError, match=r"s_0000\.png holds color \(1, 2, 3\)"):
        strict[0]


def test_workers_share_unknown_counts(tmp_path):
    make_tree(tmp_path, [(330, 490)] * 4, label_fn=lambda i, h, w: np.full((h, w, 3), (9, 9, 9), np.uint8))
    loader = ReferenceLoader(_config(tmp_path, batch_size=2, num_workers=2), "train", shuffle=False)
    assert sum(x.shape[0] for x, _ in loader) == 4
    assert loader.unknown_pixels == 4 * 320 * 480


def test_last_batch_policies_and_shards(synth_root):
    drop = ReferenceLoader(_config(synth_root, batch_size=7), "train", shuffle=True)
    part = ReferenceLoader(_config(synth_root, batch_size=7, last_batch="partial"), "train", shuffle=True)
    n = drop.selection.kept
    assert len(drop) == n // 7 and len(part) == -(-n // 7)
    assert sum(x.shape[0] for x, _ in part) == n
    shards = [ReferenceLoader(_config(synth_root, batch_size=1, shard_id=k, num_shards=3, last_batch="partial",
                                      return_meta=True), "train", shuffle=True) for k in range(3)]
    seen = [[i for batch in s for i in batch.ids.tolist()] for s in shards]
    flat = sorted(i for part in seen for i in part)
    assert flat == sorted(s.index for s in shards[0].selection.samples)


def test_textbook_front_door(synth_root):
    from dali_voc import load_data_voc
    train_iter, test_iter = load_data_voc(4, (320, 480), root=synth_root, backend="reference", verbose=False,
                                          num_workers=0)
    x, y = next(iter(test_iter))
    assert x.shape == (4, 3, 320, 480) and y.shape == (4, 320, 480)
    assert isinstance(train_iter, ReferenceLoader) and train_iter.shuffle and not test_iter.shuffle


def test_config_errors_list_valid_values():
    with pytest.raises(ValueError, match="small_images='crop'.*'drop', 'pad'"):
        LoaderConfig(root=".", small_images="crop")
    with pytest.raises(ValueError, match="crop_size"):
        LoaderConfig(root=".", crop_size=320)
    with pytest.raises(ValueError, match="shard_id"):
        LoaderConfig(root=".", shard_id=3, num_shards=2)


def test_decode_error_names_the_file(tmp_path):
    voc = make_tree(tmp_path, [(330, 490)])
    path = voc / "JPEGImages" / "s_0000.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated: header intact, pixels cut
    ds = VOCSegmentation(_config(tmp_path), "train")
    with pytest.raises(SampleDecodeError, match="s_0000.jpg"):
        ds[0]


def test_shards_come_from_torch_distributed_when_initialised(monkeypatch):
    import torch.distributed as dist

    from dali_voc import resolve

    def shard(config):
        resolved = resolve(config)
        return resolved.shard_id, resolved.num_shards
    assert shard(_config(".")) == (0, 1)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    assert shard(_config(".")) == (2, 4)
    assert shard(_config(".", shard_id=0, num_shards=2)) == (0, 2)  # explicit settings win
