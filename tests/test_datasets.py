"""Datasets beyond VOC2012: value-by-value label mappings, layouts, both backends agreeing on
synthetic trees in each real layout, and check/info/show per dataset."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from dali_voc import load_data
from dali_voc.cli import main as cli_main
from dali_voc.labels.tables import UNKNOWN, pack_rgb
from dali_voc.config import LoaderConfig
from dali_voc.dataset_specs import dataset_spec
from dali_voc.errors import OptionError
from dali_voc.labels.host import decode_label
from dali_voc.geometry.windows import CropWindow
from tests.helpers import config_for, loader_for, require_dali

#: Cityscapes' labelIds 0-33 -> trainIds, as its labels.py defines them (255: not evaluated).
CITYSCAPES_TRAIN_ID_OF = [255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7,
                          8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18]


def _both_interfaces(table) -> list[int]:
    """Value -> class through the 8-bit path (``palette_lut`` of the gray ramp) AND the color
    path (``lut`` of the color DALI decodes a gray pixel to); they must agree."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    by_value = table.palette_lut(ramp.reshape(-1)).tolist()
    by_color = table.lut[pack_rgb(ramp)].tolist()
    assert by_value == by_color
    return by_value


def test_cityscapes_label_ids_map_to_train_ids_value_by_value():
    table = LoaderConfig(".", dataset="cityscapes").label_table()
    got = _both_interfaces(table)
    assert got[:34] == CITYSCAPES_TRAIN_ID_OF
    assert got[34:] == [UNKNOWN] * (256 - 34)  # not a labelId: counted as unknown
    assert sorted(set(got[:34]) - {255}) == list(range(19))


def test_ade20k_reduces_the_zero_label():
    table = LoaderConfig(".", dataset="ade20k").label_table()
    got = _both_interfaces(table)
    assert got[0] == 255 and got[1:151] == list(range(150)) and got[151:] == [UNKNOWN] * 105
    assert LoaderConfig(".", dataset="ade20k", ignore_index=200).label_table().palette_lut(list(range(768)))[0] == 200


@pytest.mark.parametrize("void_label,void", [("background", 0), ("ignore", 255)])
def test_trainaug_keeps_classes_and_sends_255_where_void_goes(void_label, void):
    got = _both_interfaces(LoaderConfig(".", dataset="voc_aug", void_label=void_label).label_table())
    assert got[:21] == list(range(21)) and got[255] == void and got[21:255] == [UNKNOWN] * 234


def test_ignore_index_must_not_be_a_class_of_the_dataset():
    with pytest.raises(ValueError, match="150"):
        LoaderConfig(".", dataset="ade20k", ignore_index=100)
    with pytest.raises(ValueError, match="dataset"):
        LoaderConfig(".", dataset="coco")
    assert LoaderConfig(".", dataset="cityscapes").canvas == (1024, 2048)


def _png(array: np.ndarray, palette=None) -> bytes:
    image = Image.fromarray(array, mode="P" if palette is not None else "L")
    if palette is not None:
        image.putpalette(palette)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_value_tables_read_palette_labels_by_index_not_color():
    """A class-index label saved as a palette PNG (any colors) maps by its indices, as torchvision
    and mmseg read them; gray labels by their levels."""
    table = LoaderConfig(".", dataset="cityscapes").label_table()
    values = np.array([[7, 8, 26], [0, 33, 40]], dtype=np.uint8)
    want = np.array([[0, 1, 13], [255, 18, UNKNOWN]])
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=768).tolist()
    for data in (_png(values), _png(values, palette)):
        assert np.array_equal(decode_label(data, "x.png", table).classes, want)


def test_layouts_say_what_they_expected(tmp_path):
    for dataset, words in (("ade20k", "ADEChallengeData2016/images"), ("cityscapes", "leftImg8bit/ and gtFine/"),
                           ("voc_aug", "VOC")):
        with pytest.raises(FileNotFoundError, match=words):
            dataset_spec(dataset).locate(tmp_path)
    with pytest.raises(OptionError, match="VOC2012 only"):
        load_data("ade20k", 2, (32, 32), tmp_path, download=True)


