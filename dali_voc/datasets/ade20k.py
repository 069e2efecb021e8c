"""ADE20K SceneParsing (``dataset="ade20k"``): 150 classes, one folder of images per split.

``ADEChallengeData2016/{images,annotations}/{training,validation}/*.{jpg,png}``; a label pixel's
8-bit value ``k`` is class ``k - 1``, and 0 ("other") is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..dataset_specs import DatasetSpec, register_dataset
from ..labels.tables import UNKNOWN, ValueTable
from .layouts import find_tree, missing_split
from .voc import voc_palette

#: ADE20K SceneParsing's 150 classes (objectInfo150), in the order of annotation values 1-150.
ADE20K_CLASS_NAMES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)

ADE20K_FOLDER = "ADEChallengeData2016"
#: ADE20K's split folders, and the short names accepted for them.
ADE20K_SPLITS = {"training": "training", "validation": "validation", "train": "training", "val": "validation"}


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
        return cls(find_tree(root, ADE20K_FOLDER, ("images", "annotations"),
                             f"an ADE20K tree: expected {ADE20K_FOLDER}/images/ and {ADE20K_FOLDER}/annotations/ "
                             f"(with training/ and validation/) there"))

    def available_splits(self) -> list[str]:
        return [s for s in ("training", "validation") if (self.root / "images" / s).is_dir()]

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        folder = ADE20K_SPLITS.get(split)
        if folder is None or not (self.root / "images" / folder).is_dir():
            raise missing_split(split, self.root / "images", self.available_splits())
        labels = self.root / "annotations" / folder
        return [(image.stem, image, labels / f"{image.stem}.png")
                for image in sorted((self.root / "images" / folder).glob("*.jpg"))]



def ade20k_value_table(void_index: int = 255, ignore_index: int = 255) -> ValueTable:
    """Value -> class: 0 ("other") is ignored, ``k`` in 1-150 is class ``k - 1``, the rest is
    unknown (ADE20K has no void value: ``void_index`` is unused)."""
    classes = [UNKNOWN] * 256
    classes[0] = ignore_index
    classes[1:len(ADE20K_CLASS_NAMES) + 1] = range(len(ADE20K_CLASS_NAMES))
    return ValueTable(tuple(classes), len(ADE20K_CLASS_NAMES), ignore_index)


def _ade20k_colors() -> tuple[tuple[int, int, int], ...]:
    """VOC's bit-spread palette continued to 150 entries (entry 0, black, left out)."""
    flat = voc_palette()
    return tuple((flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(1, len(ADE20K_CLASS_NAMES) + 1))


ADE20K = register_dataset(DatasetSpec(
    name="ade20k", title="ADE20K SceneParsing", class_names=ADE20K_CLASS_NAMES, train_split="training",
    val_split="validation", whole_canvas=(2048, 2048),
    layout="ADEChallengeData2016/{images,annotations}/{training,validation}/*.{jpg,png}",
    label_encoding="8-bit PNG, 0 -> ignore, k -> k - 1 (150 classes)",
    locate=ADE20KLayout.locate, label_table=ade20k_value_table, class_colors=_ade20k_colors()))
