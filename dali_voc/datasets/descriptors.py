"""One loader, four datasets: each dataset's label table and folder layout, from its name.

| ``dataset=`` | layout | a label pixel becomes a class by |
|---|---|---|
| ``"voc"`` | :class:`~dali_voc.datasets.scan.VOCLayout` | its color (:class:`~dali_voc.labels.tables.ColorTable`) |
| ``"voc_aug"`` | ``VOCLayout`` over ``SegmentationClassAug`` | its value: 0-20, 255 void |
| ``"ade20k"`` | :class:`~dali_voc.datasets.layouts.ADE20KLayout` | its value: 0 ignore, k -> k - 1 |
| ``"cityscapes"`` | :class:`~dali_voc.datasets.layouts.CityscapesLayout` | its labelId -> trainId (19), others ignore |

The table drives every label path alike (NumPy reference, CuPy kernel, nvCOMP kernels): an
8-bit label's values map through ``palette_lut``, exactly as VOC's palette indices do.
"""

from __future__ import annotations

import os
from typing import Optional

from ..labels.tables import UNKNOWN, ColorTable, LabelTable, ValueTable
from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..dataset_specs import SPECS, DatasetSpec
from .layouts import ADE20KLayout, CityscapesLayout, Layout
from .scan import AUG_LABEL_DIR, VOC_COLORMAP, Selection, VOCLayout, scan_samples, select_samples, voc_palette

#: Cityscapes labelId -> trainId for the 19 evaluated classes; every other id (0-33) is ignored.
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
#: Cityscapes' labelIds run 0-33 (-1, license plate, is not stored in labelIds PNGs).
CITYSCAPES_LABEL_IDS = range(34)

#: Colors ``show`` draws each dataset's classes with (VOC's own; Cityscapes' official ones).
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def spec_of(dataset: str) -> DatasetSpec:
    """The facts of ``dataset`` (``ValueError`` listing the datasets for another name)."""
    if dataset not in SPECS:
        raise ValueError(f"dataset={dataset!r} is not known; expected one of {', '.join(map(repr, SPECS))}")
    return SPECS[dataset]


def value_classes(dataset: str, void_index: int, ignore_index: int) -> tuple[int, ...]:
    """The 256-entry value -> class table of a class-index dataset (see the module table)."""
    classes = [UNKNOWN] * 256
    if dataset == "voc_aug":
        classes[:21] = range(21)
        classes[255] = void_index
    elif dataset == "ade20k":
        classes[0] = ignore_index
        classes[1:151] = range(150)
    elif dataset == "cityscapes":
        for label_id in CITYSCAPES_LABEL_IDS:
            classes[label_id] = CITYSCAPES_TRAIN_IDS.get(label_id, ignore_index)
    else:
        raise ValueError(f"{dataset!r} labels are not class indices")
    return tuple(classes)


def label_table(config) -> LabelTable:
    """The label table of ``config`` (a :class:`~dali_voc.config.LoaderConfig`): its dataset's,
    with its ``void_label`` (VOC, trainaug) and ``ignore_index``."""
    if config.dataset == "voc":
        return ColorTable(void_index=config.void_index, ignore_index=config.ignore_index)
    spec = spec_of(config.dataset)
    return ValueTable(value_classes(config.dataset, config.void_index, config.ignore_index), spec.num_classes,
                      config.ignore_index)


def inspection_table(dataset: str) -> LabelTable:
    """The table ``check`` and ``info`` judge labels with: void and ignored values at 255,
    so that only values the dataset never uses count as unknown."""
    if dataset == "voc":
        return ColorTable(void_index=255)
    return ValueTable(value_classes(dataset, 255, 255), spec_of(dataset).num_classes, 255)


def class_colors(dataset: str) -> tuple[tuple[int, int, int], ...]:
    """A color per class for pictures: VOC's colormap (also trainaug's), Cityscapes' official
    colors, and for ADE20K VOC's bit-spread palette continued to 150 entries."""
    if dataset in ("voc", "voc_aug"):
        return VOC_COLORMAP
    if dataset == "cityscapes":
        return CITYSCAPES_COLORS
    flat = voc_palette()
    return tuple(tuple(flat[3 * i:3 * i + 3]) for i in range(1, spec_of(dataset).num_classes + 1))  # type: ignore[misc]


def locate_layout(dataset: str, root: os.PathLike | str) -> Layout:
    """The layout of ``dataset`` at ``root`` (``FileNotFoundError`` naming what is expected)."""
    spec_of(dataset)
    if dataset == "voc":
        return VOCLayout.locate(root)
    if dataset == "voc_aug":
        return VOCLayout.locate(root, AUG_LABEL_DIR)
    if dataset == "ade20k":
        return ADE20KLayout.locate(root)
    return CityscapesLayout.locate(root)


def load_selection(root: os.PathLike | str, split: str, crop_size: tuple[int, int], policy: str,
                   skip_unreadable: bool = False, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                   dataset: str = "voc") -> Selection:
    """Locate the tree, scan ``split`` and apply the small-image policy (the loaders' entry).

    With ``skip_unreadable``, samples whose files are missing or unreadable at the header
    level are left out (listed in ``Selection.skipped``) instead of raising."""
    layout = locate_layout(dataset, root)
    skipped: Optional[list[tuple[str, str]]] = [] if skip_unreadable else None
    samples = scan_samples(layout, split, skipped=skipped, max_pixels=max_pixels)
    return select_samples(samples, crop_size, policy, skipped or ())