@pytest.mark.parametrize("dataset, nested, subfolders", [("ade20k", "ADEChallengeData2016", ("images", "annotations")),
                                                        ("cityscapes", "cityscapes", ("leftImg8bit", "gtFine"))])
def test_layouts_find_their_tree_at_the_root_or_in_its_archive_folder(tmp_path, dataset, nested, subfolders):
    tree = tmp_path / nested
    for sub in subfolders:
        (tree / sub).mkdir(parents=True)
    assert dataset_spec(dataset).locate(tmp_path).root == tree  # the folder the archive unpacks to
    assert dataset_spec(dataset).locate(tree).root == tree  # the tree itself
    (tree / subfolders[1]).rmdir()  # half a tree is none
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        dataset_spec(dataset).locate(tmp_path)


@pytest.fixture(scope="module")
def dataset_trees(tmp_path_factory) -> dict[str, object]:
    """A tiny synthetic tree per dataset, in its real layout (``python -m dali_voc synth``)."""
    from dali_voc.tools.synth import Ade20kSpec, CityscapesSpec, SynthSpec, VocAugSpec
    base = tmp_path_factory.mktemp("datasets")
    specs = {"voc_aug": VocAugSpec(SynthSpec(num_train=6, num_val=4), num_extra=4),
             "ade20k": Ade20kSpec(num_train=8, num_val=4),
             "cityscapes": CityscapesSpec(num_train=6, num_val=3, image_size=(96, 192))}
    roots = {}
    for dataset, spec in specs.items():
        assert cli_main(["synth", "--root", str(base / dataset), "--dataset", dataset, "--workers", "1",
                         "--num-train", str(spec.num_train if dataset != "voc_aug" else spec.voc.num_train),
                         "--num-val", str(spec.num_val if dataset != "voc_aug" else spec.voc.num_val),
                         "--num-extra", "4", "--image-size", "96x192"]) == 0
        roots[dataset] = base / dataset
    return roots


CROPS = {"voc_aug": (96, 128), "ade20k": (96, 128), "cityscapes": (64, 96)}


@pytest.mark.parametrize("dataset", ["voc_aug", "ade20k", "cityscapes"])
def test_dali_labels_equal_the_reference_at_the_same_windows(dataset_trees, dataset):
    """Each dataset through the DALI loader (CPU operators) and the reference path: labels equal
    pixel for pixel at the windows (and scales, flips) DALI drew; only the dataset's values occur."""
    require_dali()
    root = dataset_trees[dataset]
    spec_classes = LoaderConfig(".", dataset=dataset).label_table()
    for augment in ("textbook", "torchvision"):
        config = config_for(root, "dali", dataset=dataset, batch_size=2, crop_size=CROPS[dataset], small_images="pad",
                            return_meta=True, augment=augment, scale_base=0 if augment != "textbook" else None)
        split = dataset_spec(dataset).train_split
        loader = loader_for(config, split, shuffle=True)
        reference = loader_for(dataclasses.replace(config, backend="reference"), split, shuffle=True).dataset
        position = {s.index: i for i, s in enumerate(loader.selection.samples)}
        seen: set[int] = set()
        for batch in loader:
            for k in range(len(batch.ids)):
                _, y_ref = reference.load(position[int(batch.ids[k])], CropWindow(*batch.windows[k].tolist()),
                                          tuple(batch.scaled[k].tolist()), bool(batch.flips[k]))
                assert torch.equal(batch.labels[k], y_ref), (dataset, augment, int(batch.ids[k]))
                seen |= set(batch.labels[k].unique().tolist())
        assert seen - {255} and max(seen - {255}) < spec_classes.num_classes
        assert loader.unknown_pixels == 0


