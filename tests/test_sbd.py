"""SBD -> VOC2012 SegmentationClassAug conversion, on small hand-made SBD and VOC trees."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

scipy_io = pytest.importorskip("scipy.io")
scipy_sparse = pytest.importorskip("scipy.sparse")

from dali_voc.errors import VOCFormatError  # noqa: E402
from dali_voc.tools.sbd import SBDConversion, convert_sbd, read_sbd_label  # noqa: E402
from dali_voc.datasets.voc import VOCLayout, read_split, voc_palette  # noqa: E402

#: VOC's segmentation splits and SBD's, overlapping as the real ones do: SBD relabels some VOC
#: train images (v_a, v_b) and some VOC val images (v_c, v_d), which must stay out of train_aug.
VOC_SPLITS = {"train": ["v_a", "v_b"], "val": ["v_c", "v_d"]}
SBD_SPLITS = {"train": ["s_1", "s_2", "v_a", "v_c"], "val": ["s_3", "v_b", "v_d"]}
SHAPES = {"v_a": (20, 30), "v_b": (24, 18), "v_c": (16, 16), "v_d": (30, 22),
          "s_1": (18, 26), "s_2": (22, 20), "s_3": (14, 28)}
#: SBD's images are VOC images; this one is left out of VOC's JPEGImages to test the copy.
ONLY_IN_SBD = "s_3"
TRAIN_AUG = ["s_1", "s_2", "s_3", "v_a", "v_b"]


def _seed(name: str) -> int:
    return sorted(SHAPES).index(name)


def sbd_pixels(name: str) -> np.ndarray:
    """uint8 class indices 0-20 of ``name``'s SBD label (every class present)."""
    h, w = SHAPES[name]
    pixels = np.random.default_rng(_seed(name)).integers(0, 21, size=(h, w), dtype=np.uint8)
    pixels.flat[:21] = np.arange(21)
    return pixels


def voc_pixels(name: str) -> np.ndarray:
    """uint8 palette indices of ``name``'s VOC label: classes 0-20 inside a void (255) border,
    different from its SBD label."""
    pixels = (sbd_pixels(name) + 1) % 21
    pixels[0, :] = pixels[-1, :] = pixels[:, 0] = pixels[:, -1] = 255
    return pixels


def write_mat(path: Path, segmentation: np.ndarray) -> None:
    """An SBD ``cls/*.mat``: struct ``GTcls`` with ``Segmentation``, ``Boundaries`` (a cell of
    sparse masks) and ``CategoriesPresent``, as SBD's MATLAB files hold them."""
    boundaries = np.empty((21, 1), dtype=object)
    for k in range(21):
        boundaries[k, 0] = scipy_sparse.csc_matrix(segmentation == k)
    present = np.unique(segmentation[segmentation < 21]).astype(np.uint8)
    scipy_io.savemat(path, {"GTcls": {"Segmentation": segmentation, "Boundaries": boundaries,
                                      "CategoriesPresent": present}}, do_compression=True)


def write_jpeg(path: Path, name: str) -> None:
    h, w = SHAPES[name]
    Image.fromarray(np.full((h, w, 3), 17 * _seed(name), dtype=np.uint8)).save(path, format="JPEG")


