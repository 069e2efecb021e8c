"""The CPU label decoder that runs the GPU path's algorithm (plan, zlib, the kernels in NumPy)
against the host decoder of every other path, on what the loaders never meet in the synthetic
trees: every filter type, gray and short palettes, scaling and flips, every output dtype,
labels off the fast path and damaged image data."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dali_voc.errors import PNGFormatError
from dali_voc.geometry.windows import BatchGeometry, CropWindow, SampleGeometry
from dali_voc.labels.host import crop_label, decode_label_of_image
from dali_voc.labels.zlib_decoder import ZlibLabelDecoder
from dali_voc.dataset_specs import dataset_spec
from dali_voc.datasets.voc import voc_color_table, voc_palette
from tests.pngtools import damaged_pngs, encode_png

CROP = (12, 20)


def _batch(rng, count=12):
    """Labels with every filter type (Average and Paeth too), gray and short palettes, values
    the table does not know, an RGB label (off the fast path); their shapes, windows, scaled
    sizes and flips (some windows partly outside)."""
    encoded, shapes = [], []
    short = voc_palette()[: 3 * 30]
    for k in range(count):
        h, w = 9 + k, 17 + 2 * k
        values = np.array(list(range(21)) + [255, 77], dtype=np.uint8)  # 77: not a VOC color
        pixels = values[rng.integers(0, len(values), size=(h, w))]
        filters = [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]][k % 6]
        if k == count - 1:
            rgb = io.BytesIO()
            Image.fromarray(np.dstack([pixels] * 3)).save(rgb, format="PNG")
            encoded.append(rgb.getvalue())
        elif k % 4 == 3:
            encoded.append(encode_png(pixels, 0, filters))  # gray
        else:
            encoded.append(encode_png(pixels, 3, filters, palette=short if k % 4 == 1 else None))
        encoded[-1] += bytes(k)  # zero padding, as DALI's reader delivers a batch
        shapes.append((h, w))
    shapes = np.array(shapes)
    scaled = np.maximum(1, (shapes * rng.uniform(0.5, 2.0, size=(count, 1))).astype(int))
    scaled[::3] = shapes[::3]  # unscaled: the crop reads rows and columns in order (mirrored with a flip)
    windows = np.stack([rng.integers(-3, np.maximum(scaled[:, 0] - CROP[0], 0) + 3),
                        rng.integers(-3, np.maximum(scaled[:, 1] - CROP[1], 0) + 3)], axis=1)
    flips = np.resize([1, 0], count)
    windows[3], flips[3] = (0, 0), 1  # a mirrored crop at the image's corner (23 >= 20 columns)
    return encoded, [f"l{k}.png" for k in range(count)], windows, shapes, scaled, flips


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
@pytest.mark.parametrize("augmented", [False, True])
@pytest.mark.parametrize("table", [voc_color_table(void_index=255), voc_color_table(), dataset_spec("ade20k").inspection_table(),
                                   dataset_spec("cityscapes").inspection_table()], ids=["voc-void-ignored", "voc", "ade20k", "cityscapes"])
def test_labels_equal_the_host_decoder_of_every_other_path(dtype, augmented, table):
    rng = np.random.default_rng(0)
    encoded, names, windows, shapes, scaled, flips = _batch(rng)
    if not augmented:
        scaled, flips = None, None
    decoder = ZlibLabelDecoder(table, CROP, dtype, threads=3)
    got = decoder.decode_files(encoded, names, BatchGeometry.of(windows, shapes if scaled is None else scaled, flips),
                               shapes)
    assert got.labels.dtype == dtype and got.labels.shape == (len(encoded), *CROP)
    assert decoder.fallback_images == 1  # the RGB label
    for k in range(len(encoded)):
        geometry = SampleGeometry(CropWindow(*map(int, windows[k])),
                                  tuple(map(int, shapes[k] if scaled is None else scaled[k])),
                                  flips is not None and bool(flips[k]))
        label = decode_label_of_image(encoded[k], names[k], table, tuple(map(int, shapes[k])))
        want = crop_label(label, geometry, CROP, table.ignore_index)
        assert torch.equal(got.labels[k], torch.from_numpy(want.indices).to(dtype)), k
        assert int(got.unknown[k]) == want.unknown_pixels, k
    assert int(got.unknown.sum()) > 0  # the batch does hold unknown values (77, short palettes)


@pytest.mark.parametrize("damage, message", [
    ("checksum", "image data fails its Adler-32 check"),
    ("short", r"image data does not inflate to 72 bytes \(67\)"),
    ("long", r"image data does not inflate to 72 bytes \(73\+\)"),
    ("filter", "a row has a filter type outside 0-4"),
])
def test_damaged_image_data_is_named(damage, message):
    files = damaged_pngs()
    decoder = ZlibLabelDecoder(voc_color_table(), (6, 11), torch.int64, threads=2)
    encoded = [files["good"], files[damage]]
    with pytest.raises(PNGFormatError, match=rf"^{damage}\.png: {message}$"):
        decoder.decode_files(encoded, ["good.png", f"{damage}.png"], BatchGeometry.of(np.zeros((2, 2))),
                             np.array([[6, 11]] * 2))
