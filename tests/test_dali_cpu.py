"""The DALI pipeline in CPU mode (device_id=None) against the reference path."""

import numpy as np
import pytest
import torch

from dali_voc import DALILoader, ReaderPairingError, SampleDecodeError, UnknownColorError
from dali_voc.labels.tables import colors_to_indices
from dali_voc.loaders.reference import VOCSegmentation
from dali_voc.resolve import resolve
from dali_voc.datasets.scan import load_selection
from dali_voc.geometry.windows import CropWindow, anchor_from_uniform, anchor_range, valid_masks
from benchmarks.geometry_graph import graph_operators
from tests.helpers import (CPU_IMAGE_TOLERANCE, config_for, decode_coordinates, make_tree, raw_image,
                           require_dali, run_pipeline)


@pytest.fixture(autouse=True)
def _dali():
    require_dali()


def _config(root, **kw):
    return config_for(root, "dali", **kw)


@pytest.mark.parametrize("policy", ["drop", "pad"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windows_identical_for_image_and_label_and_match_the_reported_anchor(coord_tree, policy, seed):
    config = _config(coord_tree, batch_size=4, small_images=policy, seed=seed)
    selection, rows = run_pipeline(config, iterations=4)
    ch, cw = config.crop_size
    for image, label, window, shape, label_shape, image_id, label_id in rows:
        assert tuple(label_shape) == tuple(shape)
        assert image_id[0] == label_id[0]
        sample = next(s for s in selection.samples if s.index == image_id[0])
        assert tuple(shape) == (sample.height, sample.width)
        top, left = int(window[0]), int(window[1])
        lo, hi = anchor_range(sample.height, ch)
        assert lo <= top <= hi
        lo, hi = anchor_range(sample.width, cw)
        assert lo <= left <= hi
        raw = raw_image(image)
        rows_, cols_ = np.mgrid[0:ch, 0:cw]
        inside = ((rows_ + top >= 0) & (rows_ + top < sample.height) &
                  (cols_ + left >= 0) & (cols_ + left < sample.width))
        y, x, sid = decode_coordinates(label)
        # The label crop reads exactly the reported window of ITS sample ...
        assert (sid[inside] == sample.index).all()
        assert np.array_equal(y[inside], (rows_ + top)[inside])
        assert np.array_equal(x[inside], (cols_ + left)[inside])
        # ... and the image crop is the same window of the same sample.
        assert np.array_equal(raw[inside], label[inside])
        assert (image[:, ~inside] == 0).all()  # padding = mean = 0.0 after normalizing


def test_labels_equal_reference_exactly_and_images_within_tolerance(synth_root):
    config = _config(synth_root, batch_size=8, small_images="pad", void_label="ignore")
    selection, rows = run_pipeline(config, iterations=5)
    reference = VOCSegmentation(config, "train", selection)
    position = {s.index: i for i, s in enumerate(selection.samples)}
    table = config.label_table()
    worst = 0.0
    for image, label, window, shape, _, image_id, _ in rows:
        x_ref, y_ref = reference.load(position[int(image_id[0])], CropWindow(int(window[0]), int(window[1])))
        mask = valid_masks(window, shape, config.crop_size)[0]
        y = colors_to_indices(label, table, valid=mask).indices
        assert np.array_equal(y, y_ref.numpy())
        worst = max(worst, float(np.abs(image - x_ref.numpy()).max()))
    assert worst <= CPU_IMAGE_TOLERANCE


def test_loader_yields_textbook_batches_on_the_cpu(synth_root):
    loader = DALILoader(_config(synth_root, batch_size=4), "train", shuffle=True)
    assert not loader.resolved.use_gpu and loader.resolved.label_path == "zlib"
    batches = list(loader)
    assert len(batches) == len(loader) == loader.selection.kept // 4
    x, y = batches[0]
    assert x.shape == (4, 3, 320, 480) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.shape == (4, 320, 480) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 20


def _epoch_ids(config, split="train", shuffle=True, shard=(0, 1), epochs=3):
    """Split indices per epoch, as the loader's batches report them (pairing checked by it)."""
    from dataclasses import replace
    loader = DALILoader(replace(config, shard_id=shard[0], num_shards=shard[1], return_meta=True), split,
                        shuffle=shuffle)
    return [[i for batch in loader for i in batch.ids.tolist()] for _ in range(epochs)], loader


def test_readers_stay_paired_and_each_epoch_covers_the_split(stripe_tree):
    config = _config(stripe_tree, batch_size=2, last_batch="partial", small_images="pad")
    epochs, loader = _epoch_ids(config, epochs=4)
    everything = sorted(s.index for s in loader.selection.samples)
    for ids in epochs:
        assert sorted(ids) == everything
    assert len({tuple(ids) for ids in epochs}) > 1, "the order changes between epochs"


def test_pairing_error_when_readers_disagree(stripe_tree, monkeypatch):
    """Sabotage: the label reader shuffles with another seed; the loader must notice."""
    import nvidia.dali.fn as fn

    from dali_voc.loaders.pipeline import LABEL_READER
    real_reader = fn.readers.file

    def crossed_reader(*args, **kwargs):
        if kwargs.get("name") == LABEL_READER:
            kwargs["shuffle_after_epoch_seed"] = kwargs["shuffle_after_epoch_seed"] + 1
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(fn.readers, "file", crossed_reader)
    loader = DALILoader(_config(stripe_tree, batch_size=4, small_images="pad"), "train", shuffle=True)
    with pytest.raises(ReaderPairingError, match=r"out of step.*s_\d{4}.*paired with label of .*s_\d{4}"):
        list(loader)


def test_same_seed_same_batches(stripe_tree):
    def run(seed):
        loader = DALILoader(_config(stripe_tree, batch_size=4, seed=seed), "train", shuffle=True)
        return [(x.clone(), y.clone()) for _ in range(2) for x, y in loader]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_shards_partition_every_epoch(stripe_tree):
    config = _config(stripe_tree, batch_size=2, last_batch="partial", small_images="pad")
    per_shard = [_epoch_ids(config, shard=(k, 3), epochs=3)[0] for k in range(3)]
    for epoch in range(3):
        ids = [i for shard in per_shard for i in shard[epoch]]
        assert sorted(ids) == list(range(8)), f"epoch {epoch}: {ids}"


def test_len_and_last_batch_policy(stripe_tree):
    drop = DALILoader(_config(stripe_tree, batch_size=3, small_images="pad"), "train", shuffle=True)
    part = DALILoader(_config(stripe_tree, batch_size=3, small_images="pad", last_batch="partial"), "train",
                      shuffle=True)
    assert len(drop) == 2 and len(part) == 3
    assert [x.shape[0] for x, _ in drop] == [3, 3]
    assert [x.shape[0] for x, _ in part] == [3, 3, 2]


def test_drop_vs_pad_counts(stripe_tree):
    drop = DALILoader(_config(stripe_tree, batch_size=1), "train", shuffle=False)
    pad = DALILoader(_config(stripe_tree, batch_size=1, small_images="pad"), "train", shuffle=False)
    assert drop.selection.kept == 6 and pad.selection.kept == 8
    assert sum(1 for _ in drop) == 6 and sum(1 for _ in pad) == 8


def test_breaking_early_still_gives_full_next_epoch(stripe_tree):
    loader = DALILoader(_config(stripe_tree, batch_size=2, small_images="pad"), "train", shuffle=True)
    for _ in loader:
        break
    assert sum(x.shape[0] for x, _ in loader) == 8


def test_strict_unknown_colors_name_the_file(tmp_path):
    make_tree(tmp_path, [(330, 490)] * 2, label_fn=lambda i, h, w: np.full((h, w, 3), (7, 7, 7), np.uint8))
    loose = DALILoader(_config(tmp_path, batch_size=2), "train", shuffle=False)
    (x, y), = list(loose)
    assert (y == 255).all() and loose.unknown_pixels == 2 * 320 * 480
    strict = DALILoader(_config(tmp_path, batch_size=2, unknown_colors="raise"), "train", shuffle=False)
    with pytest.raises(UnknownColorError, match=r"s_000[01]\.png holds color \(7, 7, 7\)"):
        list(strict)


def test_a_label_the_png_path_cannot_decode_ends_the_loader_naming_it(stripe_tree, monkeypatch):
    """The GPU PNG path raises PNGFormatError naming a label; the loader turns it into the
    same SampleDecodeError as a DALI decode failure and refuses further use. (The error is
    injected here: the GPU path itself runs in tests/test_gpu.py and tests/test_bad_input.py.)"""
    from dali_voc import PNGFormatError
    loader = DALILoader(_config(stripe_tree, batch_size=2), "train", shuffle=False)

    def damaged(batch):
        raise PNGFormatError("SegmentationClass/s_0001.png: image data fails its Adler-32 check")
    monkeypatch.setattr(loader.labels, "decode", damaged)
    with pytest.raises(SampleDecodeError, match=r"train: SegmentationClass/s_0001\.png: image data fails"):
        list(loader)
    with pytest.raises(RuntimeError, match="stopped after an error"):
        list(loader)


def test_front_door_picks_dali_on_the_cpu_and_says_so(synth_root, capsys):
    from dali_voc import load_data_voc
    train_iter, test_iter = load_data_voc(4, (320, 480), root=synth_root, backend="auto", num_workers=1)
    assert isinstance(train_iter, DALILoader) and not train_iter.resolved.use_gpu
    err = capsys.readouterr().err
    assert repr(train_iter) in err and repr(test_iter) in err  # one line per loader, on stderr
    x, y = next(iter(test_iter))
    assert x.shape == (4, 3, 320, 480)


def test_loader_reports_windows_and_ids_of_each_batch(stripe_tree):
    """The public iterator's batches, re-created window by window by the reference path."""
    config = _config(stripe_tree, batch_size=4, small_images="pad", void_label="ignore", return_meta=True)
    loader = DALILoader(config, "train", shuffle=True)
    reference = VOCSegmentation(config, "train", loader.selection)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    for x, y, windows, ids, *_ in loader:
        assert windows.dtype == torch.int32 and ids.dtype == torch.int64
        for b, (index, window) in enumerate(zip(ids.tolist(), windows.tolist())):
            x_ref, y_ref = reference.load(position[index], CropWindow(*window))
            assert torch.equal(y[b], y_ref)
            assert (x[b] - x_ref).abs().max() <= CPU_IMAGE_TOLERANCE


def test_graph_anchor_equals_the_reference_formula_and_dali_crops_land_on_it():
    """The graph's vectorized anchor (both axes per operator, the sign recovered by DALI's
    rounding cast) against :func:`dali_voc.geometry.windows.anchor_from_uniform`, at the edges: u at 0
    and just below 1, no slack, negative slack (padding), large images; and DALI's crop, given
    the graph's positions, cuts a coordinate image exactly at that anchor."""
    from nvidia.dali import fn, pipeline_def, types

    from dali_voc.loaders.pipeline import _integer_anchor
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))
    crop = (40, 30)
    # (u_y, u_x, h, w); k / span * span falls just below k in float32 for (span, k) = (22, 13),
    # (23, 7), (23, 14), (37, 3): there a truncating or flooring cast would be off by one
    cases = [(u_y, u_x, h, w) for u_y, u_x in [(0.0, below_one), (below_one, 0.0), (0.5, 0.49999997)]
             for h, w in [(40, 30), (35, 41), (45, 20), (1, 1), (2049, 1501)]]
    cases += [(13.5 / 23, 7.5 / 24, 40 + 22, 30 + 23), (3.5 / 38, 14.5 / 24, 40 - 37, 30 - 23),
              (3.5 / 38, 14.5 / 24, 40 + 37, 30 + 23)]

    @pipeline_def(batch_size=len(cases), num_threads=1, device_id=None)
    def graph():
        u = fn.external_source(source=lambda: [np.array(c[:2], np.float32) for c in cases], batch=True)
        extent = fn.external_source(source=lambda: [np.array(c[2:], np.int32) for c in cases], batch=True)
        image = fn.external_source(source=lambda: [np.arange(1, c[2] * c[3] + 1, dtype=np.int32).reshape(c[2], c[3], 1)
                                                   for c in cases], batch=True, layout="HWC")
        anchor, pos = _integer_anchor(u, extent, types.Constant(np.array(crop, np.int32), device="cpu"))
        cut = fn.crop(image, crop_h=crop[0], crop_w=crop[1], crop_pos_y=pos[0], crop_pos_x=pos[1],
                      out_of_bounds_policy="pad", fill_values=0)
        return anchor, cut

    pipe = graph()
    pipe.build()
    anchors, cuts = pipe.run()
    for k, (u_y, u_x, h, w) in enumerate(cases):
        top, left = (int(v) for v in np.asarray(anchors[k]))
        assert (top, left) == (anchor_from_uniform(u_y, h, crop[0]), anchor_from_uniform(u_x, w, crop[1])), cases[k]
        assert anchor_range(h, crop[0])[0] <= top <= anchor_range(h, crop[0])[1]
        coords = np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w)
        want = np.zeros(crop, np.int32)
        for y in range(crop[0]):
            for x in range(crop[1]):
                if 0 <= top + y < h and 0 <= left + x < w:
                    want[y, x] = coords[top + y, left + x]
        assert np.array_equal(np.asarray(cuts[k])[..., 0], want), cases[k]


