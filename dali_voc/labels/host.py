"""A label file on the CPU -> class indices, with the contract every path follows.

* The file must be a well-formed PNG whose image data is complete (:func:`~dali_voc.labels.png.parse_png`
  and :func:`~dali_voc.labels.png.inflate_exact`); anything else is a :class:`~dali_voc.errors.PNGFormatError`
  naming the file, never a partly decoded label.
* Palette labels map palette index -> class through the color table applied to the file's own
  palette (:meth:`~dali_voc.labels.tables.ColorTable.palette_lut`); an index with no palette entry is an
  unknown color, exactly as on the GPU. Gray labels map their levels as gray colors; other labels
  (RGB, 16-bit, with alpha) map their RGB colors.

The reference path, ``check``, the nvCOMP decoder's CPU fallback and the DALI loaders' host
fallback for short palettes all decode labels here, so they cannot disagree.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from PIL import Image

from .tables import UNKNOWN, LabelTable, pack_rgb
from ..errors import PNGFormatError
from .png import COLOR_GRAY, COLOR_PALETTE, PNGInfo, check_image_data, fast_path_indices, parse_png, read_png_file
from ..storage.members import MemberRef, read_source
from ..geometry.windows import SampleGeometry, resample, source_pixels


@dataclass(frozen=True)
class LabelImage:
    """A decoded label file.

    Attributes:
        classes: int16 ``[H, W]``: the class of each pixel, the void index, or
            :data:`~dali_voc.labels.tables.UNKNOWN` (-1) for a color the table does not know.
        pixels: what the file stores: uint8 ``[H, W]`` palette indices / gray levels, or uint8
            ``[H, W, 3]`` RGB colors.
        png: the file's header and chunks (``png.palette``: its palette, or ``None``).
    """

    classes: np.ndarray
    pixels: np.ndarray
    png: PNGInfo

    @property
    def palette(self) -> Optional[np.ndarray]:
        return self.png.palette

    def describe_pixel(self, y: int, x: int) -> str:
        """What pixel ``(y, x)`` holds, for error messages: ``color (r, g, b)``, or a palette
        index that has no palette entry."""
        if self.pixels.ndim == 3:
            return f"color {tuple(int(c) for c in self.pixels[y, x])}"
        value = int(self.pixels[y, x])
        if self.palette is None:
            return f"color {(value, value, value)}"
        if value >= len(self.palette):
            return f"palette index {value} with no palette entry (the palette has {len(self.palette)})"
        return f"color {tuple(int(c) for c in self.palette[value])}"


def decode_label(data: bytes, name: str, table: LabelTable) -> LabelImage:
    """Decode label file bytes (see the module docstring for the contract).

    Raises:
        PNGFormatError: naming ``name``: not a PNG, damaged, incomplete or invalid.
    """
    info = parse_png(data, name)
    if info.fast_path:  # 8-bit palette or gray, not interlaced: decoded here, as the GPU does
        pixels = fast_path_indices(info, name)
    else:
        check_image_data(info, name)  # complete and exact, before PIL (which pads short data)
        pixels = _decode_with_pil(data, name, info)
    if pixels.ndim == 2:
        lut = table.palette_lut(info.color_palette()[:_entries(info)].reshape(-1))
        classes = lut[pixels]
    else:
        classes = table.lut[pack_rgb(pixels)]
    return LabelImage(classes, pixels, info)


def _entries(info: PNGInfo) -> int:
    return len(info.palette) if info.palette is not None else 256


def _decode_with_pil(data: bytes, name: str, info: PNGInfo) -> np.ndarray:
    """Pixels of a PNG off the fast path (already checked complete): palette indices for
    palette images (any bit depth, interlaced or not), else RGB; 8-bit gray levels stay 2-D."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if info.color_type == COLOR_PALETTE:
                return np.asarray(im)  # mode "P": indices, unpacked from 1/2/4 bits
            if info.color_type == COLOR_GRAY and info.bit_depth == 8:
                return np.asarray(im.convert("L"))
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise PNGFormatError(f"{name}: cannot decode ({err})") from err


def read_label(path: os.PathLike | str, table: LabelTable) -> LabelImage:
    """:func:`decode_label` of the label at ``path`` (:func:`label_bytes`; errors name it)."""
    return decode_label(label_bytes(path), str(path), table)


def label_bytes(source: Union[MemberRef, str, os.PathLike]) -> bytes:
    """A label's bytes: a file read only up to its IEND chunk
    (:func:`~dali_voc.labels.png.read_png_file`: memory bounded whatever follows), or a packed
    shard's member (its byte range, checked when it was packed)."""
    return read_source(source) if isinstance(source, MemberRef) else read_png_file(source)


@dataclass(frozen=True)
class CroppedLabel:
    """A label at one crop window.

    Attributes:
        indices: int64 ``[crop_h, crop_w]``: classes, ``ignore_index`` in padding and at unknown colors.
        unknown_pixels: pixels inside the image whose color the table does not know.
        first_unknown: what the first of them holds (see :meth:`LabelImage.describe_pixel`), or ``None``.
    """

    indices: np.ndarray
    unknown_pixels: int
    first_unknown: Optional[str]


def crop_label(label: LabelImage, geometry: SampleGeometry, crop_hw: tuple[int, int],
               ignore_index: int) -> CroppedLabel:
    """``label`` at ``geometry`` (its window in the label scaled to ``geometry.scaled``, mirrored
    when ``geometry.flip``), by the nearest-neighbour formula of :mod:`dali_voc.geometry.windows`;
    ``ignore_index`` in padding."""
    values = resample(label.classes, geometry, crop_hw, fill=ignore_index)
    unknown = values == UNKNOWN  # padding holds ignore_index, never UNKNOWN
    count = int(unknown.sum())
    first = None
    if count:  # name the first one by its pixel in the file (rare: only on the way to an error or a count)
        y, x = (int(v[0]) for v in np.nonzero(unknown))
        rows, cols, _, _ = source_pixels(np.array([geometry.window]), np.array([label.classes.shape]), crop_hw,
                                         np.array([geometry.scaled]), np.array([geometry.flip]))
        first = label.describe_pixel(int(rows[0, y]), int(cols[0, x]))
    indices = np.where(unknown, ignore_index, values).astype(np.int64)
    return CroppedLabel(indices, count, first)


def decode_label_of_image(data: bytes, name: str, table: LabelTable, image_hw: tuple[int, int]) -> LabelImage:
    """:func:`decode_label`, and the label must be the size of its image ``image_hw``: what the
    label decoders use for the labels they do not decode themselves (then :func:`crop_label`).

    Raises:
        PNGFormatError: naming ``name``: damaged, or not the size of its image.
    """
    label = decode_label(data, name, table)
    if label.classes.shape != tuple(image_hw):
        raise PNGFormatError(f"{name}: label is {label.classes.shape[0]}x{label.classes.shape[1]} but its image is "
                             f"{image_hw[0]}x{image_hw[1]}")
    return label
