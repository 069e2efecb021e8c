import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dali_voc.datasets.voc import voc_color_table
from dali_voc.labels.tables import UNKNOWN, colors_to_indices, pack_rgb
from dali_voc.config import LoaderConfig
from dali_voc.datasets.voc import VOC_COLORMAP, VOID_COLOR, voc_palette

COLORMAP = np.array(VOC_COLORMAP, dtype=np.uint8)


@pytest.mark.parametrize("void_index", [0, 255])
def test_every_colormap_entry_maps_to_its_class(void_index):
    table = voc_color_table(void_index=void_index)
    result = colors_to_indices(COLORMAP[None], table)
    assert result.indices.tolist() == [list(range(21))]
    assert result.unknown_pixels == 0


def test_void_color_goes_where_the_config_says():
    void = np.array([[VOID_COLOR]], dtype=np.uint8)
    background = LoaderConfig(root=".", void_label="background").label_table()
    ignore = LoaderConfig(root=".", void_label="ignore", ignore_index=250).label_table()
    assert colors_to_indices(void, background).indices.item() == 0
    assert colors_to_indices(void, ignore).indices.item() == 250
    assert colors_to_indices(void, ignore).unknown_pixels == 0


def test_unknown_colors_map_to_ignore_and_are_counted():
    table = voc_color_table(void_index=0, ignore_index=255)
    rgb = np.array([[[0, 0, 0], [1, 2, 3], [128, 0, 0], [1, 2, 3], [255, 255, 255]]], dtype=np.uint8)
    result = colors_to_indices(rgb, table)
    assert result.indices.tolist() == [[0, 255, 1, 255, 255]]
    assert result.unknown_pixels == 3
    assert result.first_unknown == (1, 2, 3)


def test_padding_is_ignored_and_not_counted_as_unknown():
    table = voc_color_table()
    rgb = np.array([[[1, 2, 3], [128, 0, 0]]], dtype=np.uint8)
    valid = np.array([[False, True]])
    result = colors_to_indices(rgb, table, valid=valid)
    assert result.indices.tolist() == [[255, 1]]
    assert result.unknown_pixels == 0


def test_uint8_output_dtype():
    result = colors_to_indices(COLORMAP[None], voc_color_table(), dtype=np.uint8)
    assert result.indices.dtype == np.uint8


def test_palette_lut_agrees_with_the_rgb_table():
    table = voc_color_table(void_index=255)
    palette = voc_palette()
    plut = table.palette_lut(palette)
    assert plut[:21].tolist() == list(range(21))
    assert plut[255] == 255
    assert (plut[21:255] == UNKNOWN).all()


def test_table_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="void_index"):
        voc_color_table(void_index=7)
    with pytest.raises(ValueError, match="ignore_index"):
        voc_color_table(ignore_index=20)


def _brute_force(rgb, table):
    mapping = {tuple(int(v) for v in c): i for i, c in enumerate(VOC_COLORMAP)}
    mapping[VOID_COLOR] = table.void_index
    out = np.empty(rgb.shape[:-1], dtype=np.int64)
    unknown = 0
    for idx in np.ndindex(*rgb.shape[:-1]):
        key = tuple(int(v) for v in rgb[idx])
        if key in mapping:
            out[idx] = mapping[key]
        else:
            out[idx] = table.ignore_index
            unknown += 1
    return out, unknown


# Pixels drawn mostly from the known colors, some arbitrary: the table must agree with a dict.
_known = np.concatenate([COLORMAP, np.array([VOID_COLOR], dtype=np.uint8)])
_pixel = st.one_of(st.sampled_from([tuple(c) for c in _known.tolist()]),
                   st.tuples(*(st.integers(0, 255),) * 3))


@settings(max_examples=60, deadline=None)
@given(pixels=st.lists(_pixel, min_size=1, max_size=64), void_index=st.sampled_from([0, 255]))
def test_table_equals_brute_force(pixels, void_index):
    table = voc_color_table(void_index=void_index)
    rgb = np.array(pixels, dtype=np.uint8)[None]
    expected, unknown = _brute_force(rgb, table)
    result = colors_to_indices(rgb, table)
    assert np.array_equal(result.indices, expected)
    assert result.unknown_pixels == unknown


@settings(max_examples=30, deadline=None)
@given(rgb=arrays(np.uint8, (3, 5, 3)))
def test_pack_rgb_is_injective_and_in_range(rgb):
    keys = pack_rgb(rgb)
    assert keys.min() >= 0 and keys.max() < 1 << 24
    back = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=-1)
    assert np.array_equal(back, rgb)
