"""The scan every dataset goes through: split entries -> samples with sizes -> the selection.

Nothing here decodes pixels, and nothing here writes: image sizes come from file headers (a
few hundred bytes per file), read afresh on every scan, so the dataset tree may be read-only or
shared, and no stored fact can outlive the file it describes. There is no size cache: a split's
scan costs a fraction of a second to a second or so on VOC's size (``python -m benchmarks.scan_cold``;
figures in README.md). Where the files are is the dataset's
:class:`~dali_voc.datasets.layouts.Layout` (found by its :class:`~dali_voc.dataset_specs.DatasetSpec`);
what the scan yields, and the checks of names and files it applies, are generic.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from PIL import Image

from ..config import DEFAULT_MAX_IMAGE_PIXELS, SmallImagePolicy
from ..dataset_specs import dataset_spec
from ..labels.png import COLOR_PALETTE, SIGNATURE, label_depth_problem, trailing_data_message
from ..errors import DatasetFormatError, FileRefusedError, MissingFileError


#: Longest sample name in bytes: with its suffix (``.jpg``, ``.png``) it stays within the 255-byte
#: file-name limit of common file systems (ext4, XFS, Btrfs, NTFS), where a longer name cannot exist.
MAX_NAME_BYTES = 251


#: Largest split list read (VOC's largest, SBD's train_aug, is 127 KB): a larger file is not a
#: list of names, and reading it would take memory in proportion.
MAX_SPLIT_LIST_BYTES = 64 << 20


def split_entries(path: Path) -> list[tuple[int, str]]:
    """``(line number, name)`` of every non-blank line of a split list, spaces around it removed
    (and a UTF-8 byte-order mark). Bytes that are not UTF-8 are kept as surrogate escapes, which
    :func:`name_problem` names.

    Raises:
        DatasetFormatError: the list is larger than :data:`MAX_SPLIT_LIST_BYTES` (not read).
    """
    size = path.stat().st_size
    if size > MAX_SPLIT_LIST_BYTES:
        raise FileRefusedError("oversized-list", f"split list {path} is {size} bytes, over the "
                                                 f"{MAX_SPLIT_LIST_BYTES} a list of names can need; not read")
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def split_names(path: Path) -> list[str]:
    """The names in a split list file, in order (blank lines and surrounding spaces ignored)."""
    return [name for _, name in split_entries(path)]


def shown_name(name: str) -> str:
    """``name`` for a message: its repr, cut after 60 characters."""
    return repr(name) if len(name) <= 60 else f"{name[:60]!r}... ({len(name)} characters)"


def printable(path: object) -> str:
    """``path`` as text any terminal prints: bytes that are not UTF-8 as ``\\xNN`` escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a sample name, or ``None``: the one check of every name a split
    list or a folder listing gives (loaders, ``check``, ``sbd``, the download's archive name).
    Names are file stems such as ``2007_000032``: never paths (they would reach files outside
    the tree's folders), UTF-8 text, short enough to be a file name with its suffix."""
    if "/" in name or "\\" in name:
        return "it holds a path separator (entries are names, not paths)"
    if name in (".", ".."):
        return "it is a relative folder, not a name"
    if "\x00" in name:
        return "it holds a NUL character"
    if any("\udc80" <= c <= "\udcff" for c in name):
        return "it holds bytes that are not UTF-8 text"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"it is {size} bytes long; file names end at 255 bytes, so a name (before its .jpg/.png) "
                f"has at most {MAX_NAME_BYTES}")
    return None


def file_problem(path: Path) -> Optional[tuple[str, str]]:
    """``None`` when ``path`` is a regular file (links followed), else ``(kind, detail)``:
    ``("missing", ...)``, or ``("not-a-file", "is a directory, not a regular file")`` (also a
    FIFO, socket or device, which is never opened: reading a FIFO would block), or
    ``("unreadable", ...)`` when the file system refuses to say (permissions, a link loop)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing", "does not exist"
    except OSError as err:
        return "unreadable", f"cannot be looked up ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "not a file")
    return "not-a-file", f"is {kind}, not a regular file"


def require_file(path: Path, what: str) -> None:
    """Raise unless ``path`` is a regular file: :class:`MissingFileError` when it does not
    exist, :class:`DatasetFormatError` when it is something else; ``what`` starts the message
    (e.g. ``"label of sample 'x' (split 'train')"``)."""
    problem = file_problem(path)
    if problem is None:
        return
    kind, detail = problem
    if kind == "missing":
        raise MissingFileError(f"{what} is missing: {path}")
    raise DatasetFormatError(f"{what} {path} {detail}")


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
    """``(height, width, short_palette, palette)`` of a label PNG from its chunk headers, read
    up to IEND without reading the image data: ``palette`` is True for a palette image,
    ``short_palette`` for one whose PLTE has fewer entries than its bit depth can index. Every
    loader calls it at construction, and ``check`` too, so its refusals hold on every path.

    Raises:
        DatasetFormatError: the file is not a PNG, naming it.
        FileRefusedError: a label no path decodes: 16 bits per sample (``16-bit-label``),
            bytes after IEND (``trailing-data-label``; they are never read), or chunks larger
            than the image can need (``oversized-label-file``, :func:`file_size_problem`).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(33)
        if len(head) < 24 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
            raise DatasetFormatError(f"{path} is not a PNG file (bad signature or no IHDR chunk)")
        width, height = struct.unpack(">II", head[16:24])
        if len(head) < 33:
            return height, width, False, False  # damaged: decoding will name it
        depth, color = head[24], head[25]
        refused = label_depth_problem(depth)
        if refused:
            raise FileRefusedError("16-bit-label", f"label {path} {refused}")
        short, pos = False, 33
        while True:  # chunk headers only, seeking over the payloads
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return height, width, short, color == COLOR_PALETTE  # damaged: decoding will name it
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"PLTE" and color == COLOR_PALETTE:
                short = length // 3 < (1 << depth)
            pos += 12 + length
            if kind == b"IEND":
                if size > pos:
                    raise FileRefusedError("trailing-data-label", trailing_data_message(f"label {path}", size - pos))
                too_big = file_size_problem(path, height, width, size)
                if too_big:
                    raise FileRefusedError("oversized-label-file", f"label {path} {too_big}")
                return height, width, short, color == COLOR_PALETTE


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header, without decoding pixels.

    Raises:
        DatasetFormatError: the file cannot be identified as an image, naming it.
        FileRefusedError: a file larger than its image can need (``oversized-image-file``,
            :func:`file_size_problem`), or an image of more than 8 bits per sample, in any format
            (``16-bit-image``): DALI's decoder scales such samples to 8 bits and PIL truncates
            or clips them, so the paths would give different pixels.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            bits = _bits_per_sample(im, path)
    except Image.DecompressionBombError as err:  # PIL refuses to open it at all
        raise DatasetFormatError(f"{path}: its header claims a size past PIL's decompression-bomb limit ({err})") from err
    except (OSError, SyntaxError) as err:  # PIL raises UnidentifiedImageError (an OSError)
        raise DatasetFormatError(f"{path} is not a readable image: {err}") from err
    too_big = file_size_problem(path, height, width)
    if too_big:
        raise FileRefusedError("oversized-image-file", f"image {path} {too_big}")
    if bits > 8:
        raise FileRefusedError("16-bit-image", f"image {path} is a {bits}-bit {im.format}; decoders reduce samples "
                                               f"of more than 8 bits differently (DALI scales, PIL truncates or "
                                               f"clips), so no path decodes it: convert it to 8 bits")
    return height, width


def _bits_per_sample(im: Image.Image, path: Path) -> int:
    """Bits per sample an opened image stores, from its header: PIL's mode says it for
    16/32-bit gray (any format); PNG's IHDR and TIFF's BitsPerSample for RGB, which PIL opens
    as 8-bit "RGB" whatever the file holds."""
    if im.mode.startswith(("I", "F")):  # I;16, I;16B, I (32-bit int), F (float)
        return 16 if ";16" in im.mode else 32
    if im.format == "PNG":
        with open(path, "rb") as f:
            depth = f.read(25)[24:]
        return depth[0] if depth else 8
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))  # BitsPerSample
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


