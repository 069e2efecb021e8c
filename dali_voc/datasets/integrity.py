"""Per-sample file inspection: can this image/label pair be decoded, and is it what the dataset holds?

Used by ``python -m dali_voc check`` (every finding) and by the loaders (the findings that
make a sample unusable: ``severity == "error"``), so both judge a file the same way.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Protocol, Sequence

import numpy as np
from PIL import Image

from ..labels.tables import UNKNOWN, LabelTable
from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..errors import DatasetFormatError, FileRefusedError, PNGFormatError
from ..labels.host import LabelImage, read_label
from ..labels.png import check_image_data, parse_png, read_png_file
from ..progress import progress_bar
from .packed import is_packed, packed_selection
from .scan import Sample, Selection, file_problem, image_size, load_selection, png_header, size_problem

ERROR, WARNING = "error", "warning"

#: The image format a file's name promises (a mismatch is decoded anyway, with a warning).
_FORMAT_OF_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass(frozen=True)
class Problem:
    """One finding about one file.

    ``kind`` is a stable short name (e.g. ``"truncated-image"``); ``severity`` is ``"error"``
    when the loaders cannot use the sample, ``"warning"`` when they handle it (gray/CMYK JPEG,
    RGB label, unknown colors) but the tree differs from what the dataset holds."""

    kind: str
    severity: str
    path: str
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind}: {self.path}: {self.detail}"


def _decode(path: Path) -> tuple[Optional[Image.Image], str]:
    """Fully decode an image file with PIL: (image, its format) or (None, the
    reason it failed)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy(), str(im.format)
    except (OSError, SyntaxError, ValueError) as err:  # truncated data, bad markers, not an image
        return None, str(err) or type(err).__name__


def _file_finding(path: Path, what: str) -> Optional[Problem]:
    """``missing-<what>`` or ``not-a-file-<what>`` (a directory, FIFO, ...: never opened) for a
    path that is not a regular file (:func:`~dali_voc.datasets.scan.file_problem`, as the loaders
    judge it), else None."""
    problem = file_problem(path)
    if problem is None:
        return None
    kind, detail = problem
    if kind == "missing":
        return Problem(f"missing-{what}", ERROR, str(path), "listed in the split but not on disk")
    return Problem(f"{kind}-{what}", ERROR, str(path), detail)


def inspect_image(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
                  ) -> tuple[list[Problem], Optional[tuple[int, int]]]:
    """Problems of a JPEG image file and its ``(height, width)`` when it decodes. An image
    whose header claims more than ``max_pixels`` is reported and not decoded."""
    unusable = _file_finding(path, "image")
    if unusable:
        return [unusable], None
    if path.stat().st_size == 0:
        return [Problem("empty-image", ERROR, str(path), "zero-byte file")], None
    try:
        height, width = image_size(path)
    except FileRefusedError as err:
        return [Problem(err.kind, ERROR, str(path), str(err))], None
    except DatasetFormatError as err:
        kind = "oversized-image" if "decompression-bomb" in str(err) else "unreadable-image"
        return [Problem(kind, ERROR, str(path), str(err).split(": ", 1)[-1])], None
    oversized = size_problem(height, width, max_pixels)
    if oversized:
        return [Problem("oversized-image", ERROR, str(path), f"header {oversized}")], None
    im, found = _decode(path)
    if im is None:
        kind = "truncated-image" if "truncated" in found else "unreadable-image"
        return [Problem(kind, ERROR, str(path), found)], None
    problems = []
    expected = _FORMAT_OF_SUFFIX.get(path.suffix.lower(), "JPEG")
    if found != expected:  # VOC's and ADE20K's images are JPEG files, Cityscapes' PNG files
        kind = "not-jpeg" if expected == "JPEG" else "not-png"
        problems.append(Problem(kind, WARNING, str(path), f"{found} data in a {path.suffix} file (decoded anyway)"))
    if im.mode == "L":
        problems.append(Problem("grayscale-jpeg", WARNING, str(path), "grayscale image (decoded to RGB)"))
    elif im.mode == "CMYK":
        problems.append(Problem("cmyk-jpeg", WARNING, str(path), "CMYK image (decoded to RGB)"))
    elif im.mode not in ("RGB", "P", "RGBA"):
        problems.append(Problem("unusual-mode", WARNING, str(path), f"mode {im.mode} (decoded to RGB)"))
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation not in (0, 1):
        problems.append(Problem("exif-orientation", WARNING, str(path),
                                f"EXIF orientation {orientation} is ignored: every path uses the pixels as stored, "
                                f"which is how the label is drawn; a viewer that applies the tag shows it rotated"))
    return problems, (im.height, im.width)


