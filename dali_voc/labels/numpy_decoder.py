"""Label colors on the CPU -> class indices (NumPy): the decoder of the DALI loader on CPU
operators with ``label_decoder="dali"``, after DALI decoded (and, without augmentation,
cropped) the label PNGs. With augmentation it resamples the whole labels (scale, crop, flip) by
the formula of :mod:`dali_voc.geometry.windows`. :mod:`dali_voc.labels.choice` says which
decoder a loader gets.
"""

from __future__ import annotations

import numpy as np
import torch

from .tables import LabelTable, colors_to_indices
from .decoder import DecodedLabels, LabelBatch, label_on_host
from ..geometry.windows import valid_masks


class NumpyColorDecoder:
    """Label colors on the CPU -> class indices through the color table (NumPy)."""

    description = "labels decoded by DALI (CPU), mapped by NumPy"
    fallback_images = 0

    def __init__(self, table: LabelTable, crop_hw: tuple[int, int], dtype: torch.dtype):
        self.table, self.crop_hw, self.dtype = table, crop_hw, dtype

    def decode(self, batch: LabelBatch) -> DecodedLabels:
        colors = batch.data.numpy()
        if not batch.whole:  # cropped by DALI
            masks = valid_masks(batch.geometry.windows, batch.shapes, self.crop_hw)
        else:  # whole labels: resample them here (the formula of dali_voc.geometry.windows)
            rows, cols, row_ok, col_ok = batch.geometry.source_pixels(batch.shapes, self.crop_hw)
            colors = colors[np.arange(len(colors))[:, None, None], rows[:, :, None], cols[:, None, :]]
            masks = row_ok[:, :, None] & col_ok[:, None, :]
        result = colors_to_indices(colors, self.table, valid=masks)
        indices, unknown = result.indices, result.unknown_per_label.copy()
        for slot in batch.host_slots:
            exact = label_on_host(batch, slot, self.crop_hw, self.table)
            indices[slot], unknown[slot] = exact.indices, exact.unknown_pixels
        labels = torch.from_numpy(indices).to(self.dtype)
        return DecodedLabels(labels, torch.from_numpy(unknown))

    def finish(self) -> None:
        return None
