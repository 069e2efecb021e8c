"""PNG writer for tests: any 8-bit palette/gray image with chosen row filters and IDAT split.

(No hypothesis import here: the GPU host that runs the ``gpu`` tests lacks it.)"""

import struct
import zlib

import numpy as np

from dali_voc.datasets.voc import voc_palette


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_row(kind: int, cur: np.ndarray, prev: np.ndarray, bpp: int = 1) -> bytes:
    out = bytearray()
    for x in range(cur.size):
        a = int(cur[x - bpp]) if x >= bpp else 0
        b = int(prev[x])
        c = int(prev[x - bpp]) if x >= bpp else 0
        pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
        out.append((int(cur[x]) - pred) % 256)
    return bytes([kind]) + bytes(out)


def filtered_rows(pixels: np.ndarray, filters) -> bytes:
    """The inflated PNG data of 8-bit ``pixels`` [H, W]: per row its filter byte
    ``filters[y % len]`` and the filtered bytes."""
    h, w = pixels.shape
    prev = np.zeros(w, dtype=np.uint8)
    raw = b""
    for y in range(h):
        raw += _filter_row(filters[y % len(filters)], pixels[y], prev)
        prev = pixels[y]
    return raw


def assemble_png(width: int, height: int, color_type: int, stream: bytes, idat_size: int = 1 << 20,
                 interlace: int = 0, palette=None) -> bytes:
    """A PNG around an arbitrary zlib ``stream`` (valid chunk CRCs whatever the stream holds);
    palette images get ``palette`` (flat RGB values), default VOC's."""
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, interlace))
    if color_type == 3:
        out += _chunk(b"PLTE", bytes(voc_palette() if palette is None else palette))
    for i in range(0, len(stream), idat_size):
        out += _chunk(b"IDAT", stream[i:i + idat_size])
    return out + _chunk(b"IEND", b"")


def encode_png(pixels: np.ndarray, color_type: int, filters, idat_size: int = 1 << 20, interlace: int = 0,
               palette=None) -> bytes:
    """Write 8-bit ``pixels`` ([H, W] for palette/gray) with row filter ``filters[y % len]``,
    the zlib stream split into IDAT chunks of ``idat_size`` bytes (palette: see :func:`assemble_png`)."""
    h, w = pixels.shape
    stream = zlib.compress(filtered_rows(pixels, filters), 6)
    return assemble_png(w, h, color_type, stream, idat_size, interlace, palette)


def with_adler(stream: bytes, adler: int) -> bytes:
    """A zlib stream with its Adler-32 trailer replaced."""
    return stream[:-4] + struct.pack(">I", adler & 0xFFFFFFFF)


def damaged_pngs() -> dict[str, bytes]:
    """Label PNGs with valid chunk CRCs whose image data is wrong in one way each."""
    rng = np.random.default_rng(3)
    h, w = 6, 11
    pixels = rng.integers(1, 21, size=(h, w)).astype(np.uint8)  # no zero bytes: a short stream can't pass
    rows = filtered_rows(pixels, [0])
    bad_filter = bytearray(rows)
    bad_filter[2 * (w + 1)] = 7  # row 2: filter type 7
    return {
        "good": assemble_png(w, h, 3, zlib.compress(rows)),
        "checksum": assemble_png(w, h, 3, with_adler(zlib.compress(rows), zlib.adler32(rows) ^ 1)),
        "short": assemble_png(w, h, 3, with_adler(zlib.compress(rows[:-5]), zlib.adler32(rows))),
        "long": assemble_png(w, h, 3, zlib.compress(rows + bytes(3))),
        "filter": assemble_png(w, h, 3, zlib.compress(bytes(bad_filter))),
    }
