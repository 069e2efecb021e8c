"""Pascal VOC2012 + SBD "trainaug" (``dataset="voc_aug"``): VOC's tree with SBD's class-index labels.

``VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClassAug/*.png, ImageSets/Segmentation/{train_aug,val}.txt}``
(``python -m dali_voc sbd`` writes them); a label pixel's 8-bit value is its class: 0-20, 255 void.
"""

from __future__ import annotations

from functools import partial

from ..dataset_specs import DatasetSpec, register_dataset
from ..labels.tables import UNKNOWN, ValueTable
from .voc import AUG_LABEL_DIR, VOC_CLASSES, VOC_COLORMAP, VOID_PALETTE_INDEX, VOCLayout

#: The trainaug split list SBD's conversion writes (VOC train + SBD's extra images, no val image).
TRAIN_AUG_SPLIT = "train_aug"


def voc_aug_value_table(void_index: int = 0, ignore_index: int = 255) -> ValueTable:
    """Value -> class: 0-20 are VOC's classes, 255 (void) goes to ``void_index``, the rest is unknown."""
    classes = [UNKNOWN] * 256
    classes[:len(VOC_CLASSES)] = range(len(VOC_CLASSES))
    classes[VOID_PALETTE_INDEX] = void_index
    return ValueTable(tuple(classes), len(VOC_CLASSES), ignore_index)


VOC_AUG = register_dataset(DatasetSpec(
    name="voc_aug", title="Pascal VOC2012 + SBD (trainaug)", class_names=VOC_CLASSES, train_split=TRAIN_AUG_SPLIT,
    val_split="val", whole_canvas=(512, 512),
    layout="VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClassAug/*.png, ImageSets/Segmentation/"
           "{train_aug,val}.txt}",
    label_encoding="8-bit class-index PNG, 0-20 classes, 255 void",
    locate=partial(VOCLayout.locate, label_subdir=AUG_LABEL_DIR), label_table=voc_aug_value_table,
    class_colors=VOC_COLORMAP))
