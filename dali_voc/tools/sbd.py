"""Convert the Semantic Boundaries Dataset (SBD) into VOC2012's "trainaug" labels and split.

SBD (Hariharan et al., 2011) annotates 11,355 VOC images with the same 21 classes, as MATLAB
files ``dataset/cls/<name>.mat``. :func:`convert_sbd` converts them once into
``VOC2012/SegmentationClassAug/<name>.png`` (8-bit grayscale, pixel = class index 0-20, 255 =
void) and writes ``ImageSets/Segmentation/train_aug.txt`` (10,582 names on the real data):

* a name VOC itself labels (``SegmentationClass/<name>.png``) keeps VOC's label: its palette
  indices are written (void borders stay 255), SBD's coarser label is ignored;
* VOC's own train/val names are converted too, so one label folder serves both splits;
* ``train_aug`` = (SBD train | SBD val | VOC train) - VOC val, sorted: VOC's ``val.txt``
  stays the evaluation split and never leaks into training.

Re-running writes nothing that is already there with the same pixels, and ``train_aug.txt``
is written last, so a conversion that stopped on an error leaves no split list to train on.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from ..errors import DatasetFormatError, MissingFileError
from ..progress import progress_bar
from ..datasets.scan import image_size, name_problem, shown_name, split_entries
from ..datasets.voc import AUG_LABEL_DIR, VOC_CLASSES, VOID_PALETTE_INDEX, VOCLayout, read_split
from ..datasets.voc_aug import TRAIN_AUG_SPLIT

#: Where the ``dataset`` folder sits inside SBD's archive (``benchmark.tgz``).
SBD_DATASET_PARTS = ("benchmark_RELEASE", "dataset")
#: Split list written next to VOC's ``train.txt``/``val.txt``.
_MAX_CLASS = len(VOC_CLASSES) - 1


@dataclass(frozen=True)
class SBDConversion:
    """What :func:`convert_sbd` did.

    Attributes:
        voc_root: the ``VOC2012`` folder converted into.
        written: label PNGs written by this run (identical existing ones are not rewritten;
            0 on a re-run).
        from_sbd: labels in ``SegmentationClassAug`` taken from SBD's ``.mat`` files.
        from_voc: labels taken from VOC's own ``SegmentationClass`` (they win over SBD's).
        train_aug: names in ``train_aug.txt``.
        images_copied: SBD images copied into ``JPEGImages`` because VOC lacked them (0 with
            the official VOC2012 trainval archive, which holds every SBD image).
    """

    voc_root: Path
    written: int
    from_sbd: int
    from_voc: int
    train_aug: int
    images_copied: int = 0


def is_sbd_dataset(folder: Path) -> bool:
    """True when ``folder`` looks like SBD's ``dataset`` folder (``cls/`` and ``train.txt``)."""
    return (folder / "cls").is_dir() and (folder / "train.txt").is_file()


def find_sbd_dataset(sbd_dir: os.PathLike | str) -> Path:
    """SBD's ``dataset`` folder: ``sbd_dir`` itself, ``sbd_dir/dataset`` (``sbd_dir`` is
    ``benchmark_RELEASE``) or ``sbd_dir/benchmark_RELEASE/dataset`` (where it was extracted).

    Raises:
        FileNotFoundError: none of the three holds ``cls/`` and ``train.txt`` (names them).
    """
    sbd_dir = Path(sbd_dir).expanduser()
    candidates = (sbd_dir, sbd_dir / "dataset", sbd_dir.joinpath(*SBD_DATASET_PARTS))
    for folder in candidates:
        if is_sbd_dataset(folder):
            return folder
    tried = ", ".join(str(c) for c in candidates)
    raise MissingFileError(f"no SBD dataset folder (with cls/ and train.txt) at {tried}; pass the folder "
                            f"benchmark.tgz was extracted into, or download it with dali_voc.tools.download.ensure_sbd")


def _require_scipy() -> None:
    """Fail before any work when scipy (an optional dependency) is missing."""
    if importlib.util.find_spec("scipy") is None:
        raise ImportError("converting SBD labels reads MATLAB files with scipy: "
                          "pip install 'dali-voc[sbd]' (or scipy>=1.10)")


