"""The host side of GPU label decoding, checked on the CPU through its NumPy emulation."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from dali_voc.datasets.voc import VOC_COLORMAP, VOID_COLOR, voc_color_table
from dali_voc.labels.tables import ColorTable

from dali_voc.labels.nvcomp_plan import (FLAG_BAD_CHECKSUM, FLAG_BAD_FILTER, FLAG_OK, PaletteLUTs, decode_plan_numpy,
                                 LabelPlanner, plan_labels, stream_problem)
from dali_voc.errors import PNGFormatError
from dali_voc.labels.png import parse_png
from dali_voc.loaders.reference import VOCSegmentation
from dali_voc.datasets.scan import load_selection
from dali_voc.datasets.voc import VOCLayout, read_split, voc_palette
from dali_voc.geometry.windows import BatchGeometry, CropWindow
from tests.helpers import config_for, reference_label_indices, require_dali
from tests.pngtools import damaged_pngs, encode_png


def test_plan_layout_reproduces_pil_for_every_filter_and_padding():
    table = voc_color_table(void_index=255)
    rng = np.random.default_rng(0)
    crop = (12, 20)
    encoded, shapes, windows = [], [], []
    for k, filters in enumerate([[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]]):
        h, w = 9 + k, 17 + 3 * k
        values = np.array(list(range(21)) + [255, 77], dtype=np.uint8)  # 77: not a VOC color
        pixels = values[rng.integers(0, len(values), size=(h, w))]
        encoded.append(encode_png(pixels, 3, filters, idat_size=50) + bytes(k * 7))  # zero padding
        shapes.append((h, w))
        windows.append((int(rng.integers(-3, 3)), int(rng.integers(-3, 3))))
    windows, shapes = np.array(windows), np.array(shapes)
    plan = plan_labels(encoded, [f"l{k}.png" for k in range(len(encoded))], table, BatchGeometry.of(windows), expected_hw=shapes)
    assert plan.fast_slots == list(range(6)) and not plan.fallback
    assert all(o % 16 == 0 for o in plan.comp_offsets) and all(v % 16 == 0 for v in plan.table_offsets.values())
    t = plan.table_offsets
    geometry = plan.buffer[t["geometry"]:t["geometry"] + 20 * 6].view(np.int32).reshape(6, 5)
    assert np.array_equal(geometry[:, :2], windows) and np.array_equal(geometry[:, 2:4], shapes)  # unscaled
    assert not geometry[:, 4].any()
    assert np.array_equal(plan.buffer[t["luts"]:t["luts"] + 512 * 6].view(np.int16).reshape(6, 256), plan.luts)
    got, unknown, flags = decode_plan_numpy(plan, crop, table.ignore_index)
    assert not flags.any()
    assert [int(a) for a in plan.adlers] == [zlib.adler32(zlib.decompress(parse_png(e).zlib_data)) for e in encoded]
    for k in range(6):
        want = reference_label_indices(encoded[k], tuple(windows[k]), tuple(shapes[k]), crop, table)
        assert np.array_equal(got[k], want.indices), k
        assert unknown[k] == want.unknown_pixels


class _CountingTable(ColorTable):
    """A color table that counts how often a palette is mapped through it."""

    def __init__(self):
        super().__init__(VOC_COLORMAP, VOID_COLOR, void_index=255)
        object.__setattr__(self, "mapped", 0)

    def palette_lut(self, palette):
        object.__setattr__(self, "mapped", self.mapped + 1)
        return super().palette_lut(palette)


def _mixed_batch(rng, count=6):
    """Palette labels (two palettes, one with fewer entries), a gray one, zero padding, and
    the windows and shapes to plan them at."""
    encoded, shapes = [], []
    short_palette = voc_palette()[: 3 * 30]
    for k in range(count):
        h, w = 7 + k, 11 + 2 * k
        pixels = rng.integers(0, 25, size=(h, w)).astype(np.uint8)
        if k % 3 == 2:
            encoded.append(encode_png(pixels, 0, [k % 5]) + bytes(k))  # gray
        else:
            palette = short_palette if k % 3 == 1 else None
            encoded.append(encode_png(pixels, 3, [k % 5], palette=palette) + bytes(k))
        shapes.append((h, w))
    windows = rng.integers(-2, 3, size=(count, 2))
    return encoded, [f"m{k}.png" for k in range(count)], windows, np.array(shapes)


def test_plan_written_into_a_given_host_buffer_decodes_the_same_whatever_it_held():
    """The GPU decoder hands its planner its (reused, never cleared) pinned staging memory:
    the plan must be written there, and stale bytes between the sections must not matter."""
    rng = np.random.default_rng(1)
    encoded, names, windows, shapes = _mixed_batch(rng)
    fresh = plan_labels(encoded, names, voc_color_table(), BatchGeometry.of(windows), expected_hw=shapes)
    staging = np.full(fresh.buffer.nbytes + 100, 0xAB, dtype=np.uint8)
    given = []

    def host_buffer(n):
        given.append(n)
        return staging[:n]

    staged = LabelPlanner(voc_color_table(), host_buffer=host_buffer).plan(encoded, names, BatchGeometry.of(windows),
                                                                           expected_hw=shapes)
    assert given == [fresh.buffer.nbytes] and np.shares_memory(staged.buffer, staging)
    assert (staging[fresh.buffer.nbytes:] == 0xAB).all()  # nothing written past the plan
    want = decode_plan_numpy(fresh, (9, 13), 255)
    got = decode_plan_numpy(staged, (9, 13), 255)
    for a, b in zip(want, got):
        assert np.array_equal(a, b)


def test_palette_luts_map_each_palette_once_across_batches_and_stay_right_when_full():
    rng = np.random.default_rng(2)
    batches = [_mixed_batch(rng) for _ in range(3)]
    table = _CountingTable()
    kept = PaletteLUTs(table)
    for encoded, names, windows, shapes in batches:
        got = plan_labels(encoded, names, kept, BatchGeometry.of(windows), expected_hw=shapes)
        want = plan_labels(encoded, names, voc_color_table(void_index=255), BatchGeometry.of(windows), expected_hw=shapes)
        assert np.array_equal(got.luts, want.luts)
    assert table.mapped == 3  # the full palette, the short one, the gray ramp: once each in 3 batches
    tiny = PaletteLUTs(voc_color_table(void_index=255), capacity=1)  # always full: cleared on every new palette
    for encoded, names, windows, shapes in batches:
        got = plan_labels(encoded, names, tiny, BatchGeometry.of(windows), expected_hw=shapes)
        want = plan_labels(encoded, names, voc_color_table(void_index=255), BatchGeometry.of(windows), expected_hw=shapes)
        assert np.array_equal(got.luts, want.luts)


def test_non_palette_labels_go_to_the_fallback_list():
    table = voc_color_table()
    rgb = io.BytesIO()
    Image.new("RGB", (5, 4), (128, 0, 0)).save(rgb, format="PNG")
    pal = encode_png(np.zeros((4, 5), np.uint8), 3, [0])
    plan = plan_labels([pal, rgb.getvalue()], ["a.png", "b.png"], table, BatchGeometry.of(np.zeros((2, 2))))
    assert plan.fast_slots == [0] and [slot for slot, _ in plan.fallback] == [1]
    assert plan.inflated_offsets.tolist()[1] == -1


def test_label_and_image_size_mismatch_is_named():
    png = encode_png(np.zeros((4, 5), np.uint8), 3, [0])
    with pytest.raises(PNGFormatError, match=r"x.png: label is 4x5 but its image is 4x6"):
        plan_labels([png], ["x.png"], voc_color_table(), BatchGeometry.of(np.zeros((1, 2))), expected_hw=np.array([[4, 6]]))


def test_raw_label_bytes_from_the_dali_cpu_pipeline_decode_to_reference_labels(synth_root):
    """The pipeline's raw-label mode (what the GPU path consumes), planned and decoded with
    the NumPy emulation, gives exactly the reference path's labels on the same windows."""
    from dataclasses import replace

    from dali_voc.loaders.pipeline import build_pipeline
    from dali_voc.resolve import resolve
    require_dali()
    config = config_for(synth_root, "dali", batch_size=8, small_images="pad", void_label="ignore")
    selection = load_selection(config.root, "train", config.crop_size, config.small_image_policy)
    raw_labels = replace(resolve(config), label_path="nvcomp")  # the GPU plan's label mode, on CPU operators
    pipe = build_pipeline(config, raw_labels, selection.samples, shuffle=True)
    pipe.build()
    reference = VOCSegmentation(config, "train", selection)
    position = {s.index: i for i, s in enumerate(selection.samples)}
    table = config.label_table()
    for _ in range(3):
        _, labels, windows, shapes, _, ids, _ = pipe.run()
        encoded = [np.array(labels[b]).tobytes() for b in range(len(labels))]
        assert len({len(e) for e in encoded}) == 1  # zero-padded to one length per batch
        win = np.stack([np.array(windows[b]) for b in range(len(windows))])
        shp = np.stack([np.array(shapes[b]) for b in range(len(shapes))])
        names = [str(selection.samples[position[int(np.array(ids[b])[0])]].label) for b in range(len(ids))]
        plan = plan_labels(encoded, names, table, BatchGeometry.of(win), expected_hw=shp)
        got, unknown, flags = decode_plan_numpy(plan, config.crop_size, table.ignore_index)
        assert unknown.sum() == 0 and not flags.any()
        for b in range(len(ids)):
            _, y_ref = reference.load(position[int(np.array(ids[b])[0])], CropWindow(*map(int, win[b])))
            assert np.array_equal(got[b], y_ref.numpy())


