"""What distinguishes the datasets the loader serves: names, classes, splits, canvases.

A leaf module (imports nothing of the package), so the config can validate ``dataset=`` and
pick per-dataset defaults without an import cycle. The label tables and folder layouts built
from these facts live in :mod:`dali_voc.datasets.descriptors`.
"""

from __future__ import annotations

from dataclasses import dataclass

VOC_CLASS_NAMES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant",
    "sheep", "sofa", "train", "tv/monitor",
)

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

#: Cityscapes' 19 evaluated classes, in trainId order.
CITYSCAPES_CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's facts.

    Attributes:
        name: the ``dataset=`` value.
        title: for messages.
        class_names: class ``i`` is ``class_names[i]``; labels hold ``[0, len)`` or the ignore index.
        train_split, val_split: the splits :func:`dali_voc.load_data` trains and evaluates on.
        whole_canvas: (height, width) holding every image of the real dataset's evaluation split
            (whole-image evaluation), or a size that holds most of them where a few are larger.
        layout: where the files are, in words (README and errors).
        label_encoding: how a label pixel becomes a class, in words.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    train_split: str
    val_split: str
    whole_canvas: tuple[int, int]
    layout: str
    label_encoding: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("voc", "Pascal VOC2012", VOC_CLASS_NAMES, "train", "val", (512, 512),
                "VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt}",
                "palette PNG, colors -> 21 classes, (224, 224, 192) void"),
    DatasetSpec("voc_aug", "Pascal VOC2012 + SBD (trainaug)", VOC_CLASS_NAMES, "train_aug", "val", (512, 512),
                "VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClassAug/*.png, ImageSets/Segmentation/"
                "{train_aug,val}.txt}",
                "8-bit class-index PNG, 0-20 classes, 255 void"),
    DatasetSpec("ade20k", "ADE20K SceneParsing", ADE20K_CLASS_NAMES, "training", "validation", (2048, 2048),
                "ADEChallengeData2016/{images,annotations}/{training,validation}/*.{jpg,png}",
                "8-bit PNG, 0 -> ignore, k -> k - 1 (150 classes)"),
    DatasetSpec("cityscapes", "Cityscapes (fine)", CITYSCAPES_CLASS_NAMES, "train", "val", (1024, 2048),
                "leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/<split>/<city>/*_gtFine_labelIds.png",
                "8-bit labelIds PNG -> 19 trainIds, the other ids ignore"),
)}

DATASET_NAMES: tuple[str, ...] = tuple(SPECS)
assert len(ADE20K_CLASS_NAMES) == 150 and len(CITYSCAPES_CLASS_NAMES) == 19
