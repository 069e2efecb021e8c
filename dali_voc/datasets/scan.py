"""Layout of a Pascal VOC2012 segmentation tree: classes, colors, split lists, sample sizes.

Nothing here decodes pixels, and nothing here writes: image sizes come from file headers (a
few hundred bytes per file), read afresh on every scan, so the dataset tree may be read-only or
shared, and no stored fact can outlive the file it describes. There is no size cache: a split's
scan costs a fraction of a second to a second or so on VOC's size (``python -m benchmarks.scan_cold``;
figures in README.md).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from PIL import Image

from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..dataset_specs import VOC_CLASS_NAMES
from ..labels.png import COLOR_PALETTE, SIGNATURE, label_depth_problem, trailing_data_message
from ..errors import FileRefusedError, MissingFileError, VOCFormatError

VOC_CLASSES: tuple[str, ...] = VOC_CLASS_NAMES

#: RGB color of each class in the label PNGs, in class-index order.
VOC_COLORMAP: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
    (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
    (0, 192, 0), (128, 192, 0), (0, 64, 128),
)

#: Color of object borders and "difficult" regions in VOC labels (palette index 255).
VOID_COLOR: tuple[int, int, int] = (224, 224, 192)
#: Palette index of the void color in VOC's label PNGs.
VOID_PALETTE_INDEX = 255

VOC_ROOT_PARTS = ("VOCdevkit", "VOC2012")
IMAGE_DIR = "JPEGImages"
LABEL_DIR = "SegmentationClass"
#: Where the SBD "trainaug" class-index labels go (:mod:`dali_voc.tools.sbd` writes them).
AUG_LABEL_DIR = "SegmentationClassAug"
SPLIT_DIR = os.path.join("ImageSets", "Segmentation")


def voc_palette() -> list[int]:
    """VOC's 256-entry PNG palette as a flat ``[r0, g0, b0, r1, ...]`` list of 768 ints.

    Entry ``i`` spreads the bits of ``i`` over R, G and B (most significant first); the first
    21 entries are :data:`VOC_COLORMAP` and entry 255 is :data:`VOID_COLOR`.
    """
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def find_voc_root(root: os.PathLike | str) -> Path:
    """Return the ``VOC2012`` folder for ``root`` (itself, or ``root/VOCdevkit/VOC2012``).

    Raises:
        FileNotFoundError: naming the folder that is missing.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise MissingFileError(
            f"VOC root {root} does not exist; create a synthetic tree with "
            f"'python -m dali_voc synth --root {root}' or download VOC2012 with "
            f"'python -m dali_voc download --root {root}'"
        )
    nested = root.joinpath(*VOC_ROOT_PARTS)
    if nested.is_dir():
        return nested
    if (root / IMAGE_DIR).is_dir() or (root / SPLIT_DIR).is_dir():
        return root
    raise MissingFileError(f"{root} holds neither {Path(*VOC_ROOT_PARTS)} nor {IMAGE_DIR}/: not a VOC tree")


@dataclass(frozen=True)
class VOCLayout:
    """Paths inside one ``VOC2012`` folder (a :class:`dali_voc.datasets.layouts.Layout`); the labels in
    ``label_subdir`` (``SegmentationClass``, or ``SegmentationClassAug`` for trainaug)."""

    root: Path
    label_subdir: str = LABEL_DIR

    @classmethod
    def locate(cls, root: os.PathLike | str, label_subdir: str = LABEL_DIR) -> "VOCLayout":
        """Find the ``VOC2012`` folder under ``root`` and check its three sub-folders exist."""
        layout = cls(find_voc_root(root), label_subdir)
        layout.validate()
        return layout

    @property
    def image_dir(self) -> Path:
        return self.root / IMAGE_DIR

    @property
    def label_dir(self) -> Path:
        return self.root / self.label_subdir

    @property
    def split_dir(self) -> Path:
        return self.root / SPLIT_DIR

    def image_path(self, name: str) -> Path:
        return self.image_dir / f"{name}.jpg"

    def label_path(self, name: str) -> Path:
        return self.label_dir / f"{name}.png"

    def split_path(self, split: str) -> Path:
        return self.split_dir / f"{split}.txt"

    def validate(self) -> None:
        """Raise ``FileNotFoundError`` naming the first missing folder of the layout."""
        for folder in (self.image_dir, self.label_dir, self.split_dir):
            if not folder.is_dir():
                raise MissingFileError(f"VOC tree {self.root} is missing the folder {folder}")

    def available_splits(self) -> list[str]:
        """Names of the split lists present, e.g. ``['train', 'trainval', 'val']``."""
        return sorted(p.stem for p in self.split_dir.glob("*.txt"))

    def pairs(self, split: str) -> list[tuple[str, Path, Path]]:
        """``(name, image, label)`` of every sample listed in ``split``, in list order."""
        return [(name, self.image_path(name), self.label_path(name)) for name in read_split(self, split)]


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
        VOCFormatError: the list is larger than :data:`MAX_SPLIT_LIST_BYTES` (not read).
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
    exist, :class:`VOCFormatError` when it is something else; ``what`` starts the message
    (e.g. ``"label of sample 'x' (split 'train')"``)."""
    problem = file_problem(path)
    if problem is None:
        return
    kind, detail = problem
    if kind == "missing":
        raise MissingFileError(f"{what} is missing: {path}")
    raise VOCFormatError(f"{what} {path} {detail}")


def read_split(layout: VOCLayout, split: str) -> list[str]:
    """Sample names listed in ``ImageSets/Segmentation/<split>.txt``, in file order.

    Raises:
        MissingFileError: the list does not exist (the message lists the splits that do).
        VOCFormatError: the list is not a regular file, is empty, names a sample twice or
            holds an entry that is not a name (:func:`name_problem`, with its line).
    """
    path = layout.split_path(split)
    problem = file_problem(path)
    if problem is not None and problem[0] == "missing":
        have = ", ".join(layout.available_splits()) or "none"
        raise MissingFileError(f"split list {path} does not exist (splits found: {have})")
    require_file(path, "split list")
    entries = split_entries(path)
    if not entries:
        raise VOCFormatError(f"split list {path} is empty")
    for line, name in entries:
        why = name_problem(name)
        if why:
            raise VOCFormatError(f"split list {path} names {shown_name(name)} (line {line}): {why}")
    names = [name for _, name in entries]
    seen: set[str] = set()
    duplicates = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if duplicates:
        raise VOCFormatError(f"split list {path} names {len(duplicates)} sample(s) twice, e.g. {duplicates[0]!r}")
    return names


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
        VOCFormatError: the file is not a PNG, naming it.
    """
    return png_header(path)[:2]