def test_synthetic_labels_are_all_on_the_fast_path(synth_root):
    layout = VOCLayout.locate(synth_root)
    names = read_split(layout, "trainval")
    encoded = [layout.label_path(n).read_bytes() for n in names]
    plan = plan_labels(encoded, names, voc_color_table(), BatchGeometry.of(np.zeros((len(names), 2))))
    assert not plan.fallback and len(plan.fast_slots) == len(names)
    assert (plan.luts[:, :21] == np.arange(21)).all() and (plan.luts[:, 255] == 0).all()
    assert voc_palette()[:3] == [0, 0, 0]


def test_damaged_image_data_is_flagged_like_the_gpu_kernel_flags_it():
    """The NumPy mirror of the GPU path flags each damage kind (the GPU kernel computes the
    same flags; the map kernel then writes ignore_index over the whole label)."""
    files = damaged_pngs()
    names = [f"{k}.png" for k in files]
    plan = plan_labels(list(files.values()), names, voc_color_table(), BatchGeometry.of(np.zeros((len(files), 2))))
    got, _, flags = decode_plan_numpy(plan, (6, 11), 255)
    by_name = dict(zip(files, flags.tolist()))
    assert by_name == {"good": FLAG_OK, "checksum": FLAG_BAD_CHECKSUM, "short": FLAG_BAD_CHECKSUM,
                       "long": FLAG_BAD_CHECKSUM, "filter": FLAG_BAD_FILTER}  # long: on the GPU nvCOMP refuses it first
    for k, name in enumerate(files):
        if by_name[name] != FLAG_OK:
            assert (got[k] == 255).all(), name
    assert (got[0] != 255).all()


