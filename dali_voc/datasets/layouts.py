"""Where a dataset's files are: the :class:`Layout` interface every dataset's layout follows
(VOC's in :mod:`dali_voc.datasets.voc`, ADE20K's and Cityscapes' beside their specs).

A layout answers two questions for :func:`dali_voc.datasets.scan.scan_samples`: which splits exist,
and which ``(name, image, label)`` files a split holds, in a fixed order. Nothing here opens an
image or writes anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from ..errors import MissingFileError


class Layout(Protocol):
    """What the scanner needs of a dataset's folder."""

    root: Path

    def available_splits(self) -> list[str]:
        """The splits present, e.g. ``['train', 'val']``."""

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        """``(name, image, label)`` of every sample of ``split`` in a fixed order (the label
        need not exist: the scanner names it when missing).

        Raises:
            FileNotFoundError: ``split`` does not exist (the message lists the splits that do).
        """


def find_tree(root: os.PathLike | str, nested: str, subfolders: tuple[str, ...], expected: str) -> Path:
    """The folder holding every one of ``subfolders``: ``root`` itself, else ``root/nested``
    (the name the dataset's archive unpacks to).

    Raises:
        MissingFileError: neither holds them; the message names ``root`` and ``expected``.
    """
    root = Path(root).expanduser()
    for folder in (root, root / nested):
        if all((folder / sub).is_dir() for sub in subfolders):
            return folder
    raise MissingFileError(f"{root} is not {expected}")


def missing_split(split: str, where: Path, have: list[str]) -> MissingFileError:
    return MissingFileError(f"split {split!r} does not exist under {where} (splits found: {', '.join(have) or 'none'})")
