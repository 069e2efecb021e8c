"""Pictures of batches: the textbook's grid (images over their color labels) and overlays.

Works on what the loaders yield (normalized ``X``, index ``Y``, on any device) and writes
PNG files with PIL only.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..datasets.voc import VOC_COLORMAP, VOID_COLOR


def denormalize(x: torch.Tensor) -> np.ndarray:
    """float32 ``[B, 3, H, W]`` normalized images -> uint8 ``[B, H, W, 3]`` (CPU)."""
    x = x.detach().float().cpu()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (x * std + mean).clamp(0, 1) * 255.0
    return rgb.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def colorize(y: torch.Tensor, colormap: Sequence[tuple[int, int, int]] = VOC_COLORMAP,
             other_color: tuple[int, int, int] = VOID_COLOR) -> np.ndarray:
    """Class indices ``[B, H, W]`` -> uint8 RGB ``[B, H, W, 3]``; indices that are not classes
    (the ignore index) get ``other_color`` (VOC's void color)."""
    lut = np.tile(np.array(other_color, dtype=np.uint8), (256, 1))
    lut[: len(colormap)] = np.array(colormap, dtype=np.uint8)
    return lut[y.detach().cpu().numpy().astype(np.int64).clip(0, 255)]


def _tile(rows: list[np.ndarray], gap: int = 4) -> Image.Image:
    """Lay out ``rows`` (each uint8 ``[N, H, W, 3]``, same N/H/W) as a white-gapped grid."""
    n, h, w, _ = rows[0].shape
    canvas = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c in range(n):
            canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = row[c]
    return Image.fromarray(canvas)


def save_grid(x: torch.Tensor, y: torch.Tensor, path: os.PathLike | str, n: int = 5,
              colormap: Sequence[tuple[int, int, int]] = VOC_COLORMAP) -> str:
    """Write the first ``n`` images of a batch over their color labels (2 rows) to ``path``."""
    n = min(n, x.shape[0])
    _tile([denormalize(x[:n]), colorize(y[:n], colormap)]).save(path)
    return str(path)


def save_overlay(x: torch.Tensor, y: torch.Tensor, path: os.PathLike | str, n: int = 5,
                 alpha: float = 0.5, ignore_index: int = 255,
                 colormap: Sequence[tuple[int, int, int]] = VOC_COLORMAP) -> str:
    """Write the first ``n`` images with their labels blended on top (background and ignored
    pixels left as they are) to ``path``."""
    n = min(n, x.shape[0])
    images = denormalize(x[:n]).astype(np.float32)
    colors = colorize(y[:n], colormap).astype(np.float32)
    labels = y[:n].detach().cpu().numpy()
    blend = ((labels != 0) & (labels != ignore_index))[..., None] * alpha
    _tile([(images * (1 - blend) + colors * blend).round().astype(np.uint8)]).save(path)
    return str(path)