def read_sbd_label(path: Path) -> np.ndarray:
    """The class-index label of one SBD ``cls/<name>.mat``: ``GTcls.Segmentation`` as uint8
    ``[H, W]`` with values 0-20 (255 = void is accepted too).

    Raises:
        DatasetFormatError: the file is unreadable, lacks ``GTcls.Segmentation``, or that is not a
            2-D array of class indices (names the file).
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError, EOFError, zlib.error) as err:
        raise DatasetFormatError(f"{path} is not a readable MATLAB file: {err}") from err
    segmentation = getattr(mat.get("GTcls"), "Segmentation", None)
    if segmentation is None:
        raise DatasetFormatError(f"{path} holds no GTcls.Segmentation (variables: {', '.join(_variables(mat))}); "
                             f"is it an SBD cls/ file?")
    pixels = np.asarray(segmentation)
    if pixels.ndim != 2 or pixels.dtype.kind not in "ui":
        raise DatasetFormatError(f"{path}: GTcls.Segmentation is {pixels.dtype} of shape {pixels.shape}, expected a "
                             f"2-D integer array of class indices")
    return _class_indices(pixels, path)


def _variables(mat: dict) -> list[str]:
    """The MATLAB variable names ``loadmat`` found (its own ``__header__`` etc. left out)."""
    return [key for key in mat if not key.startswith("__")] or ["none"]


def read_voc_label(path: Path) -> np.ndarray:
    """The palette indices of a VOC label PNG (mode ``P``, or ``L`` already converted) as
    uint8 ``[H, W]``: 0-20 classes, 255 void.

    Raises:
        DatasetFormatError: unreadable, not a palette/gray PNG, or an index outside 0-20/255.
    """
    try:
        with Image.open(path) as img:
            mode, pixels = img.mode, np.asarray(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"label {path} is not a readable PNG: {err}") from err
    if mode not in ("P", "L"):
        raise DatasetFormatError(f"label {path} is a {mode} image; VOC labels are palette PNGs whose indices are "
                             f"the classes")
    return _class_indices(pixels, path)


def _class_indices(pixels: np.ndarray, path: Path) -> np.ndarray:
    """``pixels`` as uint8 after checking each is a class index or void (names ``path``)."""
    bad = ((pixels > _MAX_CLASS) & (pixels != VOID_PALETTE_INDEX)) | (pixels < 0)
    if bad.any():
        raise DatasetFormatError(f"{path} holds the value {pixels[bad].flat[0]}, which is neither a class index "
                             f"(0-{_MAX_CLASS}) nor void ({VOID_PALETTE_INDEX})")
    return pixels.astype(np.uint8, copy=False)


def _names(path: Path) -> list[str]:
    """The names of an SBD split list, each checked to be a plain file stem.

    Raises:
        FileNotFoundError / DatasetFormatError: naming the list.
    """
    if not path.is_file():
        raise MissingFileError(f"SBD split list {path} does not exist")
    entries = split_entries(path)
    for line, name in entries:
        problem = name_problem(name)
        if problem:
            raise DatasetFormatError(f"SBD split list {path} names {shown_name(name)} (line {line}): {problem}")
    return [name for _, name in entries]


def _replace_atomically(dest: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` and rename ``tmp`` onto ``dest``: an interrupted run never leaves
    a half-written file under the final name."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _same_pixels(path: Path, pixels: np.ndarray) -> bool:
    """True when ``path`` is already a gray PNG holding exactly ``pixels``."""
    try:
        with Image.open(path) as img:
            return img.mode == "L" and np.array_equal(np.asarray(img), pixels)
    except (OSError, SyntaxError, ValueError):  # missing or damaged: write it again
        return False


def _write_label(path: Path, pixels: np.ndarray) -> bool:
    """Write ``pixels`` (uint8 ``[H, W]``) as an 8-bit gray PNG unless ``path`` already holds
    them; True when written."""
    if _same_pixels(path, pixels):
        return False
    _replace_atomically(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
    return True


def _image_for(name: str, layout: VOCLayout, sbd: Path) -> tuple[Path, bool]:
    """VOC's image of ``name``, copied from SBD's ``img/`` first when VOC lacks it; the path
    and whether it was copied.

    Raises:
        FileNotFoundError: neither VOC nor SBD has it (names both paths).
    """
    image = layout.image_path(name)
    if image.is_file():
        return image, False
    source = sbd / "img" / f"{name}.jpg"
    if not source.is_file():
        raise MissingFileError(f"image of {name!r} is missing: neither {image} nor {source} exists")
    _replace_atomically(image, lambda tmp: shutil.copyfile(source, tmp))
    return image, True


def _check_size(pixels: np.ndarray, label: Path, image: Path) -> None:
    """Raise DatasetFormatError naming both files when the label's size differs from the image's."""
    height, width = image_size(image)
    if pixels.shape != (height, width):
        raise DatasetFormatError(f"label {label} is {pixels.shape[0]}x{pixels.shape[1]} but image {image} is "
                             f"{height}x{width} (height x width); they must be the same size")


def _write_split(path: Path, names: Iterable[str]) -> None:
    """Write the split list ``path`` (one name per line) unless it already says the same."""
    text = "".join(f"{name}\n" for name in names)
    if path.is_file() and path.read_text() == text:
        return
    _replace_atomically(path, lambda tmp: tmp.write_text(text))


def convert_sbd(sbd_dir: os.PathLike | str, voc_root: os.PathLike | str, progress: bool = True) -> SBDConversion:
    """Write ``VOC2012/SegmentationClassAug/*.png`` and ``train_aug.txt`` from SBD and VOC.

    Args:
        sbd_dir: SBD's ``dataset`` folder (``cls/<name>.mat``, ``img/<name>.jpg``,
            ``train.txt``, ``val.txt``), or ``benchmark_RELEASE``, or the folder above it.
        voc_root: the ``VOC2012`` folder or one holding ``VOCdevkit/VOC2012``; it needs
            ``JPEGImages/``, ``SegmentationClass/`` and ``ImageSets/Segmentation/{train,val}.txt``.
        progress: show a progress bar over the labels.

    Every label is an 8-bit gray PNG of the image's size: class index 0-20 per pixel, 255 void
    (only VOC's own labels have void). Images SBD has and VOC lacks are copied into
    ``JPEGImages``.

    Returns what was done (:class:`SBDConversion`).

    Raises:
        FileNotFoundError: a folder, split list, ``.mat`` or image is missing (names it).
        DatasetFormatError: a ``.mat`` is unreadable or lacks ``GTcls.Segmentation``, a label holds
            a value that is no class index, or a label's size differs from its image's.
        ImportError: scipy is not installed (``pip install 'dali-voc[sbd]'``).
    """
    _require_scipy()
    sbd = find_sbd_dataset(sbd_dir)
    layout = VOCLayout.locate(voc_root)
    voc_train, voc_val = set(read_split(layout, "train")), set(read_split(layout, "val"))
    sbd_names = set(_names(sbd / "train.txt")) | set(_names(sbd / "val.txt"))
    out_dir = layout.root / AUG_LABEL_DIR
    out_dir.mkdir(exist_ok=True)
    written = from_voc = copied = 0
    everything = sorted(sbd_names | voc_train | voc_val)
    for name in progress_bar(everything, total=len(everything), desc="SBD labels", unit="label",
                             disable=not progress):
        voc_label = layout.label_path(name)
        if voc_label.is_file():  # VOC's labels are finer and have void borders: they win
            source, pixels = voc_label, read_voc_label(voc_label)
            from_voc += 1
        elif name in sbd_names:
            source = sbd / "cls" / f"{name}.mat"
            if not source.is_file():
                raise MissingFileError(f"SBD label of {name!r} is missing: {source}")
            pixels = read_sbd_label(source)
        else:
            raise MissingFileError(f"label of {name!r} (listed in VOC's train/val) is missing: {voc_label}")
        image, was_copied = _image_for(name, layout, sbd)
        copied += was_copied
        _check_size(pixels, source, image)
        written += _write_label(out_dir / f"{name}.png", pixels)
    train_aug = sorted((sbd_names | voc_train) - voc_val)
    _write_split(layout.split_path(TRAIN_AUG_SPLIT), train_aug)
    return SBDConversion(layout.root, written, len(everything) - from_voc, from_voc, len(train_aug), copied)
