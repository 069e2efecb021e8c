"""The label-decoder interface: what goes in (:class:`LabelBatch`), what comes out
(:class:`DecodedLabels`) and what a decoder provides (:class:`LabelDecoder`).

Implementations: :mod:`dali_voc.labels.numpy_decoder` (NumPy, and the choice of decoder),
:mod:`dali_voc.labels.cupy_decoder` (CuPy), :mod:`dali_voc.labels.nvcomp_decoder` (nvCOMP).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol

import numpy as np
import torch

from .tables import LabelTable
from ..datasets.packed import read_source
from .host import CroppedLabel, label_at_window
from ..geometry.windows import CropWindow


class LabelBatch(NamedTuple):
    """One batch of labels as the DALI pipeline delivers them.

    Attributes:
        data: uint8. Color decoders: ``[B, crop_h, crop_w, 3]`` label colors at each sample's
            window (0 in padding), or with ``scaled`` given ``[B, Hmax, Wmax, 3]`` the whole
            labels' colors, zero-padded to the batch's largest; on the CPU or the GPU. The
            nvCOMP decoder: ``[B, L]`` the PNG files' bytes, zero-padded to the longest, on the CPU.
        windows: int32 ``[B, 2]`` crop anchors ``(top, left)`` in (scaled) image pixels.
        shapes: int32 ``[B, 2]`` full image ``(height, width)`` as stored.
        paths: the label file of each slot (a path, or a packed
            :class:`~dali_voc.datasets.packed.MemberRef`; ``str()`` names it in messages).
        host_slots: slots whose label a color decoder must decode from the file on the host
            (:mod:`dali_voc.labels.host`) instead of trusting DALI's colors: labels whose palette
            is shorter than their bit depth can index. DALI's PNG decoder gives an index without
            a palette entry the color black (class 0); the contract makes it an unknown color.
        scaled: int32 ``[B, 2]`` drawn scaled ``(height, width)`` or ``None`` (no augmentation:
            labels are not resampled, and color decoders get them cropped).
        flips: int32 ``[B]`` 1 where the crop is mirrored, or ``None``.
    """

    data: torch.Tensor
    windows: np.ndarray
    shapes: np.ndarray
    paths: tuple[str, ...]
    host_slots: tuple[int, ...] = ()
    scaled: Optional[np.ndarray] = None
    flips: Optional[np.ndarray] = None

    def geometry(self, slot: int) -> tuple[CropWindow, tuple[int, int], Optional[tuple[int, int]], bool]:
        """Slot ``slot``'s window, image size, scaled size (or ``None``) and flip."""
        window = CropWindow(int(self.windows[slot, 0]), int(self.windows[slot, 1]))
        image_hw = (int(self.shapes[slot, 0]), int(self.shapes[slot, 1]))
        scaled = None if self.scaled is None else (int(self.scaled[slot, 0]), int(self.scaled[slot, 1]))
        flip = self.flips is not None and bool(self.flips[slot])
        return window, image_hw, scaled, flip


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


def label_on_host(batch: LabelBatch, slot: int, crop_hw: tuple[int, int], table: LabelTable) -> CroppedLabel:
    """Slot ``slot`` of ``batch`` decoded from its file on the host (for ``batch.host_slots``).

    Raises:
        PNGFormatError: naming the file (damaged, or not the size of its image).
    """
    data = read_source(batch.paths[slot])  # a file, or a packed shard's member
    window, image_hw, scaled, flip = batch.geometry(slot)
    return label_at_window(data, str(batch.paths[slot]), window, image_hw, crop_hw, table, scaled, flip)
