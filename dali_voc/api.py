"""The front door: ``load_data_voc(batch_size, crop_size)``, as in the textbook, but fast.

Both backends yield ``(X, Y)`` batches: ``X`` float32 ``[B, 3, h, w]`` normalized with the
ImageNet mean/std, ``Y`` int64 ``[B, h, w]`` class indices. The ``"dali"`` backend returns
them on the GPU when CUDA is available (else it runs DALI's CPU operators); the
``"reference"`` backend returns CPU tensors from a torch ``DataLoader``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, Union

from .config import LoaderConfig

Backend = Literal["auto", "dali", "reference"]
DEFAULT_ROOT_ENV = "DALI_VOC_ROOT"


def default_root() -> Path:
    """``$DALI_VOC_ROOT`` if set, else ``./data`` (holding ``VOCdevkit/VOC2012``)."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "data"))


def dali_available() -> bool:
    """True when NVIDIA DALI can be imported (the ``cuda13``/``cuda12`` extras)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"dali"`` when DALI is installed, else ``"reference"``."""
    if backend not in ("auto", "dali", "reference"):
        raise ValueError(f"backend={backend!r} is not valid; expected one of 'auto', 'dali', 'reference'")
    if backend == "auto":
        return "dali" if dali_available() else "reference"
    if backend == "dali" and not dali_available():
        raise ImportError("backend='dali' needs NVIDIA DALI: pip install 'dali-voc[cuda13]' (or [cuda12])")
    return backend


def resolve_shard(config: LoaderConfig) -> tuple[int, int]:
    """``(shard_id, num_shards)``: from the config, else ``torch.distributed`` rank and
    world size when a process group is initialised, else ``(0, 1)``."""
    if config.num_shards is not None:
        return config.shard_id, config.num_shards  # type: ignore[return-value]
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def make_loader(config: LoaderConfig, split: str, shuffle: bool, backend: str = "auto"):
    """One loader for one split with an explicit config (what ``load_data_voc`` builds twice)."""
    backend = resolve_backend(backend)
    if backend == "dali":
        from .loader import DALILoader
        loader: Any = DALILoader(config, split, shuffle=shuffle)
    else:
        from .reference import ReferenceLoader
        loader = ReferenceLoader(config, split, shuffle=shuffle)
    if config.verbose:
        print(f"dali_voc: {loader.describe()}", file=sys.stderr)
    return loader


def load_data_voc(batch_size: int, crop_size: tuple[int, int], root: Union[str, os.PathLike, None] = None, *,
                  backend: Backend = "auto", download: bool = False, train_split: str = "train",
                  test_split: str = "val", **options: Any):
    """Return ``(train_iter, test_iter)`` over a VOC2012 tree, as the textbook's function.

    Args:
        batch_size: samples per batch.
        crop_size: ``(height, width)``, e.g. ``(320, 480)``.
        root: ``VOCdevkit/VOC2012`` or a folder holding it; default :func:`default_root`.
        backend: ``"dali"`` (GPU when CUDA is available, DALI CPU operators otherwise),
            ``"reference"`` (PIL + torch DataLoader), or ``"auto"`` (``"dali"`` if installed).
        download: fetch and extract VOC2012 into ``root`` when it holds no VOC tree.
        train_split, test_split: split list names under ``ImageSets/Segmentation``.
        **options: any other :class:`~dali_voc.config.LoaderConfig` field (``small_images``,
            ``void_label``, ``seed``, ``last_batch``, ``num_workers``, ``device``, ...).

    The train iterator is shuffled, the test iterator is in list order; both drop the last
    partial batch unless ``last_batch="partial"``.
    """
    root = default_root() if root is None else Path(root)
    if download:
        from .download import ensure_voc
        ensure_voc(root)
    config = LoaderConfig(root=root, batch_size=batch_size, crop_size=crop_size, **options)
    train_iter = make_loader(config, train_split, shuffle=True, backend=backend)
    test_iter = make_loader(config, test_split, shuffle=False, backend=backend)
    return train_iter, test_iter