#: Most bytes an image file may hold per pixel of its header's size (8: four 16-bit samples; 8-bit
#: JPEG and PNG files stay well under 4), plus an allowance for metadata (EXIF, ICC profiles). DALI's
#: reader loads whole files into memory, so a file beyond this (data after the image, a forged
#: header) is refused from its size, before anything reads it.
MAX_FILE_BYTES_PER_PIXEL = 8
FILE_METADATA_ALLOWANCE = 4 << 20


def file_size_problem(path: Path, height: int, width: int, size: Optional[int] = None) -> Optional[str]:
    """Why a file of ``size`` bytes (default: its size on disk) is too large for an image of
    ``height x width``, or None."""
    size = os.stat(path).st_size if size is None else size
    limit = MAX_FILE_BYTES_PER_PIXEL * height * width + FILE_METADATA_ALLOWANCE
    if size > limit:
        return (f"is {size} bytes, more than a {height}x{width} image can need ({limit} bytes at most); it holds "
                f"something else too (data after the image?), which no path reads")
    return None


def size_problem(height: int, width: int, max_pixels: int) -> Optional[str]:
    """Why an image of ``height x width`` is refused (over ``max_pixels``), or ``None``."""
    if height * width > max_pixels:
        return (f"is {height}x{width} ({height * width / 1e6:.0f} MP), over the max_image_pixels limit of "
                f"{max_pixels / 1e6:g} MP (a forged header, or set max_image_pixels higher)")
    return None


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
        MissingFileError: an image or label of a listed name is missing (names the file).
        DatasetFormatError: a file is not a regular file or unreadable, or an image and its label
            differ in size.
    """
    pairs = layout.pairs(split)
    samples: list[Sample] = []
    iterable: Iterable[tuple[int, tuple[str, Path, Path]]] = enumerate(pairs)
    if progress:
        from ..progress import progress_bar
        iterable = progress_bar(iterable, total=len(pairs), desc=f"scan {split}", unit="img", leave=False)
    for index, (name, image, label) in iterable:
        try:
            why = name_problem(name)  # names from folder listings too (ADE20K, Cityscapes)
            if why:
                raise DatasetFormatError(f"sample {shown_name(name)} ({printable(image)}) cannot be loaded: {why}")
            for path, kind in ((image, "image"), (label, "label")):
                require_file(path, f"{kind} of sample {name!r} (split {split!r})")
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
        samples.append(Sample(index, name, image, label, height, width, short, palette))
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


def load_selection(root: os.PathLike | str, split: str, crop_size: tuple[int, int], policy: SmallImagePolicy,
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
