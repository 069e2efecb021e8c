"""The batch a loader yields with ``return_meta=True``."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class Batch(NamedTuple):
    """One batch with what is needed to re-create it on the reference path.

    Attributes:
        images: float32 ``[B, 3, crop_h, crop_w]``, ImageNet-normalized (0.0 in padding).
        labels: int64 (or uint8) ``[B, crop_h, crop_w]``: class indices in ``[0, num_classes)`` (the dataset's classes) or
            ``ignore_index``.
        windows: int32 ``[B, 2]`` crop anchors ``(top, left)`` in (scaled) image pixels
            (negative where a small image is padded), on the CPU.
        ids: int64 ``[B]`` each sample's position in the split list, on the CPU.
        scaled: int32 ``[B, 2]`` the size each image was scaled to before the crop (its own
            size without augmentation), on the CPU.
        flips: bool ``[B]``: the crop was mirrored, on the CPU.
        jitter: float32 ``[B, 4]`` color jitter factors (brightness, contrast, saturation,
            hue; ``(1, 1, 1, 0)`` without jitter), on the CPU.

    ``SegmentationDataset.load(i, CropWindow(top, left), scaled, flip)`` re-creates a sample
    before its jitter; :func:`dali_voc.loaders.photometric.apply_jitter` applies that.
    """

    images: torch.Tensor
    labels: torch.Tensor
    windows: torch.Tensor
    ids: torch.Tensor
    scaled: torch.Tensor
    flips: torch.Tensor
    jitter: Optional[torch.Tensor] = None
