"""The scan every dataset goes through: split entries -> samples with sizes -> the selection.

Nothing here decodes pixels. Image sizes come from file headers (a few hundred bytes per
file), so building the sample list of the whole train split takes well under a second, and
the result is cached next to the split list when the folder is writable. Where the files are
is the dataset's :class:`~dali_voc.datasets.layouts.Layout` (found by its
:class:`~dali_voc.dataset_specs.DatasetSpec`); what the scan yields is generic.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from PIL import Image

from ..config import DEFAULT_MAX_IMAGE_PIXELS, SmallImagePolicy
from ..dataset_specs import dataset_spec
from ..errors import DatasetFormatError

SIZE_CACHE_VERSION = 3


def split_names(path: Path) -> list[str]:
    """The names in a split list file, in order (blank lines and surrounding spaces ignored)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a sample name (it would reach a file outside the tree's folders),
    or ``None``. Names are file stems such as ``2007_000032``, never paths."""
    if "/" in name or "\\" in name:
        return "it holds a path separator (entries are names, not paths)"
    if name in (".", ".."):
        return "it is a relative folder, not a name"
    if "\x00" in name:
        return "it holds a NUL character"
    return None


@dataclass(frozen=True)
class Sample:
    """One image/label pair of a split, with its size read from the file headers.

    ``index`` is the position in the split list: the loaders carry it through so a batch can
    always be traced back to its files.
    """

    index: int
    name: str
    image: Path
    label: Path
    height: int
    width: int
    #: The label is a palette PNG whose palette has fewer entries than its bit depth can index
    #: (VOC's have all 256): its pixels may hold indices with no color, which only our own PNG
    #: decoding maps (to unknown); DALI's decoder would make them black.
    label_short_palette: bool = False
    #: The label is a palette PNG (with a value table its indices, not its colors, are classes).
    label_palette: bool = False


def png_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a PNG from its IHDR chunk (the first 24 bytes).

    Raises:
        DatasetFormatError: the file is not a PNG, naming it.
    """
    return png_header(path)[:2]


def png_header(path: Path) -> tuple[int, int, bool, bool]:
    """``(height, width, short_palette, palette)`` of a PNG from its chunks before the image
    data (a few hundred bytes): ``palette`` is True for a palette image, ``short_palette`` for
    one whose PLTE has fewer entries than its bit depth can index.

    Raises:
        DatasetFormatError: the file is not a PNG, naming it.
    """
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
            raise DatasetFormatError(f"{path} is not a PNG file (bad signature or no IHDR chunk)")
        width, height = struct.unpack(">II", head[16:24])
        f.seek(24)
        depth_color = f.read(2)
        if len(depth_color) < 2 or depth_color[1] != 3:  # not a palette image
            return height, width, False, False
        f.seek(33)  # after IHDR: walk chunk headers up to PLTE (or the image data)
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return height, width, False, True  # damaged: decoding will name it
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"PLTE":
                return height, width, length // 3 < (1 << depth_color[0]), True
            if kind in (b"IDAT", b"IEND"):
                return height, width, False, True  # no palette: decoding will name it
            f.seek(length + 4, os.SEEK_CUR)


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header, without decoding pixels.

    Raises:
        DatasetFormatError: the file cannot be identified as an image, naming it.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Image.DecompressionBombError as err:  # PIL refuses to open it at all
        raise DatasetFormatError(f"{path}: its header claims a size past PIL's decompression-bomb limit ({err})") from err
    except (OSError, SyntaxError) as err:  # PIL raises UnidentifiedImageError (an OSError)
        raise DatasetFormatError(f"{path} is not a readable image: {err}") from err
    return height, width


def size_problem(height: int, width: int, max_pixels: int) -> Optional[str]:
    """Why an image of ``height x width`` is refused (over ``max_pixels``), or ``None``."""
    if height * width > max_pixels:
        return (f"is {height}x{width} ({height * width / 1e6:.0f} MP), over the max_image_pixels limit of "
                f"{max_pixels / 1e6:g} MP (a forged header, or set max_image_pixels higher)")
    return None


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _load_size_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if data.get("version") == SIZE_CACHE_VERSION else {}


def _save_size_cache(path: Path, entries: dict) -> None:
    # Best effort: a read-only dataset folder just means no cache.
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"version": SIZE_CACHE_VERSION, "entries": entries}))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def scan_samples(layout, split: str, progress: bool = False, skipped: Optional[list[tuple[str, str]]] = None,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> list[Sample]:
    """Pair every listed name with its image and label and read both sizes from headers.

    Args:
        layout: the tree (a :class:`dali_voc.datasets.layouts.Layout`: VOC's, ADE20K's,
            Cityscapes').
        split: split name, e.g. ``"train"``.
        progress: show a progress bar (for large uncached scans).
        skipped: when given, a sample with a missing, unreadable, mismatched or oversized file
            is left out and ``(name, reason)`` appended here instead of raising.
        max_pixels: images larger than this (from their headers) are refused before anything
            decodes them.

    Raises:
        FileNotFoundError: an image or label of a listed name is missing (names the file).
        DatasetFormatError: a file is unreadable, or an image and its label differ in size.
    """
    pairs = layout.pairs(split)
    cache_file = layout.cache_path(split)
    cache = _load_size_cache(cache_file)
    fresh: dict[str, list] = {}
    samples: list[Sample] = []
    iterable: Iterable[tuple[int, tuple[str, Path, Path]]] = enumerate(pairs)
    if progress:
        from ..progress import progress_bar
        iterable = progress_bar(iterable, total=len(pairs), desc=f"scan {split}", unit="img", leave=False)
    for index, (name, image, label) in iterable:
        try:
            for path, kind in ((image, "image"), (label, "label")):
                if not path.is_file():
                    raise FileNotFoundError(f"{kind} of sample {name!r} (split {split!r}) is missing: {path}")
            key = _stat_key(image) + _stat_key(label)
            hit = cache.get(name)
            if hit is not None and hit[:4] == key:
                height, width, short, palette = hit[4], hit[5], bool(hit[6]), bool(hit[7])
            else:
                height, width = image_size(image)
                label_h, label_w, short, palette = png_header(label)
                if (label_h, label_w) != (height, width):
                    raise DatasetFormatError(
                        f"sample {name!r}: image {image} is {height}x{width} but label {label} is "
                        f"{label_h}x{label_w} (height x width); they must be the same size"
                    )
            oversized = size_problem(height, width, max_pixels)
            if oversized:
                raise DatasetFormatError(f"sample {name!r}: image {image} {oversized}")
        except (FileNotFoundError, DatasetFormatError) as err:
            if skipped is None:
                raise
            skipped.append((name, str(err)))
            continue
        fresh[name] = key + [height, width, int(short), int(palette)]
        samples.append(Sample(index, name, image, label, height, width, short, palette))
    if fresh != cache:
        _save_size_cache(cache_file, fresh)
    return samples


@dataclass(frozen=True)
class Selection:
    """The samples a loader uses after the small-image policy, and how many it left out."""

    samples: tuple[Sample, ...]
    total: int
    policy: str
    #: ``(name, reason)`` of samples left out because their files are missing or cannot be
    #: decoded (``on_error="skip"``).
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def kept(self) -> int:
        return len(self.samples)

    @property
    def dropped(self) -> int:
        """Samples left out for being smaller than the crop (not counting unreadable ones)."""
        return self.total - self.kept - len(self.skipped)

    def skipped_line(self, split: str) -> str:
        """One line naming the skipped samples (empty when none were skipped)."""
        if not self.skipped:
            return ""
        shown = "; ".join(f"{name}: {why}" for name, why in self.skipped[:3])
        more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        return f"{split}: {len(self.skipped)} unreadable sample(s) skipped ({shown}{more})"

    def describe(self, split: str, crop_size: tuple[int, int]) -> str:
        """One line for the user, e.g. ``train: kept 1114 of 1464 images (350 smaller ...)``."""
        h, w = crop_size
        skipped = f", {len(self.skipped)} unreadable skipped" if self.skipped else ""
        if self.policy == "drop":
            return (f"{split}: kept {self.kept} of {self.total} images ({self.dropped} smaller than {h}x{w} "
                    f"dropped{skipped})")
        return f"{split}: kept {self.kept} of {self.total} images (those smaller than {h}x{w} padded{skipped})"


def select_samples(samples: Sequence[Sample], crop_size: tuple[int, int], policy: SmallImagePolicy,
                   skipped: Sequence[tuple[str, str]] = ()) -> Selection:
    """Apply the small-image policy: ``"drop"`` keeps images at least ``crop_size`` (h, w)
    in both dimensions, as the textbook does; ``"pad"`` keeps every image.

    Raises:
        DatasetFormatError: nothing is left to load.
    """
    crop_h, crop_w = crop_size
    if policy == "drop":
        kept = tuple(s for s in samples if s.height >= crop_h and s.width >= crop_w)
    else:  # "pad" (LoaderConfig validated the policy)
        kept = tuple(samples)
    if not kept:
        raise DatasetFormatError(
            f"no usable image of {len(samples) + len(skipped)} is at least {crop_h}x{crop_w}; use a smaller "
            f"crop_size or small_images='pad'" + (f" ({len(skipped)} unreadable)" if skipped else "")
        )
    return Selection(kept, len(samples) + len(skipped), policy, tuple(skipped))


def load_selection(root: os.PathLike | str, split: str, crop_size: tuple[int, int], policy: str,
                   skip_unreadable: bool = False, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                   dataset: str = "voc") -> Selection:
    """Locate the ``dataset``'s tree at ``root`` (its spec's ``locate``), scan ``split`` and
    apply the small-image policy (the loaders' entry).

    With ``skip_unreadable``, samples whose files are missing or unreadable at the header
    level are left out (listed in ``Selection.skipped``) instead of raising."""
    layout = dataset_spec(dataset).locate(root)
    skipped: Optional[list[tuple[str, str]]] = [] if skip_unreadable else None
    samples = scan_samples(layout, split, skipped=skipped, max_pixels=max_pixels)
    return select_samples(samples, crop_size, policy, skipped or ())
