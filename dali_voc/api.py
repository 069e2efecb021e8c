"""The front doors: ``load_data_voc(batch_size, crop_size)``, as in the textbook, but fast, and
``load_data(dataset, batch_size, crop_size)`` for VOC trainaug, ADE20K and Cityscapes.

Both backends yield ``(X, Y)`` batches: ``X`` float32 ``[B, 3, h, w]`` normalized with the
ImageNet mean/std, ``Y`` int64 ``[B, h, w]`` class indices. The ``"dali"`` backend returns
them on the GPU when CUDA is available (else it runs DALI's CPU operators); the
``"reference"`` backend returns CPU tensors from a torch ``DataLoader``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .config import LoaderConfig
from .dataset_specs import dataset_spec
from .storage.stores import is_url
from .errors import OptionError
from .loaders.base import SegmentationLoader
from .loaders.factory import make_loader
from .resolve import resolve

DEFAULT_ROOT_ENV = "DALI_VOC_ROOT"


def default_root() -> Path:
    """``$DALI_VOC_ROOT`` if set, else ``./data`` (holding ``VOCdevkit/VOC2012``)."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "data"))


def load_data(dataset: str, batch_size: int, crop_size: tuple[int, int],
              root: Union[str, os.PathLike, None] = None, *, download: bool = False,
              train_split: Optional[str] = None, test_split: Optional[str] = None,
              **options: Any) -> tuple[SegmentationLoader, SegmentationLoader]:
    """Return ``(train_iter, test_iter)`` over a tree of ``dataset``: ``"voc"``, ``"voc_aug"``
    (VOC2012 + SBD trainaug), ``"ade20k"`` or ``"cityscapes"`` (:mod:`dali_voc.datasets`).

    Args:
        dataset: which dataset (its layout, label encoding, classes and splits).
        batch_size: samples per batch.
        crop_size: ``(height, width)``, e.g. ``(320, 480)``.
        root: the dataset's folder; default :func:`default_root` (VOC and trainaug:
            ``VOCdevkit/VOC2012`` under it; ADE20K: ``ADEChallengeData2016``; Cityscapes:
            ``leftImg8bit/`` and ``gtFine/``, or a ``cityscapes/`` folder holding them).
        download: fetch and extract VOC2012 into ``root`` when it holds no VOC tree (``"voc"``
            only; SBD: ``python -m dali_voc sbd --download``).
        train_split, test_split: default: the dataset's (VOC ``train``/``val``, trainaug
            ``train_aug``/``val``, ADE20K ``training``/``validation``, Cityscapes ``train``/``val``).
        **options: any other :class:`~dali_voc.config.LoaderConfig` field (``backend``,
            ``small_images``, ``void_label``, ``seed``, ``last_batch``, ``num_workers``,
            ``device``, ``return_meta``, ``augment``, ...).

    The train iterator is shuffled and augmented as ``augment`` says (default: the textbook's
    random crop); the test iterator is in list order and never augmented; both drop the last
    partial batch unless ``last_batch="partial"``. With ``val_mode="whole"`` the test iterator
    yields every image of ``test_split`` whole, on the dataset's canvas (``whole_canvas``,
    :meth:`LoaderConfig.whole_image`). Both come from one resolution of the options (same
    backend, device and shard).
    """
    spec = dataset_spec(dataset)
    root = default_root() if root is None else root if is_url(root) else Path(root)
    if download:
        if dataset != "voc":
            raise OptionError(f"download=True fetches VOC2012 only, not {dataset!r}; for the SBD trainaug labels "
                              f"run 'python -m dali_voc sbd --download', the others need their sites' sign-up")
        from .tools.download import ensure_voc
        ensure_voc(root)
    config = LoaderConfig(root=root, batch_size=batch_size, crop_size=crop_size, dataset=dataset, **options)
    resolved = resolve(config)
    train_iter = make_loader(config, train_split or spec.train_split, shuffle=True, resolved=resolved)
    test_config = config.whole_image() if config.val_mode == "whole" else config.evaluation()
    test_iter = make_loader(test_config, test_split or spec.val_split, shuffle=False, resolved=resolved)
    return train_iter, test_iter


def load_data_voc(batch_size: int, crop_size: tuple[int, int], root: Union[str, os.PathLike, None] = None, *,
                  download: bool = False, train_split: str = "train", test_split: str = "val",
                  **options: Any) -> tuple[SegmentationLoader, SegmentationLoader]:
    """Return ``(train_iter, test_iter)`` over a VOC2012 tree, as the textbook's function:
    :func:`load_data` with ``dataset="voc"``.

    Args:
        batch_size: samples per batch.
        crop_size: ``(height, width)``, e.g. ``(320, 480)``.
        root: ``VOCdevkit/VOC2012`` or a folder holding it; default :func:`default_root`.
        download: fetch and extract VOC2012 into ``root`` when it holds no VOC tree.
        train_split, test_split: split list names under ``ImageSets/Segmentation``.
        **options: any other :class:`~dali_voc.config.LoaderConfig` field.
    """
    return load_data("voc", batch_size, crop_size, root, download=download, train_split=train_split,
                     test_split=test_split, **options)
