"""PNG writer for tests: any 8-bit palette/gray image with chosen row filters and IDAT split.

(No hypothesis import here: the GPU host that runs the ``gpu`` tests lacks it.)"""

import struct
import zlib

import numpy as np

from dali_voc.voc import voc_palette


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


def encode_png(pixels: np.ndarray, color_type: int, filters, idat_size: int = 1 << 20, interlace: int = 0) -> bytes:
    """Write 8-bit ``pixels`` ([H, W] for palette/gray) with row filter ``filters[y % len]``,
    the zlib stream split into IDAT chunks of ``idat_size`` bytes."""
    h, w = pixels.shape
    prev = np.zeros(w, dtype=np.uint8)
    raw = b""
    for y in range(h):
        raw += _filter_row(filters[y % len(filters)], pixels[y], prev)
        prev = pixels[y]
    stream = zlib.compress(raw, 6)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, interlace))
    if color_type == 3:
        out += _chunk(b"PLTE", bytes(voc_palette()))
    for i in range(0, len(stream), idat_size):
        out += _chunk(b"IDAT", stream[i:i + idat_size])
    return out + _chunk(b"IEND", b"")
