"""Where each output pixel of a sample comes from: crop windows, scaling and flips.

A window is ``(top, left)`` plus the crop size. With the ``drop`` policy the window lies
inside the image; with ``pad`` an image smaller than the crop gets a negative anchor in the
short dimension, i.e. the image sits at a random offset inside the padded window. In each
dimension the anchor is uniform over the integers between 0 and ``image - crop``, which is
the textbook's ``RandomCrop`` when the image is large enough.

With augmentation a sample is also scaled to ``(scaled_h, scaled_w)`` and may be flipped
horizontally; the window then lies in the scaled image and the flip mirrors the crop. Labels
are resampled by nearest neighbour with ONE integer formula (:func:`source_pixels`, and the
same text in C for the GPU kernels, :data:`SOURCE_PIXEL_C`): output pixel ``(y, x)`` reads

    ty = top + y,   tx = left + (crop_w - 1 - x if flip else x)
    inside = 0 <= ty < scaled_h and 0 <= tx < scaled_w
    sy = ((2 * ty + 1) * H) // (2 * scaled_h),   sx = ((2 * tx + 1) * W) // (2 * scaled_w)

i.e. the source pixel whose extent contains the centre of the scaled pixel, in exact integer
arithmetic (``sy < H`` always). Unscaled (``scaled == (H, W)``) it is the plain crop.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np


class CropWindow(NamedTuple):
    """Top-left anchor of a crop in image pixels (may be negative under padding)."""

    top: int
    left: int


class SampleGeometry(NamedTuple):
    """What one sample's image and label go through: crop ``window`` in the image scaled to
    ``scaled`` (height, width; the image's own size when it is not rescaled), mirrored when
    ``flip``."""

    window: CropWindow
    scaled: tuple[int, int]
    flip: bool


#: The columns of :attr:`BatchGeometry.table`, the one per-sample geometry layout every label
#: kernel reads (CuPy's color kernel, nvCOMP's crop+map kernel, their host emulations).
GEOMETRY_COLUMNS = ("top", "left", "scaled_height", "scaled_width", "flip")


class BatchGeometry(NamedTuple):
    """The geometry of a batch: int32 ``[B, 5]`` rows of :data:`GEOMETRY_COLUMNS`, on the CPU.

    A scaled size of ``(0, 0)`` stands for "the label's own size", for batches whose labels'
    sizes are only known once their files are parsed (:meth:`with_own_sizes` fills it in).
    """

    table: np.ndarray

    @classmethod
    def of(cls, windows: np.ndarray, scaled: Optional[np.ndarray] = None,
           flips: Optional[np.ndarray] = None) -> "BatchGeometry":
        """From int ``[B, 2]`` anchors (top, left), optional int ``[B, 2]`` scaled sizes
        (``None``: each label's own size) and optional ``[B]`` flips (``None``: none)."""
        windows = np.asarray(windows).reshape(-1, 2)
        table = np.zeros((len(windows), len(GEOMETRY_COLUMNS)), dtype=np.int32)
        table[:, 0:2] = windows
        if scaled is not None:
            table[:, 2:4] = np.asarray(scaled).reshape(-1, 2)
        if flips is not None:
            table[:, 4] = np.asarray(flips).reshape(-1)
        return cls(table)

    @classmethod
    def of_samples(cls, samples: Sequence[SampleGeometry]) -> "BatchGeometry":
        """From one :class:`SampleGeometry` per slot."""
        return cls(np.array([[g.window.top, g.window.left, g.scaled[0], g.scaled[1], int(g.flip)] for g in samples],
                            dtype=np.int32).reshape(-1, len(GEOMETRY_COLUMNS)))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def windows(self) -> np.ndarray:
        """int32 ``[B, 2]`` anchors (top, left)."""
        return self.table[:, 0:2]

    @property
    def scaled(self) -> np.ndarray:
        """int32 ``[B, 2]`` scaled (height, width)."""
        return self.table[:, 2:4]

    @property
    def flips(self) -> np.ndarray:
        """int32 ``[B]``: 1 where the crop is mirrored."""
        return self.table[:, 4]

    def with_own_sizes(self, shapes: np.ndarray) -> "BatchGeometry":
        """This geometry with every ``(0, 0)`` scaled size replaced by that slot's ``shapes``
        (int ``[B, 2]``, the labels' own sizes)."""
        own = (self.table[:, 2] == 0) & (self.table[:, 3] == 0)
        if not own.any():
            return self
        table = self.table.copy()
        table[own, 2:4] = np.asarray(shapes).reshape(-1, 2)[own]
        return BatchGeometry(table)

    def sample(self, slot: int) -> SampleGeometry:
        """Slot ``slot``'s geometry (its scaled size must be known: see :meth:`with_own_sizes`)."""
        top, left, height, width, flip = (int(v) for v in self.table[slot])
        return SampleGeometry(CropWindow(top, left), (height, width), bool(flip))

    def source_pixels(self, shapes: np.ndarray,
                      crop_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:func:`source_pixels` of this batch, whose labels are int ``[B, 2]`` ``shapes``."""
        own = self.with_own_sizes(shapes)
        return source_pixels(own.windows, shapes, crop_hw, own.scaled, own.flips)


def anchor_range(image_extent: int, crop_extent: int) -> tuple[int, int]:
    """Inclusive range ``(lo, hi)`` of valid anchors along one dimension."""
    slack = image_extent - crop_extent
    return (min(0, slack), max(0, slack))


def anchor_from_uniform(u: float, image_extent: int, crop_extent: int) -> int:
    """Integer anchor from ``u`` in [0, 1): uniform over :func:`anchor_range`.

    The DALI pipeline does the same arithmetic in its graph (see ``pipeline.py``).
    """
    slack = image_extent - crop_extent
    k = min(int(np.floor(u * (abs(slack) + 1))), abs(slack))
    return k if slack >= 0 else -k


def random_window(rng: np.random.Generator, image_hw: tuple[int, int], crop_hw: tuple[int, int]) -> CropWindow:
    """Draw one window for an image of ``image_hw`` and a crop of ``crop_hw`` (both (h, w))."""
    u_y, u_x = rng.random(2)
    return CropWindow(anchor_from_uniform(u_y, image_hw[0], crop_hw[0]),
                      anchor_from_uniform(u_x, image_hw[1], crop_hw[1]))


#: The label resampling formula of the module docstring as C, for the GPU kernels. Expects ints
#: ``top, left, sh, sw`` (scaled size), ``H, W`` (image size), ``flip`` (0/1), ``y, x`` (output
#: pixel) and ``w`` (crop width) in scope; defines ``inside`` and the source pixel ``sy, sx``.
SOURCE_PIXEL_C = r"""
const int ty = top + y;
const int tx = left + (flip ? w - 1 - x : x);
const bool inside = ty >= 0 && ty < sh && tx >= 0 && tx < sw;
const int sy = inside ? (int)(((2LL * ty + 1) * H) / (2LL * sh)) : 0;
const int sx = inside ? (int)(((2LL * tx + 1) * W) / (2LL * sw)) : 0;
"""


def source_pixels(windows: np.ndarray, shapes: np.ndarray, crop_hw: tuple[int, int],
                  scaled: Optional[np.ndarray] = None,
                  flips: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The label resampling formula (module docstring) for a batch.

    Args:
        windows: int ``[B, 2]`` anchors (top, left) in the scaled image.
        shapes: int ``[B, 2]`` image (height, width) as stored.
        crop_hw: output (height, width).
        scaled: int ``[B, 2]`` scaled (height, width); ``None``: unscaled (``shapes``).
        flips: bool/int ``[B]`` horizontal flip of the crop; ``None``: no flips.

    Returns ``(rows, cols, row_ok, col_ok)``: int64 ``[B, crop_h]`` / ``[B, crop_w]`` source
    row / column of each output row / column (0 where outside), and bool masks of the same
    shapes saying which output rows / columns fall inside the scaled image.
    """
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    scaled = shapes if scaled is None else np.asarray(scaled, dtype=np.int64).reshape(-1, 2)
    crop_h, crop_w = crop_hw
    x = np.arange(crop_w)[None, :]
    if flips is not None:
        x = np.where(np.asarray(flips, dtype=bool).reshape(-1, 1), crop_w - 1 - x, x)
    ty = np.arange(crop_h)[None, :] + windows[:, :1]
    tx = x + windows[:, 1:2]
    row_ok = (ty >= 0) & (ty < scaled[:, :1])
    col_ok = (tx >= 0) & (tx < scaled[:, 1:2])
    rows = np.where(row_ok, ((2 * ty + 1) * shapes[:, :1]) // (2 * scaled[:, :1]), 0)
    cols = np.where(col_ok, ((2 * tx + 1) * shapes[:, 1:2]) // (2 * scaled[:, 1:2]), 0)
    return rows, cols, row_ok, col_ok


def valid_masks(windows: np.ndarray, shapes: np.ndarray, crop_hw: tuple[int, int],
                scaled: Optional[np.ndarray] = None, flips: Optional[np.ndarray] = None) -> np.ndarray:
    """bool ``[B, crop_h, crop_w]``: True where each sample's output pixel covers image pixels.

    ``windows``: int ``[B, 2]`` anchors (top, left); ``shapes``: int ``[B, 2]`` image
    (height, width); ``scaled``, ``flips``: see :func:`source_pixels`. The one definition of
    "inside the image" that every label path uses."""
    _, _, row_ok, col_ok = source_pixels(windows, shapes, crop_hw, scaled, flips)
    return row_ok[:, :, None] & col_ok[:, None, :]


def valid_mask(window: CropWindow, image_hw: tuple[int, int], crop_hw: tuple[int, int],
               scaled: Optional[tuple[int, int]] = None, flip: bool = False) -> np.ndarray:
    """bool ``[crop_h, crop_w]``: :func:`valid_masks` of one sample."""
    return valid_masks(np.array([window]), np.array([image_hw]), crop_hw,
                       None if scaled is None else np.array([scaled]), np.array([flip]))[0]


def resample(array: np.ndarray, geometry: SampleGeometry, crop_hw: tuple[int, int],
             fill: Union[int, float] = 0) -> np.ndarray:
    """``array`` (``[H, W]`` or ``[H, W, C]``) resampled by :func:`source_pixels` to
    ``crop_hw``: scaled to ``geometry.scaled`` (nearest neighbour), cropped at its window,
    flipped; ``fill`` outside the scaled image. Returns a new array of the same dtype."""
    rows, cols, row_ok, col_ok = source_pixels(np.array([geometry.window]), np.array([array.shape[:2]]), crop_hw,
                                               np.array([geometry.scaled]), np.array([geometry.flip]))
    out = array[rows[0][:, None], cols[0][None, :]]
    inside = row_ok[0][:, None] & col_ok[0][None, :]
    out[~inside] = fill
    return out


def crop_with_pad(array: np.ndarray, window: CropWindow, crop_hw: tuple[int, int],
                  fill: Union[int, float] = 0) -> np.ndarray:
    """Crop ``array`` (``[H, W]`` or ``[H, W, C]``) to ``crop_hw`` at ``window``; pixels
    outside the image are ``fill``. Returns a new array of the same dtype."""
    crop_h, crop_w = crop_hw
    height, width = array.shape[:2]
    out = np.full((crop_h, crop_w) + array.shape[2:], fill, dtype=array.dtype)
    y0, x0 = max(window.top, 0), max(window.left, 0)
    y1, x1 = min(window.top + crop_h, height), min(window.left + crop_w, width)
    if y1 > y0 and x1 > x0:
        out[y0 - window.top:y1 - window.top, x0 - window.left:x1 - window.left] = array[y0:y1, x0:x1]
    return out