def png_header(path: Path) -> tuple[int, int, bool, bool]:
    """``(height, width, short_palette, palette)`` of a label PNG from its chunk headers, read
    up to IEND without reading the image data: ``palette`` is True for a palette image,
    ``short_palette`` for one whose PLTE has fewer entries than its bit depth can index. Every
    loader calls it at construction, and ``check`` too, so its refusals hold on every path.

    Raises:
        VOCFormatError: the file is not a PNG, naming it.
        FileRefusedError: a label no path decodes: 16 bits per sample (``16-bit-label``),
            bytes after IEND (``trailing-data-label``; they are never read), or chunks larger
            than the image can need (``oversized-label-file``, :func:`file_size_problem`).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(33)
        if len(head) < 24 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
            raise VOCFormatError(f"{path} is not a PNG file (bad signature or no IHDR chunk)")
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
        VOCFormatError: the file cannot be identified as an image, naming it.
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
        raise VOCFormatError(f"{path}: its header claims a size past PIL's decompression-bomb limit ({err})") from err
    except (OSError, SyntaxError) as err:  # PIL raises UnidentifiedImageError (an OSError)
        raise VOCFormatError(f"{path} is not a readable image: {err}") from err
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
        layout: the tree (a :class:`dali_voc.datasets.layouts.Layout`: :class:`VOCLayout`, ADE20K's,
            Cityscapes').
        split: split name, e.g. ``"train"``.
        progress: show a progress bar (for large uncached scans).
        skipped: when given, a sample with a missing, unreadable, mismatched or oversized file
            is left out and ``(name, reason)`` appended here instead of raising.
        max_pixels: images larger than this (from their headers) are refused before anything
            decodes them.

    Raises:
        MissingFileError: an image or label of a listed name is missing (names the file).
        VOCFormatError: a file is not a regular file or unreadable, or an image and its label
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
                raise VOCFormatError(f"sample {shown_name(name)} ({printable(image)}) cannot be loaded: {why}")
            for path, kind in ((image, "image"), (label, "label")):
                require_file(path, f"{kind} of sample {name!r} (split {split!r})")
            height, width = image_size(image)
            label_h, label_w, short, palette = png_header(label)
            if (label_h, label_w) != (height, width):
                raise VOCFormatError(
                    f"sample {name!r}: image {image} is {height}x{width} but label {label} is "
                    f"{label_h}x{label_w} (height x width); they must be the same size"
                )
            oversized = size_problem(height, width, max_pixels)
            if oversized:
                raise VOCFormatError(f"sample {name!r}: image {image} {oversized}")
        except (FileNotFoundError, VOCFormatError) as err:
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


def select_samples(samples: Sequence[Sample], crop_size: tuple[int, int], policy: str,
                   skipped: Sequence[tuple[str, str]] = ()) -> Selection:
    """Apply the small-image policy: ``"drop"`` keeps images at least ``crop_size`` (h, w)
    in both dimensions, as the textbook does; ``"pad"`` keeps every image.

    Raises:
        VOCFormatError: nothing is left to load.
    """
    crop_h, crop_w = crop_size
    if policy == "drop":
        kept = tuple(s for s in samples if s.height >= crop_h and s.width >= crop_w)
    elif policy == "pad":
        kept = tuple(samples)
    else:
        raise ValueError(f"small_images={policy!r} is not valid; expected 'drop' or 'pad'")
    if not kept:
        raise VOCFormatError(
            f"no usable image of {len(samples) + len(skipped)} is at least {crop_h}x{crop_w}; use a smaller "
            f"crop_size or small_images='pad'" + (f" ({len(skipped)} unreadable)" if skipped else "")
        )
    return Selection(kept, len(samples) + len(skipped), policy, tuple(skipped))
