"""Packed data in a local folder (``python -m dali_voc pack``): the manifest and shards describe
each other, and both loaders give from the shards what they give from the unpacked tree.

* reference loader: the same batches, bit for bit (its order and windows are functions of
  ``(seed, epoch, sample)``, wherever the bytes come from);
* DALI loader (webdataset reader): every label equal to the reference path's on the unpacked
  tree at DALI's reported geometry, each sample once per epoch, over several epochs.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile

import pytest
import torch

from dali_voc.storage import stores as storage
from dali_voc.datasets.packed import MANIFEST_NAME, load_manifest
from dali_voc.storage import MemberRef
from dali_voc.geometry.windows import CropWindow
from dali_voc.tools.pack import pack_tree, parse_size
from tests.helpers import config_for, image_levels, loader_for, require_dali, CPU_IMAGE_TOLERANCE

SHARD = 600_000  # a few shards per split of the synthetic tree (about 100 KB per sample)
CROP = (200, 240)


@pytest.fixture(scope="module")
def packed(synth_root, tmp_path_factory):
    dest = tmp_path_factory.mktemp("packed")
    pack_tree(synth_root, str(dest), splits=["train", "val"], shard_bytes=SHARD, workers=2, progress=False)
    return dest


def _batches(loader, epochs=2):
    out = []
    for _ in range(epochs):
        out.append([b for b in loader])
    return out


def test_manifest_records_every_sample_and_the_shards_as_they_are(synth_root, packed):
    manifest = load_manifest(packed)
    assert manifest["dataset"] == "voc" and manifest["image_ext"] == "jpg" and manifest["label_ext"] == "png"
    for split, listed in (("train", 40), ("val", 16)):
        record = manifest["splits"][split]
        assert record["listed"] == listed and len(record["samples"]) == listed and record["skipped"] == []
        assert len(record["shards"]) > 1
        assert sum(s["samples"] for s in record["shards"]) == listed
        members = {}
        for k, shard in enumerate(record["shards"]):
            data = (packed / shard["name"]).read_bytes()
            assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
            with tarfile.open(packed / shard["name"]) as tf:
                for m in tf.getmembers():
                    members[m.name] = (k, m.offset_data, m.size)
            index = (packed / shard["index"]).read_text().splitlines()
            assert index[0] == f"v1.2 {shard['samples']}" and len(index) == shard["samples"] + 1
        voc = synth_root / "VOCdevkit" / "VOC2012"
        names = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        assert [r["name"] for r in record["samples"]] == names
        for r in record["samples"]:
            for ext, key, folder in (("jpg", "image", "JPEGImages"), ("png", "label", "SegmentationClass")):
                shard, offset, size = members[f"{r['name']}.{ext}"]
                assert (shard, offset, size) == (r["shard"], *r[key])
                ref = MemberRef(str(packed), record["shards"][shard]["name"], f"{r['name']}.{ext}", offset, size)
                assert storage.LocalStore(packed).read_range(ref.shard, offset, size) == (
                    voc / folder / f"{r['name']}.{ext}").read_bytes()


def test_parse_size():
    assert parse_size("256MB") == 256_000_000 and parse_size("1GiB") == 1 << 30 and parse_size("10kb") == 10_000
    with pytest.raises(ValueError):
        parse_size("lots")


@pytest.mark.parametrize("augment", ["textbook", "torchvision", "mmseg"])
def test_reference_loader_gives_the_same_batches_from_the_shards(synth_root, packed, augment):
    options = dict(batch_size=4, crop_size=CROP, augment=augment, return_meta=True)
    tree = loader_for(config_for(synth_root, "reference", **options), shuffle=True)
    shards = loader_for(config_for(packed, "reference", **options), shuffle=True)
    assert len(tree) == len(shards) and tree.selection.kept == shards.selection.kept
    for want_epoch, got_epoch in zip(_batches(tree), _batches(shards)):
        assert len(want_epoch) == len(got_epoch)
        for want, got in zip(want_epoch, got_epoch):
            for a, b in zip(want, got):
                assert torch.equal(a, b)


@pytest.mark.parametrize("policy", ["drop", "pad"])
def test_kept_counts_equal_the_trees(synth_root, packed, policy):
    crop = (400, 480)  # leaves some of the synthetic images out under "drop"
    for backend in ("reference", "dali"):
        if backend == "dali":
            require_dali()
        tree = loader_for(config_for(synth_root, backend, batch_size=2, crop_size=crop, small_images=policy))
        shards = loader_for(config_for(packed, backend, batch_size=2, crop_size=crop, small_images=policy,
                                       last_batch="partial", return_meta=True), shuffle=True)
        assert [s.index for s in tree.selection.samples] == [s.index for s in shards.selection.samples]
        assert tree.selection.total == shards.selection.total and tree.selection.dropped == shards.selection.dropped
        assert sorted(i for b in shards for i in b.ids.tolist()) == [s.index for s in tree.selection.samples]
    assert policy == "pad" or tree.selection.dropped > 0, "the crop leaves some samples out"


@pytest.mark.parametrize("backend", ["dali", pytest.param("dali-gpu-stock", marks=pytest.mark.gpu),
                                     pytest.param("dali-gpu-nvcomp", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("augment", ["textbook", "torchvision"])
def test_dali_labels_from_the_shards_equal_the_tree_at_the_same_windows(synth_root, packed, augment, backend):
    """Three epochs of the DALI loader over the shards: each label equals the reference path's
    on the unpacked tree at DALI's drawn window (scale, flip), images within the CPU bound
    (textbook, CPU operators; the GPU decoders' bounds are tests/test_gpu.py's) and each
    sample exactly once per epoch."""
    require_dali()
    options = dict(batch_size=4, crop_size=CROP, augment=augment, return_meta=True, last_batch="partial")
    loader = loader_for(config_for(packed, backend, **options), shuffle=True)
    reference = loader_for(config_for(synth_root, "reference", **options), shuffle=True).dataset
    position = {s.index: i for i, s in enumerate(reference.samples)}
    orders = []
    for epoch in range(3):
        seen = []
        for batch in loader:
            for k, index in enumerate(batch.ids.tolist()):
                x, y = reference.load(position[index], CropWindow(*batch.windows[k].tolist()),
                                      tuple(batch.scaled[k].tolist()), bool(batch.flips[k]))
                assert torch.equal(batch.labels[k].cpu(), y), (epoch, index)
                if augment == "textbook" and backend == "dali":
                    assert float(image_levels(batch.images[k] - x).abs().max()) <= CPU_IMAGE_TOLERANCE * 255
            seen += batch.ids.tolist()
        assert sorted(seen) == [s.index for s in reference.samples], f"epoch {epoch}: each sample once"
        orders.append(seen)
    assert orders[0] != orders[1], "a new order each epoch"


def test_dali_loader_over_shards_is_reproducible_and_resumes_from_its_state(packed):
    require_dali()
    config = config_for(packed, "dali", batch_size=4, crop_size=CROP, return_meta=True)
    whole = [b for b in loader_for(config, shuffle=True)]
    again = [b for b in loader_for(config, shuffle=True)]
    first = loader_for(config, shuffle=True)
    it = iter(first)
    next(it), next(it)
    state = first.state_dict()
    resumed = loader_for(config, shuffle=True)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(whole) - 2
    for got, want in zip(again, whole):  # same seed, same batches
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    for got, want in zip(rest, whole[2:]):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("backend", ["reference", "dali"])
@pytest.mark.parametrize("last_batch", ["drop", "partial"])
def test_ranks_partition_each_epoch_with_equal_batch_counts(packed, backend, last_batch):
    if backend == "dali":
        require_dali()
    loaders = [loader_for(config_for(packed, backend, batch_size=3, crop_size=CROP, return_meta=True,
                                     shard_id=k, num_shards=3, last_batch=last_batch), shuffle=True) for k in range(3)]
    kept = loaders[0].selection.kept
    for epoch in range(2):
        per_rank = [[b.ids.tolist() for b in loader] for loader in loaders]
        assert len({len(batches) for batches in per_rank}) == 1, "every rank steps the same number of times"
        ids = [i for batches in per_rank for b in batches for i in b]
        assert len(ids) == len(set(ids)), f"epoch {epoch}: no sample on two ranks"
        if last_batch == "partial":
            assert sorted(ids) == list(range(kept))


def test_reference_set_epoch_runs_any_epoch_from_the_shards(packed):
    config = config_for(packed, "reference", batch_size=4, crop_size=CROP, return_meta=True)
    a = loader_for(config, shuffle=True)
    _batches(a, epochs=2)
    second = [b.ids.tolist() for b in a]  # epoch 2
    b = loader_for(config, shuffle=True)
    b.set_epoch(2)
    assert [x.ids.tolist() for x in b] == second


def test_loaders_start_from_the_manifest_alone(synth_root, packed, tmp_path, monkeypatch):
    """Building either loader reads the manifest and no shard byte (a copy of the pack, so
    nothing else is at hand)."""
    copy = tmp_path / "packed"
    shutil.copytree(packed, copy)
    reads = []
    real_read, real_range = storage.LocalStore.read, storage.LocalStore.read_range
    monkeypatch.setattr(storage.LocalStore, "read", lambda self, name: reads.append(name) or real_read(self, name))
    monkeypatch.setattr(storage.LocalStore, "read_range",
                        lambda self, name, o, s: reads.append(name) or real_range(self, name, o, s))
    for backend in ("reference", "dali"):
        if backend == "dali":
            require_dali()
        reads.clear()
        loader = loader_for(config_for(copy, backend, batch_size=4, crop_size=CROP))
        assert set(reads) == {MANIFEST_NAME}, reads
        x, y = next(iter(loader))
        assert x.shape == (4, 3, *CROP)


def test_whole_image_validation_from_the_shards(synth_root, packed):
    """``val_mode="whole"``: every val image once, each label equal to the reference path's on
    the unpacked tree (the DALI loader yields the packed order, so labels are matched by id)."""
    from dali_voc.api import load_data
    _, want = load_data("voc", 4, CROP, root=synth_root, backend="reference", num_workers=0, val_mode="whole",
                        verbose=False, return_meta=True)
    labels = {i: y for b in want for i, y in zip(b.ids.tolist(), b.labels)}
    assert len(labels) == 16
    for backend in ("reference", "dali"):
        options = dict(device="cpu") if backend == "dali" else dict(num_workers=0)
        if backend == "dali":
            require_dali()
        _, got = load_data("voc", 4, CROP, root=packed, backend=backend, val_mode="whole", verbose=False,
                           return_meta=True, **options)
        seen = []
        for b in got:
            for i, y in zip(b.ids.tolist(), b.labels):
                assert torch.equal(y, labels[i]), (backend, i)
            seen += b.ids.tolist()
        assert sorted(seen) == sorted(labels)


def test_cityscapes_pngs_pack_and_load_on_both_backends(tmp_path):
    """A dataset whose images are PNG too (members ``.png`` and ``.label.png``) and whose labels
    are values: both loaders over its shards give the reference path's labels on the tree."""
    from dali_voc.api import load_data
    from dali_voc.tools.synth import CityscapesSpec, synthesize
    synthesize(tmp_path / "tree", "cityscapes", CityscapesSpec(num_train=6, num_val=2, image_size=(128, 256)),
               workers=1, progress=False)
    pack_tree(tmp_path / "tree", str(tmp_path / "pack"), dataset="cityscapes", progress=False)
    assert load_manifest(tmp_path / "pack")["image_ext"] == "png"
    tree_train, _ = load_data("cityscapes", 2, (64, 64), root=tmp_path / "tree", backend="reference",
                              num_workers=0, verbose=False)
    reference = tree_train.dataset
    position = {s.index: i for i, s in enumerate(reference.samples)}
    for backend in ("reference", "dali"):
        options = dict(device="cpu") if backend == "dali" else dict(num_workers=0)
        if backend == "dali":
            require_dali()
        train, _ = load_data("cityscapes", 2, (64, 64), root=tmp_path / "pack", backend=backend, verbose=False,
                             return_meta=True, **options)
        seen = []
        for batch in train:
            for k, index in enumerate(batch.ids.tolist()):
                _, y = reference.load(position[index], CropWindow(*batch.windows[k].tolist()))
                assert torch.equal(batch.labels[k], y), (backend, index)
            seen += batch.ids.tolist()
        assert sorted(seen) == [s.index for s in reference.samples]
