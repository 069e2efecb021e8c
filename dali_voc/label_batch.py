"""The label-decoder interface: what goes in (:class:`LabelBatch`), what comes out
(:class:`DecodedLabels`) and what a decoder provides (:class:`LabelDecoder`).

Implementations: :mod:`dali_voc.label_decoders` (NumPy, and the choice of decoder),
:mod:`dali_voc.gpu_labels` (CuPy), :mod:`dali_voc.gpu_png` (nvCOMP).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
import torch


class LabelBatch(NamedTuple):
    """One batch of labels as the DALI pipeline delivers them.

    Attributes:
        data: uint8. Color decoders: ``[B, crop_h, crop_w, 3]`` label colors at each sample's
            window (0 in padding), on the CPU or the GPU. The nvCOMP decoder: ``[B, L]`` the PNG
            files' bytes, zero-padded to the longest, on the CPU.
        windows: int32 ``[B, 2]`` crop anchors ``(top, left)`` in image pixels.
        shapes: int32 ``[B, 2]`` full image ``(height, width)``.
        paths: the label file of each slot (for error messages).
    """

    data: torch.Tensor
    windows: np.ndarray
    shapes: np.ndarray
    paths: tuple[str, ...]


class DecodedLabels(NamedTuple):
    """Labels of one batch.

    Attributes:
        labels: int64 or uint8 ``[B, crop_h, crop_w]``, values in ``[0, 20]`` or
            ``ignore_index``; on the loader's device.
        unknown: int64 ``[B]`` pixels per sample whose color the table does not know (mapped
            to ``ignore_index``); on the same device (read by the host only when needed).
    """

    labels: torch.Tensor
    unknown: torch.Tensor


class LabelDecoder(Protocol):
    """What the DALI loader needs of a label decoder."""

    #: A few words for the loader's description, e.g. ``"labels inflated on the GPU (nvCOMP)"``.
    description: str
    #: Labels decoded per image on the CPU because the fast path does not take them.
    fallback_images: int

    def decode(self, batch: LabelBatch) -> DecodedLabels:
        """Class indices of one batch (work may still be queued on the device)."""

    def finish(self) -> None:
        """Raise :class:`~dali_voc.errors.PNGFormatError` for a damaged label found after its
        batch was returned (checked late so the host never waits on the device); no-op else."""