_EXIF_ORIENTATION = 0x0112


def _unknown_summary(label: LabelImage) -> Optional[str]:
    """``"<n> px in <k> colors outside the colormap (...)"`` for a label's unknown pixels, or None."""
    unknown = label.classes == UNKNOWN
    count = int(unknown.sum())
    if not count:
        return None
    values, counts = np.unique(label.pixels[unknown], axis=0, return_counts=True)
    top = sorted(zip(counts.tolist(), range(len(values))), reverse=True)[:5]

    def name(k: int) -> str:
        value = values[k]
        if value.ndim:  # an RGB color
            return str(tuple(int(c) for c in value))
        if label.palette is None:
            return str((int(value),) * 3)
        if int(value) >= len(label.palette):
            return f"palette index {int(value)} (no entry: the palette has {len(label.palette)})"
        return str(tuple(int(c) for c in label.palette[int(value)]))
    listed = ", ".join(f"{name(k)}: {n} px" for n, k in top)
    return f"{count} px in {len(values)} colors outside the colormap ({listed}); mapped to the ignore index"


def inspect_label(path: Path, table: LabelTable, image_hw: Optional[tuple[int, int]] = None,
                  colors: bool = True, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> list[Problem]:
    """Problems of a label PNG, judged by the decoding every path uses
    (:mod:`dali_voc.labels.host`): unreadable, damaged or incomplete, not palette, size
    differing from ``image_hw``, oversized (not decoded), colors outside the colormap or palette
    indices without a palette entry (with pixel counts) when ``colors``."""
    unusable = _file_finding(path, "label")
    if unusable:
        return [unusable]
    if path.stat().st_size == 0:
        return [Problem("empty-label", ERROR, str(path), "zero-byte file")]
    try:
        height, width = png_header(path)[:2]
    except FileRefusedError as err:
        return [Problem(err.kind, ERROR, str(path), str(err))]
    except DatasetFormatError as err:
        return [Problem("unreadable-label", ERROR, str(path), str(err))]
    oversized = size_problem(height, width, max_pixels)
    if oversized:
        return [Problem("oversized-label", ERROR, str(path), f"header {oversized}")]
    try:
        label = read_label(path, table)
    except PNGFormatError as err:
        detail = str(err).split(": ", 1)[-1]
        kind = "truncated-label" if ("truncated" in detail or "ends early" in detail) else "unreadable-label"
        return [Problem(kind, ERROR, str(path), detail)]
    problems = []
    if image_hw is not None and label.classes.shape != tuple(image_hw):
        problems.append(Problem("size-mismatch", ERROR, str(path), f"label is {label.classes.shape[0]}x"
                                f"{label.classes.shape[1]}, its image {image_hw[0]}x{image_hw[1]}"))
    if not label.png.fast_path:
        problems.append(Problem("not-palette-label", WARNING, str(path),
                                f"{label.png.bit_depth}-bit color type {label.png.color_type}"
                                f"{' interlaced' if label.png.interlace else ''}; mapped through the color table, "
                                f"but decoded on the CPU by the GPU path"))
    if colors:
        summary = _unknown_summary(label)
        if summary:
            problems.append(Problem("unknown-colors", WARNING, str(path), summary))
    return problems


def inspect_sample(sample_image: Path, sample_label: Path, table: LabelTable, colors: bool = True,
                   max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> list[Problem]:
    """All problems of one image/label pair."""
    problems, image_hw = inspect_image(sample_image, max_pixels)
    return problems + inspect_label(sample_label, table, image_hw, colors=colors, max_pixels=max_pixels)


def map_parallel(fn, items: Sequence, workers: int, progress: bool, desc: str) -> list:
    """``[fn(item) for item in items]`` on a thread pool, with a progress bar."""
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL and zlib release the GIL while decoding
        return list(progress_bar(pool.map(fn, items), total=len(items), desc=desc, unit="sample", leave=False,
                         disable=not progress))


class FileCheck(Protocol):
    """A loader's own decoder, asked which files it refuses (the DALI loader's:
    :class:`dali_voc.loaders.dali_verify.DaliFileCheck`)."""

    #: Whether it decodes the labels too (else labels are judged by :mod:`dali_voc.labels.host`).
    labels: bool

    def refused(self, paths: Sequence[str]) -> dict[str, str]:
        """``{path: reason}`` of the files it cannot decode."""


def find_unusable(samples: Iterable[Sample], table: LabelTable, workers: int = 1, progress: bool = False,
                  decoder: Optional[FileCheck] = None) -> list[tuple[Sample, Problem]]:
    """Samples a loader cannot decode, each with its first error (full decode, in parallel).

    Without ``decoder``: images with PIL and labels by :mod:`dali_voc.labels.host` (the reference
    path's decoding). With it: images with that decoder, labels by :mod:`dali_voc.labels.host`
    (the contract every path keeps) and, when it decodes labels, by that decoder too."""
    samples = list(samples)
    if decoder is None:
        found = map_parallel(lambda s: inspect_sample(s.image, s.label, table, colors=False), samples, workers,
                             progress, "verifying")
    else:
        found = map_parallel(lambda s: inspect_label(s.label, table, (s.height, s.width), colors=False), samples,
                             workers, progress, "verifying labels")
        # labels the host check refuses are unusable whatever DALI says: only the others go to DALI
        paths = [str(s.image) for s in samples] + ([str(s.label) for s, probs in zip(samples, found)
                                                    if not any(p.severity == ERROR for p in probs)]
                                                   if decoder.labels else [])
        refused = decoder.refused(paths)
        for s, probs in zip(samples, found):
            for path, kind in ((str(s.image), "undecodable-image"), (str(s.label), "undecodable-label")):
                if path in refused:
                    probs.insert(0, Problem(kind, ERROR, path, refused[path]))
    return [(s, next(p for p in probs if p.severity == ERROR)) for s, probs in zip(samples, found)
            if any(p.severity == ERROR for p in probs)]


def invalid_labels(samples: Sequence[Sample], workers: int = 1, progress: bool = False) -> list[tuple[Sample, str]]:
    """Labels that break the PNG rules every path keeps (chunks, complete image data), each
    with the reason: what the DALI loader checks at construction when DALI's own PNG decoder,
    which tolerates some of them, will decode the labels. Reads each label once (a few KB)."""
    def problem(sample: Sample) -> Optional[str]:
        try:
            check_image_data(parse_png(read_png_file(sample.label), str(sample.label)), str(sample.label))
        except (PNGFormatError, OSError) as err:
            return str(err)
        return None
    found = map_parallel(problem, list(samples), workers, progress, "checking labels")
    return [(s, why) for s, why in zip(samples, found) if why is not None]


def exclude_unusable(selection: Selection, table: LabelTable, workers: int = 1, progress: bool = True,
                     decoder: Optional[FileCheck] = None) -> Selection:
    """``selection`` without the samples :func:`find_unusable` rejects (kept in ``skipped``)."""
    bad = find_unusable(selection.samples, table, workers, progress, decoder)
    if not bad:
        return selection
    names = {s.name for s, _ in bad}
    kept = tuple(s for s in selection.samples if s.name not in names)
    return replace(selection, samples=kept,
                   skipped=selection.skipped + tuple((s.name, f"{p.path}: {p.detail}") for s, p in bad))


_PATH_IN_DALI_ERROR = re.compile(r"(?:Failed to decode sample #\d+ : |File mapping failed: )(\S+)")


def diagnose_failure(error: BaseException, samples: Sequence[Sample], table: LabelTable, workers: int = 1,
                     progress: bool = True, decoder: Optional[FileCheck] = None) -> Optional[str]:
    """Name the file(s) behind a DALI decode failure: from DALI's message when it names one,
    else by inspecting every sample with ``decoder`` (DALI does not say which sample of a
    batch failed). Returns a message, or None when no file explains the failure."""
    match = _PATH_IN_DALI_ERROR.search(str(error))
    if match:
        path = match.group(1)
        owner = next((s for s in samples if str(s.image) == path or str(s.label) == path), None)
        return f"sample {owner.name if owner else '?'}: cannot decode {path}"
    bad = find_unusable(samples, table, workers, progress, decoder)
    if not bad:
        return None
    listed = "; ".join(f"sample {s.name}: {p.path}: {p.detail}" for s, p in bad[:5])
    return f"{len(bad)} unreadable sample(s): {listed}"


def loader_selection(config, split: str, workers: int, progress: bool = True,
                     decoder: Optional[FileCheck] = None) -> Selection:
    """The samples a loader of ``split`` uses: listed, scanned, small-image policy applied and,
    with ``on_error="skip"``, unusable samples left out (verified on ``workers`` threads, with
    the loader's own ``decoder`` when it has one). Both loaders start here."""
    if is_packed(config.root):  # checked when packed: the manifest says it all
        return packed_selection(config, split)
    skip = config.on_error == "skip"
    selection = load_selection(config.root, split, config.crop_size, config.small_image_policy, skip_unreadable=skip,
                               max_pixels=config.max_image_pixels, dataset=config.dataset)
    if skip:
        selection = exclude_unusable(selection, config.label_table(), workers,
                                     progress=progress and config.verbose, decoder=decoder)
    return selection