def write_sbd(dataset: Path, splits: dict[str, list[str]] = SBD_SPLITS) -> Path:
    """SBD's ``dataset`` folder (cls/*.mat, img/*.jpg, train.txt, val.txt) for ``splits``."""
    (dataset / "cls").mkdir(parents=True)
    (dataset / "img").mkdir()
    for split, names in splits.items():
        (dataset / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for name in names:
            write_mat(dataset / "cls" / f"{name}.mat", sbd_pixels(name))
            write_jpeg(dataset / "img" / f"{name}.jpg", name)
    return dataset


def write_voc(root: Path) -> Path:
    """A VOCdevkit/VOC2012 tree: palette labels of VOC_SPLITS' names, images of every name
    but :data:`ONLY_IN_SBD`. Returns the VOC2012 folder."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for split, names in VOC_SPLITS.items():
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for name in names:
            label = Image.fromarray(voc_pixels(name))
            label.putpalette(voc_palette())  # L -> P: the indices stay, VOC's colors are attached
            label.save(voc / "SegmentationClass" / f"{name}.png")
    for name in SHAPES:
        if name != ONLY_IN_SBD:
            write_jpeg(voc / "JPEGImages" / f"{name}.jpg", name)
    return voc


@pytest.fixture
def trees(tmp_path) -> tuple[Path, Path]:
    """(the folder benchmark.tgz was extracted into, the folder holding VOCdevkit)."""
    write_sbd(tmp_path / "sbd" / "benchmark_RELEASE" / "dataset")
    write_voc(tmp_path / "voc")
    return tmp_path / "sbd", tmp_path / "voc"


def _aug(voc_root: Path, name: str) -> Image.Image:
    return Image.open(voc_root / "VOCdevkit/VOC2012/SegmentationClassAug" / f"{name}.png")


def test_reader_reads_what_savemat_wrote(tmp_path):
    path = tmp_path / "x.mat"
    write_mat(path, sbd_pixels("s_1"))
    pixels = read_sbd_label(path)
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, sbd_pixels("s_1"))


def test_labels_keep_their_values_and_voc_labels_win(trees):
    sbd, voc_root = trees
    result = convert_sbd(sbd, voc_root, progress=False)
    assert result == SBDConversion(voc_root / "VOCdevkit/VOC2012", written=7, from_sbd=3, from_voc=4,
                                   train_aug=5, images_copied=1)
    for name in SHAPES:
        with _aug(voc_root, name) as img:
            assert img.mode == "L" and img.size == SHAPES[name][::-1]
            pixels = np.asarray(img)
        if name in VOC_SPLITS["train"] + VOC_SPLITS["val"]:
            assert np.array_equal(pixels, voc_pixels(name))  # palette indices, void 255 included
            assert not np.array_equal(pixels, sbd_pixels(name))
        else:
            assert np.array_equal(pixels, sbd_pixels(name))
    copied = voc_root / "VOCdevkit/VOC2012/JPEGImages" / f"{ONLY_IN_SBD}.jpg"
    assert copied.read_bytes() == (sbd / "benchmark_RELEASE/dataset/img" / f"{ONLY_IN_SBD}.jpg").read_bytes()


def test_train_aug_is_sbd_and_voc_train_without_voc_val(trees):
    sbd, voc_root = trees
    convert_sbd(sbd, voc_root, progress=False)
    layout = VOCLayout.locate(voc_root)
    train_aug = read_split(layout, "train_aug")
    assert train_aug == TRAIN_AUG  # sorted, VOC's v_c and v_d (relabelled by SBD) left out
    assert not set(train_aug) & set(read_split(layout, "val"))
    assert read_split(layout, "val") == VOC_SPLITS["val"]  # the evaluation split is untouched


@pytest.mark.parametrize("sbd_form", ["dataset", "benchmark_RELEASE", "extracted"])
@pytest.mark.parametrize("voc_form", ["VOC2012", "above"])
def test_either_folder_level_is_accepted(trees, sbd_form, voc_form):
    sbd, voc_root = trees
    sbd = {"dataset": sbd / "benchmark_RELEASE/dataset", "benchmark_RELEASE": sbd / "benchmark_RELEASE",
           "extracted": sbd}[sbd_form]
    voc = voc_root / "VOCdevkit/VOC2012" if voc_form == "VOC2012" else voc_root
    assert convert_sbd(sbd, voc, progress=False).voc_root == voc_root / "VOCdevkit/VOC2012"


def test_rerun_rewrites_nothing_and_repairs_what_changed(trees):
    sbd, voc_root = trees
    convert_sbd(sbd, voc_root, progress=False)
    voc = voc_root / "VOCdevkit/VOC2012"
    files = sorted((voc / "SegmentationClassAug").iterdir()) + [voc / "ImageSets/Segmentation/train_aug.txt"]
    before = {f: f.stat().st_mtime_ns for f in files}
    again = convert_sbd(sbd, voc_root, progress=False)
    assert again.written == 0 and again.images_copied == 0 and again.train_aug == len(TRAIN_AUG)
    assert {f: f.stat().st_mtime_ns for f in files} == before
    Image.fromarray(np.zeros(SHAPES["s_2"], np.uint8)).save(voc / "SegmentationClassAug/s_2.png")
    assert convert_sbd(sbd, voc_root, progress=False).written == 1
    with _aug(voc_root, "s_2") as img:
        assert np.array_equal(np.asarray(img), sbd_pixels("s_2"))
    assert not list((voc / "SegmentationClassAug").glob(".*"))  # no temporary files left


def _save_mat(variables: dict):
    return lambda path: scipy_io.savemat(path, variables)


def _write_bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


#: How s_1's cls/s_1.mat is broken -> (error type, what the message says besides the path).
MAT_FAULTS = {
    "no-GTcls": (_save_mat({"GTinst": {"Segmentation": sbd_pixels("s_1")}}), VOCFormatError,
                 "no GTcls.Segmentation"),
    "no-Segmentation": (_save_mat({"GTcls": {"Boundaries": np.zeros((2, 2))}}), VOCFormatError,
                        "no GTcls.Segmentation"),
    "not-a-struct": (_save_mat({"GTcls": sbd_pixels("s_1")}), VOCFormatError, "no GTcls.Segmentation"),
    "garbage": (_write_bytes(b"not a MATLAB file" * 20), VOCFormatError, "not a readable MATLAB file"),
    "empty": (_write_bytes(b""), VOCFormatError, "not a readable MATLAB file"),
    "truncated": (_truncate, VOCFormatError, "not a readable MATLAB file"),
    "float": (_save_mat({"GTcls": {"Segmentation": sbd_pixels("s_1") / 2.0}}), VOCFormatError, "float64"),
    "class-30": (lambda path: write_mat(path, np.full(SHAPES["s_1"], 30, np.uint8)), VOCFormatError,
                 "the value 30"),
    "wrong-size": (lambda path: write_mat(path, np.zeros((5, 7), np.uint8)), VOCFormatError,
                   r"is 5x7 but image .*s_1\.jpg is 18x26"),
    "missing": (Path.unlink, FileNotFoundError, "SBD label of 's_1' is missing"),
}


@pytest.mark.parametrize("fault", MAT_FAULTS)
def test_broken_mat_files_are_named_and_no_split_is_written(trees, fault):
    sbd, voc_root = trees
    mat = sbd / "benchmark_RELEASE/dataset/cls/s_1.mat"
    breaker, error, message = MAT_FAULTS[fault]
    breaker(mat)
    with pytest.raises(error, match=re.escape(str(mat))) as info:
        convert_sbd(sbd, voc_root, progress=False)
    assert re.search(message, str(info.value))
    assert not (voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt").exists()


def test_voc_label_problems_are_named(trees):
    sbd, voc_root = trees
    label = voc_root / "VOCdevkit/VOC2012/SegmentationClass/v_b.png"
    Image.fromarray(np.zeros(SHAPES["v_b"] + (3,), np.uint8)).save(label)
    with pytest.raises(VOCFormatError, match=re.escape(f"label {label} is a RGB image")):
        convert_sbd(sbd, voc_root, progress=False)
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(label)
    with pytest.raises(VOCFormatError, match=re.escape(f"label {label} is 3x3 but image")):
        convert_sbd(sbd, voc_root, progress=False)
    label.unlink()  # v_b is also in SBD: its SBD label stands in
    assert convert_sbd(sbd, voc_root, progress=False).from_voc == 3
    (sbd / "benchmark_RELEASE/dataset/val.txt").write_text("s_3\nv_d\n")  # v_b now only in VOC, unlabelled
    with pytest.raises(FileNotFoundError, match=re.escape(str(label))):
        convert_sbd(sbd, voc_root, progress=False)


def test_missing_folders_and_images_are_named(trees, tmp_path):
    sbd, voc_root = trees
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        convert_sbd(tmp_path / "nowhere", voc_root, progress=False)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "novoc"))):
        convert_sbd(sbd, tmp_path / "novoc", progress=False)
    (sbd / "benchmark_RELEASE/dataset/img/s_3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image of 's_3' is missing: neither .*s_3\.jpg nor .*s_3\.jpg"):
        convert_sbd(sbd, voc_root, progress=False)
    (sbd / "benchmark_RELEASE/dataset/train.txt").write_text("s_1\n../../etc/passwd\n")
    with pytest.raises(VOCFormatError, match="path separator"):
        convert_sbd(sbd, voc_root, progress=False)
