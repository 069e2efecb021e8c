"""Crop windows: one window per sample, shared by its image and its label.

A window is ``(top, left)`` plus the crop size. With the ``drop`` policy the window lies
inside the image; with ``pad`` an image smaller than the crop gets a negative anchor in the
short dimension, i.e. the image sits at a random offset inside the padded window. In each
dimension the anchor is uniform over the integers between 0 and ``image - crop``, which is
the textbook's ``RandomCrop`` when the image is large enough.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import numpy as np


class CropWindow(NamedTuple):
    """Top-left anchor of a crop in image pixels (may be negative under padding)."""

    top: int
    left: int


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


def valid_masks(windows: np.ndarray, shapes: np.ndarray, crop_hw: tuple[int, int]) -> np.ndarray:
    """bool ``[B, crop_h, crop_w]``: True where each sample's window covers image pixels.

    ``windows``: int ``[B, 2]`` anchors (top, left); ``shapes``: int ``[B, 2]`` image
    (height, width). The one definition of "inside the image" that every label path uses."""
    windows = np.asarray(windows).reshape(-1, 2)
    shapes = np.asarray(shapes).reshape(-1, 2)
    rows = np.arange(crop_hw[0])[None, :] + windows[:, :1]
    cols = np.arange(crop_hw[1])[None, :] + windows[:, 1:2]
    rows_ok = (rows >= 0) & (rows < shapes[:, :1])
    cols_ok = (cols >= 0) & (cols < shapes[:, 1:2])
    return rows_ok[:, :, None] & cols_ok[:, None, :]


def valid_mask(window: CropWindow, image_hw: tuple[int, int], crop_hw: tuple[int, int]) -> np.ndarray:
    """bool ``[crop_h, crop_w]``: :func:`valid_masks` of one sample."""
    return valid_masks(np.array([window]), np.array([image_hw]), crop_hw)[0]


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