def test_stream_problem_names_what_zlib_finds_and_the_gpu_decoder_names_the_file():
    """When nvCOMP refuses a batch, the decoder inflates each stream with zlib to name the
    culprit (no GPU needed for this part)."""
    from dali_voc.labels.nvcomp_decoder import NvcompLabelDecoder
    files = damaged_pngs()
    names = [f"{k}.png" for k in files]
    plan = plan_labels(list(files.values()), names, voc_color_table(), BatchGeometry.of(np.zeros((len(files), 2))))
    problems = {name: stream_problem(plan, slot) for slot, name in enumerate(files)}
    assert problems["good"] is None
    assert problems["checksum"] == "image data fails its Adler-32 check"
    assert problems["short"] == "image data does not inflate to 72 bytes (67)"
    assert problems["long"] == "image data does not inflate to 72 bytes (73+)"
    assert problems["filter"] is None  # inflates fine; the filter byte is the kernel's to flag
    err = NvcompLabelDecoder._explain_inflate_failure(plan, names, ValueError("output too small"))
    assert isinstance(err, PNGFormatError) and str(err) == "checksum.png: image data fails its Adler-32 check"
    clean = plan_labels([files["good"]], ["good.png"], voc_color_table(), BatchGeometry.of(np.zeros((1, 2))))
    err = NvcompLabelDecoder._explain_inflate_failure(clean, ["good.png"], RuntimeError("boom"))
    assert isinstance(err, RuntimeError) and "zlib inflates correctly" in str(err) and "boom" in str(err)
