"""Training augmentation: what is drawn per sample, the presets, and the reference path's draws.

Per sample, drawn once and applied to the image and its label by construction:

* a scale ``s`` uniform in ``scale_range``; the sample is resized to
  ``scaled = (max(1, floor(f * H + 0.5)), max(1, floor(f * W + 0.5)))`` with ``f = s`` or,
  with a ``scale_base``, ``f = s * scale_base / min(H, W)`` (the shorter side becomes
  ``s * scale_base``, as torchvision's and mmsegmentation's VOC recipes do);
* a crop window in the scaled image (:mod:`dali_voc.geometry.windows`; padded where the scaled image
  is smaller than the crop);
* a horizontal flip with probability ``flip_prob`` (mirrors the crop);
* for the image only, photometric jitter (:mod:`dali_voc.loaders.photometric`).

The DALI pipeline draws these in its graph and reports the integers it drew (``scaled``,
window, flip); labels are then resampled from those integers by the one formula of
:mod:`dali_voc.geometry.windows` on every label path, so paths agree exactly whatever float
arithmetic produced the draw. The reference path draws its own from ``(seed, epoch, sample)``
(:func:`draw_geometry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from .windows import CropWindow, SampleGeometry, anchor_from_uniform

Preset = Literal["textbook", "torchvision", "mmseg"]


@dataclass(frozen=True)
class Augmentation:
    """The augmentation in effect (a preset overlaid with explicit settings).

    Attributes:
        scale_range: ``(lo, hi)`` of the uniform scale draw, or ``None``: no resizing.
        scale_base: shorter side (pixels) at scale 1.0, or 0: the scale is relative to the image.
        flip_prob: probability of a horizontal flip, in [0, 1].
        jitter: ``(brightness, contrast, saturation, hue)`` ranges of the image-only color
            jitter (:mod:`dali_voc.loaders.photometric`), or ``None``: no jitter.
    """

    scale_range: Optional[tuple[float, float]] = None
    scale_base: int = 0
    flip_prob: float = 0.0
    jitter: Optional[tuple[float, float, float, float]] = None

    @property
    def geometric(self) -> bool:
        """Whether samples are scaled or flipped (labels then leave DALI whole, see ``pipeline``)."""
        return self.scale_range is not None or self.flip_prob > 0.0


#: ``augment=`` presets. ``"textbook"``: one random crop (the chapter's, and the default).
#: ``"torchvision"``: torchvision's ``references/segmentation`` VOC training preset: shorter
#: side 0.5-2.0 x 520, flip 0.5, crop (padding with the ignore index); no color jitter.
#: ``"mmseg"``: mmsegmentation's VOC config: ratio 0.5-2.0 of a 512 shorter side, crop,
#: flip 0.5, photometric distortion (here as brightness/contrast/saturation 0.125/0.5/0.5 and
#: hue 0.1 turn, drawn per sample in a fixed order; mmseg's additive brightness, random order
#: and ``cat_max_ratio`` re-cropping are not reproduced).
PRESETS: dict[str, Augmentation] = {
    "textbook": Augmentation(),
    "torchvision": Augmentation(scale_range=(0.5, 2.0), scale_base=520, flip_prob=0.5),
    "mmseg": Augmentation(scale_range=(0.5, 2.0), scale_base=512, flip_prob=0.5, jitter=(0.125, 0.5, 0.5, 0.1)),
}


def check_augmentation(aug: Augmentation) -> None:
    """Raise ``ValueError`` naming the setting that is out of range."""
    if aug.scale_range is not None:
        lo, hi = aug.scale_range
        if not (0.0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {aug.scale_range!r}")
    if aug.scale_base < 0:
        raise ValueError(f"scale_base must be >= 0 (0: relative to the image), got {aug.scale_base}")
    if not 0.0 <= aug.flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {aug.flip_prob}")
    if aug.jitter is not None:
        if len(aug.jitter) != 4 or min(aug.jitter) < 0:
            raise ValueError(f"jitter must be 4 non-negative ranges (brightness, contrast, saturation, hue), "
                             f"got {aug.jitter!r}")
        if max(aug.jitter[:3]) > 1.0 or aug.jitter[3] > 0.5:
            raise ValueError(f"jitter ranges: brightness, contrast, saturation at most 1.0 and hue at most 0.5, "
                             f"got {aug.jitter!r}")


def scale_factor(image_hw: tuple[int, int], scale: float, scale_base: int) -> float:
    """``f`` of the module docstring: ``scale``, or ``scale * scale_base / min(H, W)``."""
    return scale * scale_base / min(image_hw) if scale_base else scale


def scaled_size(image_hw: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(max(1, floor(f * H + 0.5)), max(1, floor(f * W + 0.5)))``."""
    return tuple(max(1, int(math.floor(factor * v + 0.5))) for v in image_hw)  # type: ignore[return-value]


def draw_geometry(rng: np.random.Generator, image_hw: tuple[int, int], crop_hw: tuple[int, int],
                  aug: Augmentation) -> SampleGeometry:
    """One sample's geometry from ``rng`` (the reference path). The window's two uniforms are
    drawn first, so without augmentation the windows are the textbook loader's."""
    u_y, u_x = rng.random(2)
    scaled = tuple(image_hw)
    if aug.scale_range is not None:
        s = rng.uniform(*aug.scale_range)
        scaled = scaled_size(image_hw, scale_factor(image_hw, s, aug.scale_base))
    flip = bool(rng.random() < aug.flip_prob) if aug.flip_prob > 0 else False
    window = CropWindow(anchor_from_uniform(u_y, scaled[0], crop_hw[0]), anchor_from_uniform(u_x, scaled[1], crop_hw[1]))
    return SampleGeometry(window, (int(scaled[0]), int(scaled[1])), flip)
