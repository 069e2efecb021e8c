"""Synthetic VOC+SBD, ADE20K and Cityscapes trees: exact layouts, label values, determinism,
idempotence (dali_voc.tools.synth.synthesize). Tiny counts and sizes keep each test fast."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dali_voc.tools.synth import (
    ADE_DIR,
    CITYSCAPES_EVAL_IDS,
    Ade20kSpec,
    CityscapesSpec,
    SynthSpec,
    VocAugSpec,
    sample_ade_shape,
    synthesize,
    write_ade_sample,
    write_aug_extra,
    write_cityscapes_sample,
)

AUG_SPEC = VocAugSpec(voc=SynthSpec(num_train=6, num_val=4, seed=0), num_extra=5)
ADE_SPEC = Ade20kSpec(num_train=5, num_val=3, seed=0)
CS_SPEC = CityscapesSpec(num_train=5, num_val=4, image_size=(64, 128), seed=0)


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.*")) if p.suffix in (".png", ".jpg", ".txt")}


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


@pytest.fixture(scope="module")
def aug_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc_aug")
    voc = synthesize(root, "voc_aug", AUG_SPEC, workers=2, progress=False)
    assert voc == root / "VOCdevkit" / "VOC2012"
    return root


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ade")
    assert synthesize(root, "ade20k", ADE_SPEC, workers=2, progress=False) == root / ADE_DIR
    return root


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    assert synthesize(root, "cityscapes", CS_SPEC, workers=2, progress=False) == root
    return root


# --- VOC2012 + SBD -----------------------------------------------------------------------------

def test_voc_aug_layout_and_splits(aug_root):
    voc = aug_root / "VOCdevkit" / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    train, val = _lines(sets / "train.txt"), _lines(sets / "val.txt")
    assert len(train) == 6 and len(val) == 4 and _lines(sets / "trainval.txt") == train + val
    train_aug = _lines(sets / "train_aug.txt")
    extra = [n for n in train_aug if n not in train]
    assert train_aug[:6] == train and len(extra) == 5 and len(set(train_aug)) == 11
    assert not set(train_aug) & set(val)
    for name in extra:
        assert name.startswith("2008_00") and len(name) == len("2008_000000")
        assert (voc / "JPEGImages" / f"{name}.jpg").is_file()
        assert not (voc / "SegmentationClass" / f"{name}.png").exists()  # SBD-only
    aug_names = sorted(p.stem for p in (voc / "SegmentationClassAug").glob("*.png"))
    assert aug_names == sorted(train + val + extra)


def test_voc_aug_labels_are_grayscale_voc_indices(aug_root):
    voc = aug_root / "VOCdevkit" / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    for name in _lines(sets / "trainval.txt") + _lines(sets / "train_aug.txt"):
        with Image.open(voc / "SegmentationClassAug" / f"{name}.png") as lb:
            assert lb.format == "PNG" and lb.mode == "L"
            aug = np.asarray(lb)
        with Image.open(voc / "JPEGImages" / f"{name}.jpg") as im:
            assert im.mode == "RGB" and im.size == (aug.shape[1], aug.shape[0])
        assert set(np.unique(aug).tolist()) <= set(range(21)) | {255}
        assert (aug == 255).any() and (aug == 0).any() and ((aug > 0) & (aug < 21)).any()
        voc_label = voc / "SegmentationClass" / f"{name}.png"
        if voc_label.exists():
            with Image.open(voc_label) as pal:
                assert pal.mode == "P"
                np.testing.assert_array_equal(aug, np.asarray(pal))


def test_voc_aug_extra_is_deterministic(tmp_path):
    digest = {}
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        voc = tmp_path / run
        (voc / "JPEGImages").mkdir(parents=True)
        (voc / "SegmentationClassAug").mkdir()
        write_aug_extra(voc, 2, seed)
        digest[run] = _digests(voc)
    assert len(digest["a"]) == 2 and digest["a"] == digest["b"] and digest["a"] != digest["c"]


def test_voc_aug_regeneration_is_a_no_op(aug_root):
    before = _mtimes(aug_root)
    assert synthesize(aug_root, "voc_aug", AUG_SPEC, progress=False) == aug_root / "VOCdevkit" / "VOC2012"
    assert synthesize(aug_root, "voc", AUG_SPEC.voc, progress=False) == aug_root / "VOCdevkit" / "VOC2012"
    assert _mtimes(aug_root) == before


# --- ADE20K -----------------------------------------------------------------------------------

def test_ade_layout_pairs_and_values(ade_root):
    ade = ade_root / ADE_DIR
    for split, folder, count in (("train", "training", 5), ("val", "validation", 3)):
        images = sorted((ade / "images" / folder).iterdir())
        labels = sorted((ade / "annotations" / folder).iterdir())
        assert [p.name for p in images] == [f"ADE_{split}_{i:08d}.jpg" for i in range(1, count + 1)]
        assert [p.name for p in labels] == [f"ADE_{split}_{i:08d}.png" for i in range(1, count + 1)]
        for image, label in zip(images, labels):
            with Image.open(image) as im, Image.open(label) as lb:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert lb.format == "PNG" and lb.mode == "L" and lb.size == im.size
                values = np.unique(np.asarray(lb))
            assert values.max() <= 150
            assert values[0] == 0, "some pixels are unlabelled"
            assert len(values) >= 4  # 0, stuff bands and objects


def test_ade_shapes_are_ade_like():
    rng = np.random.default_rng(0)
    shapes = np.array([sample_ade_shape(rng) for _ in range(3000)])
    short, long = shapes.min(1), shapes.max(1)
    assert np.all(long / short <= 2.0) and long.max() <= 1024 and short.min() >= 256
    assert np.mean((short >= 256) & (short <= 512)) > 0.8  # shorter side mostly 256-512
    assert 0.03 < np.mean(long > 768) < 0.4  # some large ones
    assert 0.1 < np.mean(shapes[:, 0] > shapes[:, 1]) < 0.4  # some portrait


def test_ade_is_deterministic(tmp_path):
    digest = {}
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        ade = tmp_path / run
        for sub in ("images/validation", "annotations/validation"):
            (ade / sub).mkdir(parents=True)
        write_ade_sample(ade, "val", 1, seed)
        digest[run] = _digests(ade)
    assert len(digest["a"]) == 2 and digest["a"] == digest["b"] and digest["a"] != digest["c"]


def test_ade_regeneration_is_a_no_op(ade_root):
    before = _mtimes(ade_root)
    assert synthesize(ade_root, "ade20k", ADE_SPEC, progress=False) == ade_root / ADE_DIR
    assert _mtimes(ade_root) == before


# --- Cityscapes -------------------------------------------------------------------------------

def _cs_pairs(root: Path, split: str, cities: tuple[str, ...], count: int) -> list[tuple[Path, Path]]:
    pairs = []
    for i in range(count):
        city = cities[i % len(cities)]
        stem = f"{city}_{i // len(cities):06d}_000019"
        pairs.append((root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                      root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"))
    return pairs


def test_cityscapes_layout_pairs_and_values(cs_root):
    assert sorted(p.name for p in (cs_root / "leftImg8bit" / "train").iterdir()) == ["aachen", "bochum", "bremen"]
    assert sorted(p.name for p in (cs_root / "gtFine" / "val").iterdir()) == ["frankfurt", "lindau", "munster"]
    pairs = (_cs_pairs(cs_root, "train", CS_SPEC.train_cities, 5)
             + _cs_pairs(cs_root, "val", CS_SPEC.val_cities, 4))
    assert len(list(cs_root.rglob("*.png"))) == 2 * len(pairs)  # exactly these files
    evaluated = []
    for image, label in pairs:
        with Image.open(image) as im, Image.open(label) as lb:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (128, 64)
            assert lb.format == "PNG" and lb.mode == "L" and lb.size == (128, 64)
            ids = np.asarray(lb)
        assert ids.max() <= 33
        evaluated.append(np.isin(ids, CITYSCAPES_EVAL_IDS).mean())
        inner = ids[2:-2, 2:-2]  # inside the out-of-roi frame
        assert (inner[:8] == 23).mean() > (inner[-16:] == 23).mean(), "sky at the top"
        assert (inner[-16:] == 7).mean() > (inner[:8] == 7).mean(), "road at the bottom"
    assert np.mean(evaluated) > 0.75  # mostly the 19 evaluated ids


def test_cityscapes_is_deterministic_and_parallel_safe(cs_root, tmp_path):
    again = synthesize(tmp_path / "a", "cityscapes", CS_SPEC, workers=1, progress=False)
    assert _digests(again) == _digests(cs_root)
    other = synthesize(tmp_path / "b", "cityscapes", CityscapesSpec(1, 0, (64, 128), seed=1), workers=1,
                       progress=False)
    name = "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert _digests(other)[name] != _digests(cs_root)[name]


def test_cityscapes_regeneration_is_a_no_op(cs_root):
    before = _mtimes(cs_root)
    assert synthesize(cs_root, "cityscapes", CS_SPEC, progress=False) == cs_root
    assert _mtimes(cs_root) == before


@pytest.mark.slow
def test_cityscapes_default_size_image_is_about_2_mb(tmp_path):
    spec = CityscapesSpec()
    for folder in ("leftImg8bit", "gtFine"):
        (tmp_path / folder / "val" / "frankfurt").mkdir(parents=True)
    image_bytes, label_bytes = write_cityscapes_sample(tmp_path, "val", 0, spec)
    assert 1_000_000 <= image_bytes <= 3_000_000  # real leftImg8bit PNGs: ~2 MB
    with Image.open(tmp_path / "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png") as im:
        assert im.size == (2048, 1024) and im.mode == "RGB"


# --- dispatch ---------------------------------------------------------------------------------

def test_synthesize_rejects_unknown_dataset_and_wrong_spec(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        synthesize(tmp_path, "coco")
    with pytest.raises(TypeError, match="CityscapesSpec"):
        synthesize(tmp_path, "cityscapes", ADE_SPEC)
    assert not any(tmp_path.iterdir())