@pytest.mark.parametrize("augment", ["textbook", "mmseg"])
@pytest.mark.parametrize("raw_labels", [False, True])
@pytest.mark.parametrize("fancy", [False, True])
def test_gpu_variant_of_the_graph_passes_dali_definition_checks(synth_root, raw_labels, augment, fancy):
    """DALI checks every operator's arguments against its schema and the device placement of
    every edge while the graph is defined, which needs no GPU. The GPU variant (mixed decoders,
    the image's with ``hw_decoder_load`` and ``jpeg_fancy_upsampling``, the PNG label decoder
    with no hardware-decoder share, GPU crops, CPU side outputs, raw PNG bytes for nvCOMP; with
    augmentation a GPU resize sized by CPU arguments, a mirror, whole labels) passes; running it
    needs CUDA (tests/test_gpu.py)."""
    from dataclasses import replace

    from dali_voc.loaders.pipeline import build_pipeline
    config = _config(synth_root, batch_size=4, hw_decoder_load=0.35, device="auto", augment=augment,
                     jpeg_fancy_upsampling=fancy)
    selection = load_selection(config.root, "train", config.crop_size, config.small_image_policy)
    on_gpu = replace(resolve(config), use_gpu=True, cuda_device=0, hw_decoder_load=0.35,
                     label_path="nvcomp" if raw_labels else "dali")  # what resolve() gives on a GPU machine
    pipe = build_pipeline(config, on_gpu, selection.samples, shuffle=True)
    pipe._build_graph()  # private: defines the graph without creating the (CUDA-needing) backend
    geometry = ["cpu", "cpu"] if augment != "textbook" else []  # scaled, flips
    assert [node.device for node in pipe._graph_outputs] == ["gpu", "cpu" if raw_labels else "gpu",
                                                              "cpu", "cpu", "cpu", "cpu", "cpu"] + geometry
    resizes = [device for name, device, _ in graph_operators(pipe) if name == "Resize"]
    assert resizes == (["gpu"] if augment != "textbook" else [])
    decoders = [(device, args) for name, device, args in graph_operators(pipe) if name == "decoders__Image"]
    assert len(decoders) == (1 if raw_labels else 2)
    assert all(device == "mixed" and args["adjust_orientation"] is False for device, args in decoders)
    image_decoder = [args for _, args in decoders if args["hw_decoder_load"] == 0.35]
    assert len(image_decoder) == 1 and image_decoder[0]["jpeg_fancy_upsampling"] is fancy
    # the PNG label decoder (stock path) gets no hardware JPEG decoder share
    assert [args["hw_decoder_load"] for _, args in decoders if args is not image_decoder[0]] == \
        ([] if raw_labels else [0.0])
    with pytest.raises(KeyError, match="not defined for operator"):  # the check is real: a wrong name fails
        from nvidia.dali import fn, pipeline_def

        @pipeline_def(batch_size=2, num_threads=1, device_id=0)
        def misspelled():
            jpegs, _ = fn.readers.file(files=[str(selection.samples[0].image)])
            return fn.decoders.image(jpegs, device="mixed", hw_decoder_loads=0.35)
        misspelled()._build_graph()
