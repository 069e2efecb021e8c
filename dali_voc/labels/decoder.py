"""The label-decoder interface: what goes in (:class:`LabelBatch`), what comes out
(:class:`DecodedLabels`) and what a decoder provides (:class:`LabelDecoder`).

Implementations (chosen by :mod:`dali_voc.labels.choice`): :mod:`dali_voc.labels.numpy_decoder` (NumPy),
:mod:`dali_voc.labels.zlib_decoder` (zlib on CPU threads),
:mod:`dali_voc.labels.cupy_decoder` (CuPy), :mod:`dali_voc.labels.nvcomp_decoder` (nvCOMP).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Union

import numpy as np
import torch

from .tables import LabelTable
from .host import CroppedLabel, crop_label, decode_label_of_image, label_bytes
from ..geometry.windows import BatchGeometry
from ..storage.members import MemberRef


class LabelBatch(NamedTuple):
    """One batch of labels as the DALI pipeline delivers them.

    Attributes:
        data: uint8. Color decoders: ``[B, crop_h, crop_w, 3]`` label colors at each sample's
            window (0 in padding), or with ``whole`` set ``[B, Hmax, Wmax, 3]`` the whole
            labels' colors, zero-padded to the batch's largest; on the CPU or the GPU. The
            nvCOMP decoder: ``[B, L]`` the PNG files' bytes, zero-padded to the longest, on the CPU.
        geometry: each sample's window, scaled size and flip (:class:`BatchGeometry`; unscaled
            samples carry their image's size).
        shapes: int32 ``[B, 2]`` full image ``(height, width)`` as stored.
        paths: the label file of each slot (a path, or a packed
            :class:`~dali_voc.datasets.packed.MemberRef`; ``str()`` names it in messages).
        host_slots: slots whose label a color decoder must decode from the file on the host
            (:mod:`dali_voc.labels.host`) instead of trusting DALI's colors: labels whose palette
            is shorter than their bit depth can index. DALI's PNG decoder gives an index without
            a palette entry the color black (class 0); the contract makes it an unknown color.
        whole: the color decoders get whole labels and resample them (augmentation), instead
            of labels DALI already cropped.
    """

    data: torch.Tensor
    geometry: BatchGeometry
    shapes: np.ndarray
    paths: tuple[Union[str, MemberRef], ...]
    host_slots: tuple[int, ...] = ()
    whole: bool = False


class DecodedLabels(NamedTuple):
    """Labels of one batch.

    Attributes:
        labels: int64 or uint8 ``[B, crop_h, crop_w]``, values in ``[0, num_classes)`` (the dataset's classes) or
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
    data = label_bytes(batch.paths[slot])  # a file, or a packed shard's member
    image_hw = (int(batch.shapes[slot, 0]), int(batch.shapes[slot, 1]))
    label = decode_label_of_image(data, str(batch.paths[slot]), table, image_hw)
    return crop_label(label, batch.geometry.sample(slot), crop_hw, table.ignore_index)
