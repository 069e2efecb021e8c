"""Pascal VOC2012 (``dataset="voc"``): its classes, colors, folder layout and split lists.

``VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt}``;
a label pixel's palette color is its class (21 colors), the border color (224, 224, 192) is void.
VOC trainaug (:mod:`dali_voc.datasets.voc_aug`) reuses the layout with another label folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..dataset_specs import DatasetSpec, register_dataset
from ..errors import DatasetFormatError, MissingFileError
from ..labels.tables import ColorTable
from .scan import file_problem, name_problem, require_file, shown_name, split_entries

#: VOC2012's 21 classes, in class-index order.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant",
    "sheep", "sofa", "train", "tv/monitor",
)

#: RGB color of each class in the label PNGs, in class-index order.
VOC_COLORMAP: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
)

#: Color of object borders and "difficult" regions in VOC labels (palette index 255).
VOID_COLOR: tuple[int, int, int] = (224, 224, 192)
#: Palette index of the void color in VOC's label PNGs.
VOID_PALETTE_INDEX = 255

VOC_ROOT_PARTS = ("VOCdevkit", "VOC2012")
IMAGE_DIR = "JPEGImages"
LABEL_DIR = "SegmentationClass"
#: Where the SBD "trainaug" class-index labels go (:mod:`dali_voc.tools.sbd` writes them).
AUG_LABEL_DIR = "SegmentationClassAug"
SPLIT_DIR = os.path.join("ImageSets", "Segmentation")


def voc_palette() -> list[int]:
    """VOC's 256-entry PNG palette as a flat ``[r0, g0, b0, r1, ...]`` list of 768 ints.

    Entry ``i`` spreads the bits of ``i`` over R, G and B (most significant first); the first
    21 entries are :data:`VOC_COLORMAP` and entry 255 is :data:`VOID_COLOR`.
    """
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def find_voc_root(root: os.PathLike | str) -> Path:
    """Return the ``VOC2012`` folder for ``root`` (itself, or ``root/VOCdevkit/VOC2012``).

    Raises:
        FileNotFoundError: naming the folder that is missing.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise MissingFileError(
            f"VOC root {root} does not exist; create a synthetic tree with "
            f"'python -m dali_voc synth --root {root}' or download VOC2012 with "
            f"'python -m dali_voc download --root {root}'"
        )
    nested = root.joinpath(*VOC_ROOT_PARTS)
    if nested.is_dir():
        return nested
    if (root / IMAGE_DIR).is_dir() or (root / SPLIT_DIR).is_dir():
        return root
    raise MissingFileError(f"{root} holds neither {Path(*VOC_ROOT_PARTS)} nor {IMAGE_DIR}/: not a VOC tree")


@dataclass(frozen=True)
class VOCLayout:
    """Paths inside one ``VOC2012`` folder (a :class:`dali_voc.datasets.layouts.Layout`); the labels in
    ``label_subdir`` (``SegmentationClass``, or ``SegmentationClassAug`` for trainaug)."""

    root: Path
    label_subdir: str = LABEL_DIR

    @classmethod
    def locate(cls, root: os.PathLike | str, label_subdir: str = LABEL_DIR) -> "VOCLayout":
        """Find the ``VOC2012`` folder under ``root`` and check its three sub-folders exist."""
        layout = cls(find_voc_root(root), label_subdir)
        layout.validate()
        return layout

    @property
    def image_dir(self) -> Path:
        return self.root / IMAGE_DIR

    @property
    def label_dir(self) -> Path:
        return self.root / self.label_subdir

    @property
    def split_dir(self) -> Path:
        return self.root / SPLIT_DIR

    def image_path(self, name: str) -> Path:
        return self.image_dir / f"{name}.jpg"

    def label_path(self, name: str) -> Path:
        return self.label_dir / f"{name}.png"

    def split_path(self, split: str) -> Path:
        return self.split_dir / f"{split}.txt"

    def validate(self) -> None:
        """Raise ``FileNotFoundError`` naming the first missing folder of the layout."""
        for folder in (self.image_dir, self.label_dir, self.split_dir):
            if not folder.is_dir():
                raise MissingFileError(f"VOC tree {self.root} is missing the folder {folder}")

    def available_splits(self) -> list[str]:
        """Names of the split lists present, e.g. ``['train', 'trainval', 'val']``."""
        return sorted(p.stem for p in self.split_dir.glob("*.txt"))

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        """``(name, image, label)`` of every sample listed in ``split``, in list order."""
        return [(name, self.image_path(name), self.label_path(name)) for name in read_split(self, split)]


def read_split(layout: VOCLayout, split: str) -> list[str]:
    """Sample names listed in ``ImageSets/Segmentation/<split>.txt``, in file order.

    Raises:
        MissingFileError: the list does not exist (the message lists the splits that do).
        DatasetFormatError: the list is not a regular file, is empty, names a sample twice or
            holds an entry that is not a name (:func:`name_problem`, with its line).
    """
    path = layout.split_path(split)
    problem = file_problem(path)
    if problem is not None and problem[0] == "missing":
        have = ", ".join(layout.available_splits()) or "none"
        raise MissingFileError(f"split list {path} does not exist (splits found: {have})")
    require_file(path, "split list")
    entries = split_entries(path)
    if not entries:
        raise DatasetFormatError(f"split list {path} is empty")
    for line, name in entries:
        why = name_problem(name)
        if why:
            raise DatasetFormatError(f"split list {path} names {shown_name(name)} (line {line}): {why}")
    names = [name for _, name in entries]
    seen: set[str] = set()
    duplicates = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if duplicates:
        raise DatasetFormatError(f"split list {path} names {len(duplicates)} sample(s) twice, e.g. {duplicates[0]!r}")
    return names


def voc_color_table(void_index: int = 0, ignore_index: int = 255) -> ColorTable:
    """VOC's color -> class table: :data:`VOC_COLORMAP` to classes 0-20, :data:`VOID_COLOR` to
    ``void_index`` (0, the textbook, or ``ignore_index``), every other color unknown."""
    return ColorTable(VOC_COLORMAP, VOID_COLOR, void_index, ignore_index)


VOC = register_dataset(DatasetSpec(
    name="voc", title="Pascal VOC2012", class_names=VOC_CLASSES, train_split="train", val_split="val",
    whole_canvas=(512, 512),
    layout="VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt}",
    label_encoding="palette PNG, colors -> 21 classes, (224, 224, 192) void",
    locate=VOCLayout.locate, label_table=voc_color_table, class_colors=VOC_COLORMAP))
