"""Image-only color jitter, as torch operations on a normalized batch, on the batch's device.

Both loaders apply this one function to the batches they have assembled, so the jitter is
the same code on every path (the DALI GPU path runs it on the GPU, the CPU paths on the CPU).
Per sample, four factors are drawn from ``(seed, epoch, split index)`` (:func:`draw_jitter`):
brightness ``b`` in ``[1 - B, 1 + B]``, contrast ``c`` in ``[1 - C, 1 + C]``, saturation
``s`` in ``[1 - S, 1 + S]``, hue shift ``h`` in ``[-Hh, Hh]`` turns, and applied in that order
to the RGB values in [0, 1] (torchvision's ``ColorJitter`` definitions, fixed order):

* brightness: ``v * b``; contrast: ``(v - m) * c + m`` with ``m`` the mean gray level of the
  sample's image pixels (padding excluded); saturation: ``g + (v - g) * s`` with ``g`` the
  pixel's gray level ``0.299 R + 0.587 G + 0.114 B``; each clamped to [0, 1];
* hue: the pixel's HSV hue plus ``h`` (mod 1).

Padding stays 0.0 (the normalized mean), whatever the jitter.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..config import IMAGENET_MEAN, IMAGENET_STD

#: Stream tag that keeps the jitter draws apart from the window draws of the same sample.
_JITTER_STREAM = 1
#: float32 ``[4]`` factors that change nothing (brightness, contrast, saturation, hue).
IDENTITY = (1.0, 1.0, 1.0, 0.0)


def draw_jitter(seed: int, epoch: int, ids: Sequence[int], ranges: tuple[float, float, float, float]) -> np.ndarray:
    """float32 ``[B, 4]`` jitter factors for the samples ``ids`` (split indices) in ``epoch``:
    a function of ``(seed, epoch, index)`` only, the same on every backend and shard."""
    b, c, s, h = ranges
    lo = np.array([1 - b, 1 - c, 1 - s, -h])
    hi = np.array([1 + b, 1 + c, 1 + s, h])
    out = np.empty((len(ids), 4), dtype=np.float32)
    for k, index in enumerate(ids):
        out[k] = np.random.default_rng([seed, epoch, int(index), _JITTER_STREAM]).uniform(lo, hi)
    return out


def _gray(rgb: torch.Tensor) -> torch.Tensor:
    """``[B, 3, h, w]`` -> ``[B, 1, h, w]`` gray levels (ITU-R 601 weights)."""
    return (0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3])


def _rgb_to_hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, 3, h, w]`` in [0, 1] -> hue (turns, [0, 1)), saturation, value, each ``[B, h, w]``."""
    r, g, b = rgb.unbind(1)
    maxc = rgb.amax(1)
    minc = rgb.amin(1)
    delta = maxc - minc
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hue = torch.where(maxc == r, (g - b) / safe,
                      torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(flat, torch.zeros_like(hue), hue)
    return torch.remainder(hue / 6.0, 1.0), sat, maxc


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_rgb_to_hsv`: ``[B, 3, h, w]``."""
    h6 = hue * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.to(torch.int64) % 6
    p = val * (1.0 - sat)
    q = val * (1.0 - sat * f)
    t = val * (1.0 - sat * (1.0 - f))
    choices = {0: (val, t, p), 1: (q, val, p), 2: (p, val, t), 3: (p, q, val), 4: (t, p, val), 5: (val, p, q)}
    out = torch.empty((hue.shape[0], 3) + tuple(hue.shape[1:]), dtype=hue.dtype, device=hue.device)
    for channel in range(3):
        value = choices[5][channel]
        for k in range(4, -1, -1):
            value = torch.where(sector == k, choices[k][channel], value)
        out[:, channel] = value
    return out


def apply_jitter(images: torch.Tensor, factors: np.ndarray, row_ok: np.ndarray, col_ok: np.ndarray) -> torch.Tensor:
    """Jitter a normalized batch (see the module docstring).

    Args:
        images: float32 ``[B, 3, h, w]`` ImageNet-normalized, 0.0 in padding; any device.
        factors: float32 ``[B, 4]`` (brightness, contrast, saturation, hue) per sample (host).
        row_ok, col_ok: bool ``[B, h]`` / ``[B, w]`` (host): output rows / columns inside the
            image (:func:`dali_voc.geometry.windows.source_pixels`); their product is the image's pixels.

    Host arrays in, so nothing here waits for the device; the small tables are copied to it.

    Returns a new float32 ``[B, 3, h, w]`` on the same device, normalized, 0.0 in padding.
    """
    if images.shape[0] == 0:
        return images
    device = images.device
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    with_hue = bool((factors[:, 3] != 0).any())
    factors = torch.from_numpy(np.ascontiguousarray(factors, dtype=np.float32)).to(device, non_blocking=True)
    rows = torch.from_numpy(np.ascontiguousarray(row_ok, dtype=bool)).to(device, non_blocking=True)
    cols = torch.from_numpy(np.ascontiguousarray(col_ok, dtype=bool)).to(device, non_blocking=True)
    inside = (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)  # [B, 1, h, w]
    rgb = (images * std + mean).clamp_(0.0, 1.0)
    per = factors.view(-1, 4, 1, 1)
    rgb = (rgb * per[:, 0:1]).clamp_(0.0, 1.0)
    pixels = inside.sum(dim=(1, 2, 3), keepdim=True).clamp_(min=1)
    level = (_gray(rgb) * inside).sum(dim=(1, 2, 3), keepdim=True) / pixels
    rgb = ((rgb - level) * per[:, 1:2] + level).clamp_(0.0, 1.0)
    gray = _gray(rgb)
    rgb = (gray + (rgb - gray) * per[:, 2:3]).clamp_(0.0, 1.0)
    if with_hue:
        hue, sat, val = _rgb_to_hsv(rgb)
        rgb = _hsv_to_rgb(torch.remainder(hue + factors[:, 3].view(-1, 1, 1), 1.0), sat, val)
    return (rgb - mean) / std * inside
