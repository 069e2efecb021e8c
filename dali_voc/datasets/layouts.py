"""Where a dataset's files are: the :class:`Layout` interface and the ADE20K and Cityscapes
layouts (VOC's, which also serves SBD trainaug, is :class:`dali_voc.datasets.scan.VOCLayout`).

A layout answers two questions for :func:`dali_voc.datasets.scan.scan_samples`: which splits exist,
and which ``(name, image, label)`` files a split holds, in a fixed order. Nothing here opens an
image or writes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import MissingFileError

ADE20K_FOLDER = "ADEChallengeData2016"
#: ADE20K's split folders, and the short names accepted for them.
ADE20K_SPLITS = {"training": "training", "validation": "validation", "train": "training", "val": "validation"}
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"


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


def _missing_split(split: str, where: Path, have: list[str]) -> MissingFileError:
    return MissingFileError(f"split {split!r} does not exist under {where} (splits found: {', '.join(have) or 'none'})")


@dataclass(frozen=True)
class ADE20KLayout:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}/``: images
    ``<name>.jpg``, labels ``<name>.png``; a split is every image of its folder, sorted."""

    root: Path

    @classmethod
    def locate(cls, root: os.PathLike | str) -> "ADE20KLayout":
        """The ``ADEChallengeData2016`` folder at or under ``root``.

        Raises:
            FileNotFoundError: naming the folders expected there.
        """
        root = Path(root).expanduser()
        if (root / ADE20K_FOLDER).is_dir():
            root = root / ADE20K_FOLDER
        for sub in ("images", "annotations"):
            if not (root / sub).is_dir():
                raise MissingFileError(f"{root} is not an ADE20K tree: expected {ADE20K_FOLDER}/images/ and "
                                        f"{ADE20K_FOLDER}/annotations/ (with training/ and validation/) there")
        return cls(root)

    def available_splits(self) -> list[str]:
        return [s for s in ("training", "validation") if (self.root / "images" / s).is_dir()]

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        folder = ADE20K_SPLITS.get(split)
        if folder is None or not (self.root / "images" / folder).is_dir():
            raise _missing_split(split, self.root / "images", self.available_splits())
        labels = self.root / "annotations" / folder
        return [(image.stem, image, labels / f"{image.stem}.png")
                for image in sorted((self.root / "images" / folder).glob("*.jpg"))]


@dataclass(frozen=True)
class CityscapesLayout:
    """``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` images and
    ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` labels; a split is every image of its
    cities, sorted by city then name (names like ``aachen_000000_000019``)."""

    root: Path

    @classmethod
    def locate(cls, root: os.PathLike | str) -> "CityscapesLayout":
        """The folder holding ``leftImg8bit/`` and ``gtFine/`` (``root`` or ``root/cityscapes``).

        Raises:
            FileNotFoundError: naming the folders expected there.
        """
        root = Path(root).expanduser()
        if not (root / "leftImg8bit").is_dir() and (root / "cityscapes" / "leftImg8bit").is_dir():
            root = root / "cityscapes"
        for sub in ("leftImg8bit", "gtFine"):
            if not (root / sub).is_dir():
                raise MissingFileError(f"{root} is not a Cityscapes tree: expected leftImg8bit/ and gtFine/ "
                                        f"(each with train/, val/) there")
        return cls(root)

    def available_splits(self) -> list[str]:
        return sorted(p.name for p in (self.root / "leftImg8bit").iterdir()
                      if p.is_dir() and (self.root / "gtFine" / p.name).is_dir())

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise _missing_split(split, self.root / "leftImg8bit", self.available_splits())
        out = []
        for city in sorted(p for p in images.iterdir() if p.is_dir()):
            for image in sorted(city.glob(f"*{CITYSCAPES_IMAGE_SUFFIX}")):
                name = image.name[:-len(CITYSCAPES_IMAGE_SUFFIX)]
                out.append((name, image, self.root / "gtFine" / split / city.name / f"{name}{CITYSCAPES_LABEL_SUFFIX}"))
        return out
