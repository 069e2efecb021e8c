"""A strict PNG container parser and a NumPy reference of PNG row unfiltering.

Label PNGs are small (a few KB): parsing the container on the CPU is cheap, and it yields
what the GPU needs to decode them: the raw Deflate stream (the zlib stream of the IDAT chunks
without its 2-byte header and 4-byte Adler-32 trailer), the size and the palette. Every
chunk's CRC is checked; a damaged file raises :class:`PNGFormatError` naming it.

The GPU fast path covers what VOC uses: 8-bit palette (color type 3) or 8-bit gray (type 0),
not interlaced. :func:`unfilter` is the NumPy reference of the row filters (None, Sub, Up,
Average, Paeth) that the GPU kernel in :mod:`dali_voc.labels.nvcomp_decoder` implements too.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from ..errors import PNGFormatError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_GRAY, COLOR_RGB, COLOR_PALETTE, COLOR_GRAY_ALPHA, COLOR_RGBA = 0, 2, 3, 4, 6
_CHANNELS = {COLOR_GRAY: 1, COLOR_RGB: 3, COLOR_PALETTE: 1, COLOR_GRAY_ALPHA: 2, COLOR_RGBA: 4}
_VALID_DEPTHS = {COLOR_GRAY: (1, 2, 4, 8, 16), COLOR_RGB: (8, 16), COLOR_PALETTE: (1, 2, 4, 8),
                 COLOR_GRAY_ALPHA: (8, 16), COLOR_RGBA: (8, 16)}
MAX_DIMENSION = 1 << 16  # far beyond any VOC image; guards against absurd allocations
_CHUNK_HEADER = struct.Struct(">I4s")  # length, type
_CRC = struct.Struct(">I")
#: Labels hold at most 8 bits per sample: DALI's decoder and PIL reduce 16-bit samples in
#: different ways (DALI scales, PIL clips), so a 16-bit label would decode differently per path.
LABEL_MAX_BIT_DEPTH = 8
#: Bytes of a label file read beyond its image data's raw size (ancillary chunks, compression
#: overhead); what lies past that, or past IEND, is never read.
LABEL_READ_SLACK = 1 << 20


def label_depth_problem(bit_depth: int) -> Optional[str]:
    """Why a label PNG of ``bit_depth`` bits per sample is refused on every path, or None."""
    if bit_depth > LABEL_MAX_BIT_DEPTH:
        return (f"is a {bit_depth}-bit PNG; labels hold at most {LABEL_MAX_BIT_DEPTH} bits per sample "
                f"(decoders reduce 16-bit samples differently, so no path decodes it)")
    return None


def read_png_file(path: str, name: Optional[str] = None) -> bytes:
    """A PNG file's bytes up to and including its IEND chunk, read chunk by chunk, so memory is
    bounded by the image whatever the file holds: at most its raw image size (from IHDR) plus
    :data:`LABEL_READ_SLACK`. The bytes are checked later by :func:`parse_png`.

    Raises:
        PNGFormatError: naming ``name`` (default ``path``): bytes follow IEND (every path
            refuses such a label, as the scan does), or the chunks announce more data than
            the image can need.
    """
    name = name or str(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        parts = [f.read(33)]  # signature + IHDR
        head = parts[0]
        if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
            return head + f.read(64)  # not a PNG: parse_png names it
        width, height, depth, color = struct.unpack(">IIBB", head[16:26])
        raw = height * (1 + (width * _CHANNELS.get(color, 4) * depth + 7) // 8)
        budget, pos = raw + LABEL_READ_SLACK, 33
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return b"".join(parts) + chunk  # truncated: parse_png names it
            length, kind = _CHUNK_HEADER.unpack(chunk)
            if pos + 12 + length > budget:
                raise PNGFormatError(f"{name}: its chunks announce over {budget} bytes, more than a "
                                     f"{width}x{height} image can need (read stops here)")
            parts += [chunk, f.read(length + 4)]
            pos += 12 + length
            if kind == b"IEND":
                if size > pos:
                    raise PNGFormatError(trailing_data_message(name, size - pos))
                return b"".join(parts)


def trailing_data_message(name: str, extra: int) -> str:
    """The message for a label file with ``extra`` bytes after its IEND chunk."""
    return (f"{name}: {extra} bytes follow the IEND chunk (the end of the PNG); a label file must end "
            f"there (no path reads past it)")



@dataclass(frozen=True)
class PNGInfo:
    """What a parsed PNG holds.

    Attributes:
        width, height: image size in pixels.
        bit_depth, color_type, interlace: IHDR fields.
        palette: uint8 ``[n, 3]`` PLTE entries (color type 3), else ``None``.
        zlib_data: the concatenated IDAT payload (one zlib stream).
    """

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int
    palette: Optional[np.ndarray]
    zlib_data: bytes

    @property
    def channels(self) -> int:
        return _CHANNELS[self.color_type]

    @property
    def fast_path(self) -> bool:
        """True for 8-bit palette or gray, not interlaced: one byte per pixel, the GPU path."""
        return self.bit_depth == 8 and self.color_type in (COLOR_GRAY, COLOR_PALETTE) and self.interlace == 0

    @property
    def row_bytes(self) -> int:
        """Bytes of one filtered row including its leading filter-type byte."""
        return 1 + (self.width * self.channels * self.bit_depth + 7) // 8

    @property
    def inflated_size(self) -> int:
        """Size of the decompressed stream of a non-interlaced image."""
        return self.row_bytes * self.height

    def raw_deflate(self) -> memoryview:
        """The IDAT zlib stream without its 2-byte header and 4-byte Adler-32 trailer."""
        return memoryview(self.zlib_data)[2:-4]

    @property
    def adler32(self) -> int:
        """The zlib trailer: Adler-32 of the inflated (still filtered) rows, as uint32."""
        return struct.unpack(">I", self.zlib_data[-4:])[0]

    def color_palette(self) -> np.ndarray:
        """uint8 ``[256, 3]``: the palette (zero-filled past its end), or the gray ramp."""
        colors = np.zeros((256, 3), dtype=np.uint8)
        if self.color_type == COLOR_GRAY:
            colors[:] = np.arange(256, dtype=np.uint8)[:, None]
        elif self.palette is not None:
            colors[: len(self.palette)] = self.palette
        return colors


def parse_png(data: bytes, name: str = "<bytes>") -> PNGInfo:
    """Parse and check a PNG file's chunks.

    Checks: the signature; every chunk's length and CRC-32; IHDR first with valid fields;
    exactly one PLTE, before the image data, for palette images (sized in whole RGB triples,
    at most 256 and at most what the bit depth can index), none for gray images; no critical
    chunk the PNG spec does not define; IDAT chunks present and consecutive; a valid zlib
    header; IEND present. Bytes after IEND are ignored (batches arrive zero-padded to a common
    length). The image data itself is checked by :func:`inflate_exact`.

    Raises:
        PNGFormatError: naming ``name`` and what was wrong.
    """
    view = memoryview(data)
    if bytes(view[:8]) != SIGNATURE:
        raise PNGFormatError(f"{name}: not a PNG file (bad signature)")
    pos, ihdr, palette, idat, idat_done, ended = 8, None, None, [], False, False
    size = len(view)
    while pos < size:
        if pos + 8 > size:
            raise PNGFormatError(f"{name}: truncated chunk header at byte {pos}")
        length, ctype = _CHUNK_HEADER.unpack_from(view, pos)
        end = pos + 12 + length
        if end > size:
            raise PNGFormatError(f"{name}: truncated {ctype.decode('latin-1')!r} chunk at byte {pos} "
                                 f"({length} bytes announced, {size - pos - 12} present)")
        payload = view[pos + 8:end - 4]
        # the CRC covers the chunk type and payload, which are contiguous
        if zlib.crc32(view[pos + 4:end - 4]) != _CRC.unpack_from(view, end - 4)[0]:
            raise PNGFormatError(f"{name}: CRC mismatch in {ctype.decode('latin-1')!r} chunk at byte {pos}")
        if ihdr is None and ctype != b"IHDR":
            raise PNGFormatError(f"{name}: first chunk is {ctype!r}, expected IHDR")
        if ctype == b"IHDR":
            if ihdr is not None or length != 13:
                raise PNGFormatError(f"{name}: bad IHDR chunk")
            ihdr = struct.unpack(">IIBBBBB", payload)
        elif ctype == b"PLTE":
            if idat:
                raise PNGFormatError(f"{name}: PLTE chunk after the image data (the PNG spec puts it before IDAT)")
            if palette is not None:
                raise PNGFormatError(f"{name}: a second PLTE chunk at byte {pos} (the PNG spec allows one)")
            if length % 3 or not 0 < length <= 768:
                raise PNGFormatError(f"{name}: PLTE of {length} bytes is not 1-256 RGB entries")
            palette = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).copy()
        elif ctype == b"IDAT":
            if idat_done:
                raise PNGFormatError(f"{name}: IDAT chunks are not consecutive")
            idat.append(bytes(payload))
        elif ctype == b"IEND":
            ended = True
            break
        elif not ctype[0] & 0x20:  # bit 5 of the first byte clear: critical, must be understood
            raise PNGFormatError(f"{name}: unknown critical chunk {ctype.decode('latin-1')!r} at byte {pos}")
        if idat and ctype != b"IDAT":
            idat_done = True
        pos = end
    if ihdr is None:
        raise PNGFormatError(f"{name}: no IHDR chunk")
    if not ended:
        raise PNGFormatError(f"{name}: truncated (no IEND chunk)")
    width, height, depth, color, compression, filter_method, interlace = ihdr
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise PNGFormatError(f"{name}: size {width}x{height} is out of range")
    if color not in _VALID_DEPTHS or depth not in _VALID_DEPTHS[color]:
        raise PNGFormatError(f"{name}: color type {color} with bit depth {depth} is not valid PNG")
    if label_depth_problem(depth):
        raise PNGFormatError(f"{name} {label_depth_problem(depth)}")
    if compression != 0 or filter_method != 0 or interlace not in (0, 1):
        raise PNGFormatError(f"{name}: unknown compression/filter/interlace method")
    if color == COLOR_PALETTE and palette is None:
        raise PNGFormatError(f"{name}: palette image without a PLTE chunk")
    if color == COLOR_PALETTE and len(palette) > 1 << depth:  # type: ignore[arg-type]
        raise PNGFormatError(f"{name}: PLTE of {len(palette)} entries for a {depth}-bit palette image")  # type: ignore
    if color in (COLOR_GRAY, COLOR_GRAY_ALPHA) and palette is not None:
        raise PNGFormatError(f"{name}: PLTE chunk in a gray image (the PNG spec forbids it)")
    if not idat:
        raise PNGFormatError(f"{name}: no IDAT chunk")
    stream = b"".join(idat)
    if len(stream) < 6 or stream[0] & 0x0F != 8 or (stream[0] << 8 | stream[1]) % 31 or stream[1] & 0x20:
        raise PNGFormatError(f"{name}: IDAT does not start with a zlib header (deflate, no preset dictionary)")
    return PNGInfo(width, height, depth, color, interlace, palette, stream)


_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def row_layout(info: PNGInfo) -> list[tuple[int, int]]:
    """``(rows, row_bytes)`` of each pass of the image data (one pass, or Adam7's seven);
    ``row_bytes`` counts the filter-type byte. Empty passes are left out."""
    if not info.interlace:
        return [(info.height, info.row_bytes)]
    passes = []
    for y0, x0, dy, dx in _ADAM7:
        rows = (info.height - y0 + dy - 1) // dy if info.height > y0 else 0
        cols = (info.width - x0 + dx - 1) // dx if info.width > x0 else 0
        if rows and cols:
            passes.append((rows, 1 + (cols * info.channels * info.bit_depth + 7) // 8))
    return passes


def _row_starts(info: PNGInfo) -> np.ndarray:
    """Offsets of every row's filter-type byte in the inflated image data (all passes)."""
    starts, offset = [], 0
    for rows, row_bytes in row_layout(info):
        starts.append(offset + row_bytes * np.arange(rows, dtype=np.int64))
        offset += rows * row_bytes
    return np.concatenate(starts)


def _checked_chunks(info: PNGInfo, name: str, chunk: int) -> Iterator[bytes]:
    """The inflated image data in pieces of at most ``chunk`` bytes, checked on the way: one
    complete zlib stream (Adler-32 checked by zlib) of exactly the size the header announces,
    every row's filter type in 0-4. Raises :class:`PNGFormatError` naming ``name``."""
    starts = _row_starts(info)
    expected = sum(rows * row_bytes for rows, row_bytes in row_layout(info))
    inflater = zlib.decompressobj()
    pending, pos = info.zlib_data, 0
    while True:
        try:
            piece = inflater.decompress(pending, chunk)
        except zlib.error as err:
            raise PNGFormatError(f"{name}: corrupt image data ({err})") from err
        pending = inflater.unconsumed_tail
        if pos + len(piece) > expected:
            raise PNGFormatError(f"{name}: image data inflates to more than the {expected} bytes its header announces")
        if piece:
            here = starts[np.searchsorted(starts, pos):np.searchsorted(starts, pos + len(piece))]
            kinds = np.frombuffer(piece, dtype=np.uint8)[here - pos]
            if (kinds > 4).any():
                bad = int(np.flatnonzero(kinds > 4)[0])
                row = int(np.searchsorted(starts, here[bad]))
                raise PNGFormatError(f"{name}: row {row} has filter type {int(kinds[bad])}; PNG defines 0-4")
            pos += len(piece)
            yield piece
        if inflater.eof or not (piece or pending):
            break
    if not inflater.eof:
        raise PNGFormatError(f"{name}: image data ends early ({pos} of {expected} bytes; the zlib stream is cut short)")
    if pos < expected:
        raise PNGFormatError(f"{name}: image data ends early ({pos} of {expected} bytes)")


def inflate_exact(info: PNGInfo, name: str = "<bytes>") -> bytes:
    """The image data inflated, after checking it is exactly what the header announces: one
    complete zlib stream (its Adler-32 checked by zlib) of ``sum(rows * row_bytes)`` bytes,
    and every row's filter type in 0-4.

    Raises:
        PNGFormatError: naming ``name``: corrupt data, data that ends early (with how many
            bytes were there), extra data, or a bad filter type (with its row).
    """
    return b"".join(_checked_chunks(info, name, 1 << 24))


def check_image_data(info: PNGInfo, name: str = "<bytes>") -> None:
    """:func:`inflate_exact`'s checks without keeping the inflated data (inflated 64 KiB at a
    time, so checking many files does not grow the heap)."""
    for _ in _checked_chunks(info, name, 1 << 16):
        pass


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def unfilter(inflated: np.ndarray, height: int, row_bytes: int, bpp: int = 1) -> np.ndarray:
    """Undo PNG row filters: uint8 ``[height * row_bytes]`` (filter byte + data per row)
    -> uint8 ``[height, row_bytes - 1]``. ``bpp``: bytes per complete pixel (>= 1).

    Raises:
        ValueError: on a size mismatch or a filter type outside 0-4.
    """
    if inflated.size != height * row_bytes:
        raise ValueError(f"inflated stream has {inflated.size} bytes, expected {height} rows x {row_bytes}")
    rows = inflated.reshape(height, row_bytes)
    if not rows[:, 0].any():  # every row unfiltered (what VOC's labels use): nothing to undo
        return rows[:, 1:].copy()
    out = np.zeros((height, row_bytes - 1), dtype=np.uint8)
    prev = np.zeros(row_bytes - 1, dtype=np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: each byte adds the reconstructed byte bpp to its left
            padded = np.zeros(((line.size + bpp - 1) // bpp) * bpp, dtype=np.int32)
            padded[: line.size] = line
            cur = (np.cumsum(padded.reshape(-1, bpp), axis=0) % 256).reshape(-1)[: line.size]
        elif kind == 2:  # Up
            cur = (line + prev) % 256
        elif kind in (3, 4):  # Average, Paeth: sequential within the row
            cur = np.zeros_like(line)
            for x in range(line.size):
                a = int(cur[x - bpp]) if x >= bpp else 0
                b = int(prev[x])
                if kind == 3:
                    cur[x] = (line[x] + (a + b) // 2) % 256
                else:
                    c = int(prev[x - bpp]) if x >= bpp else 0
                    cur[x] = (line[x] + _paeth(a, b, c)) % 256
        else:
            raise ValueError(f"row {y} has filter type {int(kind)}; PNG defines 0-4")
        out[y] = cur
        prev = cur.astype(np.int32)
    return out


def decode_indices(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, PNGInfo]:
    """Decode a fast-path PNG (8-bit palette/gray, not interlaced) on the CPU with zlib and
    :func:`unfilter`: uint8 ``[H, W]`` palette indices (or gray levels) and its info.

    Raises:
        PNGFormatError: damaged file, or not a fast-path PNG (names the file and its format).
    """
    info = parse_png(data, name)
    if not info.fast_path:
        raise PNGFormatError(f"{name}: {info.bit_depth}-bit color type {info.color_type}"
                             f"{' interlaced' if info.interlace else ''} is not an 8-bit palette/gray PNG")
    return fast_path_indices(info, name), info


def fast_path_indices(info: PNGInfo, name: str = "<bytes>") -> np.ndarray:
    """uint8 ``[H, W]`` palette indices (or gray levels) of a parsed fast-path PNG: its image
    data checked by :func:`inflate_exact`, then unfiltered.

    Raises:
        PNGFormatError: naming ``name``, when the image data is damaged or incomplete.
    """
    inflated = np.frombuffer(inflate_exact(info, name), dtype=np.uint8)
    kinds = inflated.reshape(info.height, info.row_bytes)[:, 0]
    if int(kinds.max(initial=0)) > 4:
        row = int(np.flatnonzero(kinds > 4)[0])
        raise PNGFormatError(f"{name}: row {row} has filter type {int(kinds[row])}; PNG defines 0-4")
    if (kinds >= 3).any():
        return unfilter_with_pil(info, name)
    return unfilter(inflated, info.height, info.row_bytes)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def unfilter_with_pil(info: PNGInfo, name: str) -> np.ndarray:
    """uint8 ``[H, W]`` of an 8-bit one-channel image's data (``info.zlib_data``, already
    checked complete and exact), unfiltered by PIL's C decoder from a minimal PNG around it.

    Average and Paeth rows depend on the pixel just reconstructed to their left, a loop per
    byte in Python (seconds for a 2-megapixel label); what writes gray labels (ADE20K,
    Cityscapes) uses them.

    Raises:
        PNGFormatError: naming ``name`` when PIL cannot decode it.
    """
    header = struct.pack(">IIBBBBB", info.width, info.height, 8, info.color_type, 0, 0, 0)
    png = (SIGNATURE + _png_chunk(b"IHDR", header)
           + (_png_chunk(b"PLTE", info.palette.tobytes()) if info.palette is not None else b"")
           + _png_chunk(b"IDAT", info.zlib_data) + _png_chunk(b"IEND", b""))
    try:
        with Image.open(io.BytesIO(png)) as im:
            pixels = np.asarray(im)  # mode "P": palette indices; "L": gray levels
    except (OSError, SyntaxError, ValueError) as err:
        raise PNGFormatError(f"{name}: cannot decode ({err})") from err
    return np.ascontiguousarray(pixels, dtype=np.uint8)
