"""Cityscapes, fine annotations (``dataset="cityscapes"``): 19 evaluated classes.

``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` images and ``gtFine/<split>/<city>/*_gtFine_labelIds.png``
labels; a label pixel's labelId maps to one of the 19 trainIds, the other ids (0-33) are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..dataset_specs import DatasetSpec, register_dataset
from ..labels.tables import UNKNOWN, ValueTable
from .layouts import find_tree, missing_split

#: Cityscapes' 19 evaluated classes, in trainId order.
CITYSCAPES_CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)

#: Cityscapes labelId -> trainId for the 19 evaluated classes; every other id (0-33) is ignored.
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
#: Cityscapes' labelIds run 0-33 (-1, license plate, is not stored in labelIds PNGs).
CITYSCAPES_LABEL_IDS = range(34)

#: Cityscapes' official colors of the 19 classes.
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"


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
        return cls(find_tree(root, "cityscapes", ("leftImg8bit", "gtFine"),
                             "a Cityscapes tree: expected leftImg8bit/ and gtFine/ (each with train/, val/) there"))

    def available_splits(self) -> list[str]:
        return sorted(p.name for p in (self.root / "leftImg8bit").iterdir()
                      if p.is_dir() and (self.root / "gtFine" / p.name).is_dir())

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise missing_split(split, self.root / "leftImg8bit", self.available_splits())
        out = []
        for city in sorted(p for p in images.iterdir() if p.is_dir()):
            for image in sorted(city.glob(f"*{CITYSCAPES_IMAGE_SUFFIX}")):
                name = image.name[:-len(CITYSCAPES_IMAGE_SUFFIX)]
                out.append((name, image, self.root / "gtFine" / split / city.name / f"{name}{CITYSCAPES_LABEL_SUFFIX}"))
        return out



def cityscapes_value_table(void_index: int = 255, ignore_index: int = 255) -> ValueTable:
    """Value -> class: the 19 evaluated labelIds to their trainIds, the other labelIds (0-33)
    ignored, values 34-255 unknown (Cityscapes has no void value: ``void_index`` is unused)."""
    classes = [UNKNOWN] * 256
    for label_id in CITYSCAPES_LABEL_IDS:
        classes[label_id] = CITYSCAPES_TRAIN_IDS.get(label_id, ignore_index)
    return ValueTable(tuple(classes), len(CITYSCAPES_CLASS_NAMES), ignore_index)


CITYSCAPES = register_dataset(DatasetSpec(
    name="cityscapes", title="Cityscapes (fine)", class_names=CITYSCAPES_CLASS_NAMES, train_split="train",
    val_split="val", whole_canvas=(1024, 2048),
    layout="leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/<split>/<city>/*_gtFine_labelIds.png",
    label_encoding="8-bit labelIds PNG -> 19 trainIds, the other ids ignore",
    locate=CityscapesLayout.locate, label_table=cityscapes_value_table, class_colors=CITYSCAPES_COLORS))
