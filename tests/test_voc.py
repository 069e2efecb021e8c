import numpy as np
import pytest
from PIL import Image

from dali_voc.datasets.scan import scan_samples, select_samples
from dali_voc.errors import VOCFormatError
from dali_voc.datasets.voc import VOC_CLASSES, VOC_COLORMAP, VOID_COLOR, VOCLayout, find_voc_root, read_split, voc_palette
from tests.helpers import make_tree


def test_classes_and_palette():
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
    palette = np.array(voc_palette()).reshape(256, 3)
    assert [tuple(c) for c in palette[:21]] == list(VOC_COLORMAP)
    assert tuple(palette[255]) == VOID_COLOR


def test_root_may_be_the_voc2012_folder_or_its_grandparent(coord_tree):
    voc = find_voc_root(coord_tree)
    assert voc.name == "VOC2012"
    assert find_voc_root(voc) == voc


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VOCLayout.locate(tmp_path / "nope")


def test_missing_folder_is_named(coord_tree):
    voc = find_voc_root(coord_tree)
    (voc / "SegmentationClass").rename(voc / "elsewhere")
    with pytest.raises(FileNotFoundError, match="SegmentationClass"):
        VOCLayout.locate(coord_tree)


def test_missing_split_lists_the_available_ones(coord_tree):
    layout = VOCLayout.locate(coord_tree)
    with pytest.raises(FileNotFoundError, match=r"splits found: train"):
        read_split(layout, "val")


def test_empty_split_and_duplicates(coord_tree):
    layout = VOCLayout.locate(coord_tree)
    layout.split_path("empty").write_text("\n\n")
    with pytest.raises(VOCFormatError, match="empty"):
        read_split(layout, "empty")
    layout.split_path("dup").write_text("s_0000\ns_0001\ns_0000\n")
    with pytest.raises(VOCFormatError, match="twice.*s_0000"):
        read_split(layout, "dup")


def test_missing_label_is_named(coord_tree):
    layout = VOCLayout.locate(coord_tree)
    layout.label_path("s_0003").unlink()
    with pytest.raises(FileNotFoundError, match=r"label of sample 's_0003'.*s_0003\.png"):
        scan_samples(layout, "train")


def test_size_mismatch_is_named(coord_tree):
    layout = VOCLayout.locate(coord_tree)
    Image.new("P", (10, 10)).save(layout.label_path("s_0002"))
    with pytest.raises(VOCFormatError, match=r"s_0002.*must be the same size"):
        scan_samples(layout, "train")


def test_scan_reads_sizes_afresh_and_writes_nothing(coord_tree):
    layout = VOCLayout.locate(coord_tree)
    listing = sorted(p.relative_to(coord_tree) for p in coord_tree.rglob("*"))
    samples = scan_samples(layout, "train")
    assert [(s.height, s.width) for s in samples[:3]] == [(375, 500), (333, 500), (500, 375)]
    assert [s.index for s in samples] == list(range(len(samples)))
    assert sorted(p.relative_to(coord_tree) for p in coord_tree.rglob("*")) == listing  # no cache file
    assert scan_samples(layout, "train") == samples
    # A changed file is read again (no stored fact outlives it): the mismatch is found.
    Image.new("P", (10, 10)).save(layout.label_path("s_0000"))
    with pytest.raises(VOCFormatError):
        scan_samples(layout, "train")


def test_drop_and_pad_counts(coord_tree):
    samples = scan_samples(VOCLayout.locate(coord_tree), "train")
    # shapes: (375,500) (333,500) (500,375) (300,500) (400,520) (320,480) (281,500) (500,500) (340,490) (360,640)
    drop = select_samples(samples, (320, 480), "drop")
    assert drop.kept == 7 and drop.dropped == 3 and drop.total == 10
    assert "kept 7 of 10" in drop.describe("train", (320, 480))
    pad = select_samples(samples, (320, 480), "pad")
    assert pad.kept == 10 and pad.dropped == 0
    with pytest.raises(VOCFormatError, match="no usable image of 10"):
        select_samples(samples, (1000, 1000), "drop")


def test_non_png_label_is_named(tmp_path):
    voc = make_tree(tmp_path, [(20, 30)])
    (voc / "SegmentationClass" / "s_0000.png").write_bytes(b"not a png at all, just bytes.....")
    with pytest.raises(VOCFormatError, match="s_0000.png is not a PNG"):
        scan_samples(VOCLayout.locate(tmp_path), "train")
