"""Segmentation metrics from a confusion matrix, computed where the tensors are (GPU or CPU)."""

from __future__ import annotations

import math
from typing import Sequence

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """int64 ``[C, C]`` counts of (target class, predicted class) over pixels whose target is
    a class; pixels labelled ``ignore_index`` (or anything outside ``[0, C)``) are skipped.

    ``pred`` and ``target``: integer tensors of one shape (e.g. ``[B, H, W]``), same device."""
    valid = (target >= 0) & (target < num_classes) & (target != ignore_index)
    index = target[valid].to(torch.int64) * num_classes + pred[valid].to(torch.int64)
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Correct pixels / counted pixels (0.0 when nothing was counted)."""
    total = cm.sum()
    return float(cm.diagonal().sum() / total) if total > 0 else 0.0


def mean_iou(cm: torch.Tensor) -> float:
    """Mean over classes present in target or prediction of TP / (TP + FP + FN)."""
    tp = cm.diagonal().to(torch.float64)
    union = cm.sum(0).to(torch.float64) + cm.sum(1).to(torch.float64) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if present.any() else 0.0


def per_class_iou(cm: torch.Tensor) -> list[float]:
    """IoU of each class, TP / (TP + FP + FN); NaN for a class neither labelled nor predicted."""
    tp = cm.diagonal().to(torch.float64)
    union = cm.sum(0).to(torch.float64) + cm.sum(1).to(torch.float64) - tp
    return [float(t / u) if u > 0 else float("nan") for t, u in zip(tp.tolist(), union.tolist())]


def iou_table(cm: torch.Tensor, class_names: Sequence[str]) -> str:
    """A per-class IoU table (one row per class, ``-`` where a class never occurs), then mIoU
    and pixel accuracy, as text."""
    ious = per_class_iou(cm)
    width = max(len(name) for name in list(class_names) + ["pixel acc"])
    rows = [f"{name:>{width}}  {'-' if math.isnan(iou) else f'{100 * iou:.1f}':>5}" for name, iou in zip(class_names, ious)]
    rows.append(f"{'mIoU':>{width}}  {100 * mean_iou(cm):5.1f}")
    rows.append(f"{'pixel acc':>{width}}  {100 * pixel_accuracy(cm):5.1f}")
    return "\n".join(rows)
