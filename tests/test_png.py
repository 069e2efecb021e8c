"""PNG parser and NumPy unfiltering against PIL, on PNGs written with each filter type."""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dali_voc.labels.png import PNGFormatError, decode_indices, parse_png, unfilter
from tests.pngtools import _chunk, _filter_row, assemble_png, encode_png


def _pil_values(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("color_type", [0, 3])
@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("width", [1, 17, 33])
def test_every_filter_type_matches_pil(color_type, filters, width):
    rng = np.random.default_rng(width)
    pixels = rng.integers(0, 256, size=(9, width), dtype=np.uint8)
    data = encode_png(pixels, color_type, filters, idat_size=40)  # several IDAT chunks
    indices, info = decode_indices(data, "gen.png")
    assert info.fast_path and info.width == width and info.height == 9
    assert np.array_equal(indices, _pil_values(data))
    assert np.array_equal(indices, pixels)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 40), seed=st.integers(0, 999),
       filters=st.lists(st.integers(0, 4), min_size=1, max_size=6))
def test_unfilter_inverts_any_filter_sequence(h, w, seed, filters):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)
    data = encode_png(pixels, 0, filters)
    info = parse_png(data)
    out = unfilter(np.frombuffer(zlib.decompress(info.zlib_data), np.uint8), h, info.row_bytes)
    assert np.array_equal(out, pixels)


def test_multibyte_pixels_sub_filter():
    # bpp=3 (RGB-like rows): Sub adds the byte 3 to the left.
    row = np.array([10, 20, 30, 1, 2, 3, 250, 250, 250], dtype=np.uint8)
    filtered = np.frombuffer(_filter_row(1, row, np.zeros(9, np.uint8), bpp=3), np.uint8)
    assert np.array_equal(unfilter(filtered, 1, 10, bpp=3)[0], row)


def test_pil_written_voc_labels_parse_and_decode(synth_root):
    from dali_voc.datasets.voc import VOCLayout, read_split
    layout = VOCLayout.locate(synth_root)
    for name in read_split(layout, "train")[:8]:
        data = layout.label_path(name).read_bytes()
        indices, info = decode_indices(data, name)
        assert info.color_type == 3 and info.palette.shape == (256, 3)
        assert np.array_equal(indices, _pil_values(data))
        assert info.raw_deflate().nbytes == len(info.zlib_data) - 6
        # The raw Deflate stream inflates alone (what nvCOMP's RAW bitstream kind is given).
        assert zlib.decompress(bytes(info.raw_deflate()), wbits=-15) == zlib.decompress(info.zlib_data)


def test_trailing_zero_padding_is_ignored():
    data = encode_png(np.zeros((3, 3), np.uint8), 3, [0])
    assert decode_indices(data + bytes(100), "pad.png")[0].shape == (3, 3)


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"GIF89a" + d[6:], "bad signature"),
    (lambda d: d[:-20], "truncated"),
    (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:], "CRC mismatch"),
    (lambda d: d[:33] + d[33 + 12 + 768:], "without a PLTE"),
    (lambda d: b"", "bad signature"),
])
def test_damaged_files_raise_naming_the_file(damage, message):
    data = encode_png(np.arange(12, dtype=np.uint8).reshape(3, 4), 3, [0])
    with pytest.raises(PNGFormatError, match=f"broken.png: .*{message}"):
        decode_indices(damage(data), "broken.png")


def test_corrupt_deflate_data_is_named():
    good = encode_png(np.arange(12, dtype=np.uint8).reshape(3, 4), 0, [0])
    info = parse_png(good)
    bad_stream = info.zlib_data[:2] + bytes(len(info.zlib_data) - 2)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0))
    out += _chunk(b"IDAT", bad_stream) + _chunk(b"IEND", b"")
    with pytest.raises(PNGFormatError, match="z.png: corrupt image data"):
        decode_indices(out, "z.png")


def _pil_png(mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (7, 5)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    pytest.param(lambda: _pil_png("RGB"), id="rgb"),
    pytest.param(lambda: _pil_png("1"), id="1bit"),
    pytest.param(lambda: encode_png(np.zeros((5, 7), np.uint8), 3, [0], interlace=1), id="interlaced"),
])
def test_non_fast_path_pngs_are_recognised(data):
    data = data()
    info = parse_png(data, "x.png")
    assert not info.fast_path
    with pytest.raises(PNGFormatError, match="x.png: .*not an 8-bit palette/gray PNG"):
        decode_indices(data, "x.png")


def test_16_bit_labels_are_refused_by_the_parser_naming_the_depth():
    with pytest.raises(PNGFormatError, match="x.png is a 16-bit PNG; labels hold at most 8 bits"):
        parse_png(_pil_png("I;16"), "x.png")


def test_image_data_checks_name_each_damage_whether_kept_or_streamed():
    """inflate_exact (keeps the data) and check_image_data (64 KiB at a time) agree on every
    kind of damaged image data, and on a good file."""
    from dali_voc.labels.png import check_image_data, inflate_exact
    from tests.pngtools import damaged_pngs
    # "short" carries the Adler-32 of the full data, so zlib finds it corrupt
    expected = {"good": None, "checksum": "corrupt image data", "short": "corrupt image data",
                "long": "inflates to more than", "filter": "row 2 has filter type 7"}
    for kind, data in damaged_pngs().items():
        info = parse_png(data, f"{kind}.png")
        for check in (inflate_exact, check_image_data):
            if expected[kind] is None:
                check(info, f"{kind}.png")
                continue
            with pytest.raises(PNGFormatError, match=rf"^{kind}\.png: .*{expected[kind]}"):
                check(info, f"{kind}.png")
    big = encode_png(np.zeros((300, 700), np.uint8), 3, [0, 1, 2, 3, 4])  # 210 KB inflated: several pieces
    check_image_data(parse_png(big), "big.png")


@pytest.mark.parametrize("filters", [[3], [4], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("color_type", [0, 3])
def test_average_and_paeth_rows_decode_through_pil_to_the_same_pixels(filters, color_type):
    """Rows filtered with Average/Paeth go through PIL's C decoder (a Python loop per byte took
    seconds per 2-megapixel label): the same values as the spec-by-spec unfilter."""
    rng = np.random.default_rng(len(filters) + color_type)
    pixels = rng.integers(0, 256, size=(37, 53)).astype(np.uint8)
    data = encode_png(pixels, color_type, filters)
    got, info = decode_indices(data, "x.png")
    assert np.array_equal(got, pixels)
    slow = unfilter(np.frombuffer(zlib.decompress(info.zlib_data), np.uint8), 37, info.row_bytes)
    assert np.array_equal(slow, pixels)


def test_a_filter_type_outside_0_to_4_is_named_with_its_row():
    data = encode_png(np.zeros((4, 5), np.uint8), 0, [0])
    info = parse_png(data)
    rows = bytearray(zlib.decompress(info.zlib_data))
    rows[2 * 6] = 7  # row 2's filter byte
    bad = assemble_png(5, 4, 0, zlib.compress(bytes(rows)))
    with pytest.raises(PNGFormatError, match="row 2 has filter type 7"):
        decode_indices(bad, "x.png")