def test_load_data_front_door_per_dataset(dataset_trees):
    for dataset, (train, val) in (("ade20k", (8, 4)), ("cityscapes", (6, 3)), ("voc_aug", (10, 4))):
        train_iter, test_iter = load_data(dataset, 2, CROPS[dataset], dataset_trees[dataset], backend="reference",
                                          small_images="pad", num_workers=0, verbose=False)
        assert (train_iter.selection.total, test_iter.selection.total) == (train, val), dataset
        x, y = next(iter(train_iter))
        assert x.shape == (2, 3, *CROPS[dataset]) and y.dtype == torch.int64


@pytest.mark.parametrize("dataset", ["voc_aug", "ade20k", "cityscapes"])
def test_check_info_and_show_work_per_dataset(dataset_trees, dataset, tmp_path, capsys):
    root = str(dataset_trees[dataset])
    assert cli_main(["check", root, "--dataset", dataset, "--workers", "1"]) == 0
    assert "clean" in capsys.readouterr().out
    assert cli_main(["info", root, "--dataset", dataset, "--crop", "32x32"]) == 0
    out = capsys.readouterr().out
    names = {"voc_aug": "aeroplane", "ade20k": "wall", "cityscapes": "road"}
    assert names[dataset] in out or "px" in out
    picture = tmp_path / f"{dataset}.png"
    assert cli_main(["show", root, "--dataset", dataset, "--crop", "32x48", "-n", "2", "--out", str(picture)]) == 0
    assert Image.open(picture).size[0] > 0


def test_a_wrong_value_in_a_class_index_label_is_counted_or_named(dataset_trees, tmp_path):
    """A labelId that Cityscapes does not have: counted as unknown and mapped to the ignore
    index on both backends, or named with ``unknown_colors="raise"``."""
    import shutil

    from dali_voc.errors import UnknownColorError
    root = tmp_path / "cs"
    shutil.copytree(dataset_trees["cityscapes"], root)
    label = sorted((root / "gtFine" / "train").rglob("*_labelIds.png"))[0]
    values = np.array(Image.open(label))
    values[:8, :8] = 200
    Image.fromarray(values, mode="L").save(label)
    for backend in ("reference", "dali"):
        config = config_for(root, backend, dataset="cityscapes", batch_size=6, crop_size=(96, 192),
                            crop_placement="top_left", small_images="pad")
        loader = loader_for(config, "train")
        labels = torch.cat([y for _, y in loader])
        assert loader.unknown_pixels == 64 and int((labels == 255).sum()) >= 64, backend
        strict = loader_for(dataclasses.replace(config, unknown_colors="raise"), "train")
        with pytest.raises(UnknownColorError, match=label.name):
            list(strict)


def test_palette_labels_of_a_value_dataset_are_decoded_by_index_on_the_dali_path(dataset_trees, tmp_path):
    """DALI's PNG decoder turns a palette label into colors; a trainaug label saved as a palette
    PNG with arbitrary colors must still map by its indices: the DALI loader decodes it on the
    host, and its labels equal the reference's."""
    import shutil
    require_dali()
    root = tmp_path / "aug"
    shutil.copytree(dataset_trees["voc_aug"], root)
    labels = sorted(root.rglob("SegmentationClassAug/*.png"))
    rng = np.random.default_rng(1)
    for label in labels[:3]:
        values = np.array(Image.open(label))
        label.write_bytes(_png(values, rng.integers(0, 256, size=768).tolist()))
    config = config_for(root, "dali", dataset="voc_aug", batch_size=2, crop_size=(96, 128), small_images="pad",
                        return_meta=True)
    loader = loader_for(config, "train_aug", shuffle=False)
    assert sum(s.label_palette for s in loader.selection.samples) == 3
    reference = loader_for(dataclasses.replace(config, backend="reference"), "train_aug").dataset
    for batch in loader:
        for k in range(len(batch.ids)):
            _, y_ref = reference.load(int(batch.ids[k]), CropWindow(*batch.windows[k].tolist()))
            assert torch.equal(batch.labels[k], y_ref)
    assert loader.unknown_pixels == 0
