"""Label pixel -> class index: the lookup tables every label path reads.

Two kinds, with one interface (``lut``, ``palette_lut``, ``ignore_index``, ``by_value``):
:class:`ColorTable` maps colors (VOC: a label pixel is an RGB color) and :class:`ValueTable`
maps stored 8-bit values (class-index PNGs: SBD trainaug, ADE20K, Cityscapes labelIds).
Each dataset's spec builds its own (:attr:`dali_voc.dataset_specs.DatasetSpec.label_table`);
:meth:`dali_voc.config.LoaderConfig.label_table` is the one a config needs.

A VOC label pixel is an RGB color. Packing it as ``key = (r << 16) | (g << 8) | b`` and
reading ``table[key]`` gives its class. Every path uses :attr:`ColorTable.lut`: the reference
loader and the DALI CPU path through :func:`colors_to_indices` (NumPy); DALI's GPU path
through the CuPy kernel in :mod:`dali_voc.labels.cupy_decoder`, which uploads this same array; and the
nvCOMP path through :meth:`ColorTable.palette_lut`, this table applied to each PNG's palette
(:mod:`dali_voc.labels.nvcomp_plan`), so palette indices map without expanding to RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Sequence, Union

import numpy as np

#: Table value of a color that is neither a class nor void.
UNKNOWN = -1
NUM_KEYS = 1 << 24



def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack uint8 RGB ``[..., 3]`` into uint32 keys ``(r << 16) | (g << 8) | b`` ``[...]`` in
    ``[0, 2**24)``.

    The bytes are laid out as a little-endian uint32 ``(b, g, r, 0)`` and viewed as one: a
    single pass over the data instead of widening and shifting each channel (it runs on the main
    thread of the DALI CPU loader, for every label pixel).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 RGB [..., 3], got {rgb.dtype} {rgb.shape}")
    quad = np.zeros(rgb.shape[:-1] + (4,), dtype=np.uint8)
    quad[..., 0] = rgb[..., 2]
    quad[..., 1] = rgb[..., 1]
    quad[..., 2] = rgb[..., 0]
    return quad.view("<u4")[..., 0]


@dataclass(frozen=True)
class ColorTable:
    """Which color means which class, and where void, padding and unknown colors go.

    Attributes:
        colormap: class ``i`` has color ``colormap[i]`` (RGB, 0-255).
        void_color: the border/void color; it maps to ``void_index``.
        void_index: 0 (the textbook: void is background) or ``ignore_index``.
        ignore_index: value of padding and of unknown colors (never a class index).
    """

    colormap: tuple[tuple[int, int, int], ...]
    void_color: tuple[int, int, int]
    void_index: int = 0
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if len(self.colormap) > self.ignore_index:
            raise ValueError(f"ignore_index {self.ignore_index} collides with one of {len(self.colormap)} classes")
        if len(set(self.colormap)) != len(self.colormap) or self.void_color in self.colormap:
            raise ValueError("colormap colors and the void color must all differ")
        if self.void_index not in (0, self.ignore_index):
            raise ValueError(f"void_index must be 0 or ignore_index ({self.ignore_index}), got {self.void_index}")

    #: Palette labels map by their palette's colors (what DALI's PNG decoder outputs, too).
    by_value = False

    @property
    def num_classes(self) -> int:
        return len(self.colormap)

    @cached_property
    def lut(self) -> np.ndarray:
        """int16 ``[2**24]``: class index of each packed color, ``void_index`` for void,
        :data:`UNKNOWN` (-1) for every other color. 32 MiB, built once per table."""
        lut = np.full(NUM_KEYS, UNKNOWN, dtype=np.int16)
        keys = pack_rgb(np.array(self.colormap, dtype=np.uint8))
        lut[keys] = np.arange(len(self.colormap), dtype=np.int16)
        lut[pack_rgb(np.array(self.void_color, dtype=np.uint8))] = self.void_index
        return lut

    def palette_lut(self, palette: Sequence[int]) -> np.ndarray:
        """int16 ``[256]``: the table applied to a PNG palette (flat ``[r, g, b, ...]``).

        Lets a palette-index label map through the same table without expanding to RGB.
        Entries past the palette's length are :data:`UNKNOWN`.
        """
        colors = np.zeros((256, 3), dtype=np.uint8)
        flat = np.asarray(palette, dtype=np.uint8)[: 768 - 768 % 3].reshape(-1, 3)
        colors[: len(flat)] = flat
        out = self.lut[pack_rgb(colors)]
        out[len(flat):] = UNKNOWN
        return out


@dataclass(frozen=True)
class ValueTable:
    """Which stored 8-bit value (gray level, or palette index) means which class.

    Attributes:
        classes: 256 entries: the class (``[0, num_classes)``), ``ignore_index``, or
            :data:`UNKNOWN` for a value the dataset never uses (counted like an unknown color).
        num_classes: number of classes.
        ignore_index: value of padding and of unknown values.
    """

    classes: tuple[int, ...]
    num_classes: int
    ignore_index: int = 255

    #: Palette labels map by index, so DALI's decoder (which outputs palette colors) cannot
    #: map them: the loaders decode such labels on the host (``LabelBatch.host_slots``).
    by_value = True

    def __post_init__(self) -> None:
        if len(self.classes) != 256:
            raise ValueError(f"a value table has 256 entries, got {len(self.classes)}")
        bad = sorted({c for c in self.classes if not (0 <= c < self.num_classes or c in (UNKNOWN, self.ignore_index))})
        if bad or self.ignore_index < self.num_classes:
            raise ValueError(f"value table entries must be classes, {self.ignore_index} (ignore) or {UNKNOWN}; "
                             f"got {bad[:5]}, ignore_index {self.ignore_index}")

    @cached_property
    def lut(self) -> np.ndarray:
        """int16 ``[2**24]`` over packed colors: DALI decodes an 8-bit gray label to the color
        ``(v, v, v)``, which maps to ``classes[v]``; every other color is :data:`UNKNOWN`."""
        lut = np.full(NUM_KEYS, UNKNOWN, dtype=np.int16)
        gray = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
        lut[pack_rgb(gray)] = np.array(self.classes, dtype=np.int16)
        return lut

    def palette_lut(self, palette: Sequence[int]) -> np.ndarray:
        """int16 ``[256]``: value -> class for an 8-bit label whose "palette" is ``palette``
        (flat ``[r, g, b, ...]``; the gray ramp for gray labels): by index, whatever the colors.
        Indices past the palette's length are :data:`UNKNOWN`."""
        entries = min(256, len(palette) // 3)
        out = np.full(256, UNKNOWN, dtype=np.int16)
        out[:entries] = np.array(self.classes[:entries], dtype=np.int16)
        return out


#: Either kind of table (both have ``lut``, ``palette_lut``, ``ignore_index``, ``by_value``).
LabelTable = Union[ColorTable, ValueTable]


@dataclass(frozen=True)
class ConversionResult:
    """Class indices of one or more labels and what the table did not know.

    Attributes:
        indices: ``[..., H, W]`` class indices (int64 or uint8), ``ignore_index`` where void
            is ignored, outside the image (padding) and at unknown colors.
        unknown_pixels: how many pixels had an unknown color (padding is not counted).
        first_unknown: the first unknown color seen as ``(r, g, b)``, or ``None``.
        unknown_per_label: int64 ``[...]``: ``unknown_pixels`` of each label of a batch (the
            leading dimensions of the input; a 0-d array for one label).
    """

    indices: np.ndarray
    unknown_pixels: int
    first_unknown: Optional[tuple[int, int, int]]
    unknown_per_label: np.ndarray


def colors_to_indices(rgb: np.ndarray, table: LabelTable, valid: Optional[np.ndarray] = None,
                      dtype: np.dtype = np.int64) -> ConversionResult:
    """Map uint8 RGB labels ``[..., H, W, 3]`` to class indices ``[..., H, W]`` (NumPy, CPU).

    Args:
        rgb: label colors, uint8.
        table: the color table.
        valid: optional bool mask broadcastable to ``[..., H, W]``; ``False`` marks padding,
            which becomes ``ignore_index`` whatever its color and is never counted as unknown.
        dtype: output dtype (``np.int64`` or ``np.uint8``).
    """
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB [..., H, W, 3], got {rgb.dtype} {rgb.shape}")
    values = table.lut[pack_rgb(rgb)]
    unknown = values == UNKNOWN
    if valid is not None:
        unknown &= valid
        values = np.where(valid, values, table.ignore_index)
    per_label = unknown.sum(axis=(-2, -1), dtype=np.int64)
    count = int(per_label.sum())
    first = None
    if count:
        first = tuple(int(c) for c in rgb[unknown][0])
        values = np.where(unknown, table.ignore_index, values)
    return ConversionResult(values.astype(dtype, copy=False), count, first, per_label)  # type: ignore[arg-type]
