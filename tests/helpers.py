"""What the tests share: configs per backend, hand-made VOC trees (coordinate-encoding
images, class stripes, broken files), and running the DALI pipeline directly. Fixtures that
build trees live in conftest.py; everything else is imported from here."""

from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from dali_voc.config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig
from dali_voc.datasets.voc import IMAGE_DIR, LABEL_DIR, SPLIT_DIR, VOC_COLORMAP, VOC_ROOT_PARTS, voc_palette

#: Where a loader runs in the tests: the reference path, DALI's CPU operators (labels by the
#: nvCOMP path's algorithm on CPU threads, the default, or by DALI's PNG decoder: "dali-stock"),
#: and DALI on the GPU with either label decoder (``gpu``-marked where used).
BACKENDS = ("reference", "dali", "dali-stock", "dali-gpu-stock", "dali-gpu-nvcomp")

#: Largest |X_dali - X_reference| allowed on the same window. Measured on CPU: 4.8e-7 (both
#: decode JPEG with libjpeg-turbo; the rest is float32 rounding of the normalization).
CPU_IMAGE_TOLERANCE = 1e-5
#: GPU JPEG decoding (nvJPEG / hardware decoder) is not bit-identical to libjpeg-turbo (IDCT and
#: chroma upsampling differ). Bounds in uint8 levels of the de-normalized image.
GPU_IMAGE_MEAN_ABS_LEVELS = 2.0
GPU_IMAGE_MAX_ABS_LEVELS = 64.0


def image_levels(x):
    """A difference of normalized images ``[..., 3, h, w]`` (NumPy or torch) in uint8 levels."""
    std = np.array(IMAGENET_STD, np.float32)[:, None, None] * 255
    return x * (torch.from_numpy(std) if isinstance(x, torch.Tensor) else std)


def require_dali():
    """Import DALI or skip; under CI (DALI_VOC_REQUIRE_DALI=1) a missing DALI fails instead."""
    if os.environ.get("DALI_VOC_REQUIRE_DALI") == "1":
        import nvidia.dali  # noqa: F401  (ImportError fails the test)
        return
    pytest.importorskip("nvidia.dali", reason="DALI not installed (pip install '.[cuda13]')")


def config_for(root, backend: str = "reference", **options) -> LoaderConfig:
    """A quiet config for ``backend`` (one of :data:`BACKENDS`); ``options`` override.

    Defaults: ``verbose=False``; the reference path in the main process (``num_workers=0``);
    DALI on 2 CPU threads, ``device="cpu"``; the GPU variants with ``device="gpu"`` and the
    named label decoder."""
    defaults: dict = {"verbose": False}
    if backend == "reference":
        defaults.update(backend="reference", num_workers=0)
    elif backend == "dali":  # labels by the nvCOMP path's algorithm on CPU threads (label_decoder "auto": "zlib")
        defaults.update(backend="dali", num_workers=2, device="cpu")
    elif backend == "dali-stock":  # labels by DALI's own PNG decoder on the CPU
        defaults.update(backend="dali", num_workers=2, device="cpu", label_decoder="dali")
    elif backend in ("dali-gpu-stock", "dali-gpu-nvcomp"):
        defaults.update(backend="dali", num_workers=2, device="gpu",
                        label_decoder="dali" if backend.endswith("stock") else "nvcomp")
    else:
        raise ValueError(f"unknown test backend {backend!r}")
    return LoaderConfig(root=root, **{**defaults, **options})


def loader_for(config: LoaderConfig, split: str = "train", shuffle: bool = False):
    """The loader of ``config`` (whose backend :func:`config_for` set); DALI required for DALI."""
    from dali_voc.api import make_loader
    if config.backend == "dali":
        require_dali()
    return make_loader(config, split, shuffle)


class PipelineRow(NamedTuple):
    """One sample of the DALI pipeline's outputs (see ``dali_voc.loaders.pipeline.OUTPUTS``)."""

    images: np.ndarray
    labels: np.ndarray
    windows: np.ndarray
    shapes: np.ndarray
    label_shapes: np.ndarray
    image_ids: np.ndarray
    label_ids: np.ndarray


def run_pipeline(config: LoaderConfig, split: str = "train", shuffle: bool = True, iterations: int = 3):
    """Run the DALI pipeline itself (no loader) for ``iterations`` batches, where ``config``
    resolves (DALI's CPU operators, or the GPU).

    Returns the selection and one :class:`PipelineRow` per sample (NumPy arrays; labels: RGB
    colors, or PNG bytes with nvCOMP's label path). On the CPU the labels are DALI's decoded
    colors (``label_path="dali"``): the loader's default there reads the bytes raw
    (``"zlib"``), and these rows show DALI's own label crop."""
    from dataclasses import replace

    from dali_voc.loaders.pipeline import OUTPUTS, build_pipeline
    from dali_voc.resolve import resolve
    from dali_voc.datasets.scan import load_selection
    require_dali()
    selection = load_selection(config.root, split, config.crop_size, config.small_image_policy)
    resolved = resolve(config)
    if resolved.label_path == "zlib":
        resolved = replace(resolved, label_path="dali")
    pipe = build_pipeline(config, resolved, selection.samples, shuffle)
    pipe.build()
    rows = []
    for _ in range(iterations):
        out = [o.as_cpu() for o in pipe.run()]  # one copy per output (TensorListCPU returns itself)
        for b in range(len(out[0])):
            rows.append(PipelineRow(**{name: np.array(o[b]) for name, o in zip(OUTPUTS, out)}))
    return selection, rows


def reference_label_indices(png: bytes, window, shape, crop, table):
    """What the reference path makes of label file bytes ``png`` at ``window`` (PIL, then the
    color table): a :class:`~dali_voc.labels.tables.ConversionResult`."""
    from dali_voc.labels.tables import colors_to_indices
    from dali_voc.geometry.windows import CropWindow, crop_with_pad, valid_mask
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    mask = valid_mask(CropWindow(*window), tuple(shape), crop)
    return colors_to_indices(crop_with_pad(rgb, CropWindow(*window), crop), table, valid=mask)


def raw_image(x: np.ndarray) -> np.ndarray:
    """Undo the normalization: float32 [3, h, w] -> uint8 HWC (exact for integer inputs)."""
    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None] * 255
    std = np.array(IMAGENET_STD, np.float32)[:, None, None] * 255
    return np.round(x * std + mean).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)


def coordinate_rgb(height: int, width: int, sample: int) -> np.ndarray:
    """uint8 RGB whose pixel (y, x) encodes y, x and the sample id exactly (lossless only):
    R = y mod 256, G = x mod 256, B = (y // 256) + 2 * (x // 256) + 8 * sample, for
    y < 512, x < 1024 and sample < 32."""
    assert height <= 512 and width <= 1024 and sample < 32
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([yy % 256, xx % 256, yy // 256 + 2 * (xx // 256) + 8 * sample], axis=-1).astype(np.uint8)


def decode_coordinates(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`coordinate_rgb`: (y, x, sample) arrays."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return r + 256 * (b % 2), g + 256 * ((b // 2) % 4), b // 8


def make_tree(root: Path, shapes: list[tuple[int, int]], split: str = "train",
              image_fn=None, label_fn=None) -> Path:
    """Write a VOC tree whose images/labels come from ``image_fn(i, h, w)``/``label_fn(i, h, w)``.

    Images are written as lossless PNG bytes under ``.jpg`` names (decoders sniff content),
    so pixel-exact comparisons are possible. Returns the VOC2012 folder."""
    voc = root.joinpath(*VOC_ROOT_PARTS)
    for sub in (IMAGE_DIR, LABEL_DIR, SPLIT_DIR):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i, (h, w) in enumerate(shapes):
        name = f"s_{i:04d}"
        names.append(name)
        image = image_fn(i, h, w) if image_fn else coordinate_rgb(h, w, i)
        Image.fromarray(image).save(voc / IMAGE_DIR / f"{name}.jpg", format="PNG")
        label = label_fn(i, h, w) if label_fn else coordinate_rgb(h, w, i)
        if label.ndim == 2:
            img = Image.fromarray(label, mode="P")
            img.putpalette(voc_palette())
        else:
            img = Image.fromarray(label)
        img.save(voc / LABEL_DIR / f"{name}.png")
    (voc / SPLIT_DIR / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    return voc


def class_stripes(i: int, h: int, w: int) -> np.ndarray:
    """Palette-index label: vertical stripes cycling through all 21 classes and void (255)."""
    values = np.array(list(range(21)) + [255], dtype=np.uint8)
    return np.broadcast_to(values[(np.arange(w) // 7 + i) % len(values)], (h, w)).copy()


def textured(i: int, h: int, w: int) -> np.ndarray:
    """uint8 RGB ``[h, w, 3]`` of random 8x8 blocks (seeded by ``i``): JPEG-friendly content."""
    rng = np.random.default_rng(i)
    base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]


def jpeg_bytes(array: np.ndarray, mode: str = "RGB") -> bytes:
    """``array`` as a quality-95 JPEG in ``mode`` (RGB, L, CMYK)."""
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def palette_png(index: np.ndarray) -> bytes:
    """A palette-index label ``[h, w]`` as an 8-bit PNG with VOC's palette."""
    img = Image.fromarray(index, mode="P")
    img.putpalette(voc_palette())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


COLORMAP = np.array(VOC_COLORMAP, dtype=np.uint8)


# -- the broken-tree corpus: one sample of a five-sample tree broken in one way --------------

BROKEN_SHAPE = (330, 490)
BROKEN = "s_0002"


def _image(voc: Path, name: str = BROKEN) -> Path:
    return voc / IMAGE_DIR / f"{name}.jpg"


def _label(voc: Path, name: str = BROKEN) -> Path:
    return voc / LABEL_DIR / f"{name}.png"


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(type, payload)`` of every chunk of a PNG file, IEND included."""
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _rewrite_label(voc: Path, name: str, edit) -> None:
    """Rewrite a label PNG's chunk list with ``edit(chunks) -> chunks``, all CRCs valid."""
    path = _label(voc, name)
    chunks = edit(_png_chunks(path.read_bytes()))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(p, zlib.crc32(k))) for k, p in chunks))


def _idat_cut_short(chunks):
    """One zlib stream holding only the first rows of the image (valid CRCs and checksum)."""
    stream = b"".join(p for k, p in chunks if k == b"IDAT")
    rows = zlib.decompress(stream)
    first = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"][0]
    kept = [c for c in chunks if c[0] != b"IDAT"]
    kept.insert(first, (b"IDAT", zlib.compress(rows[: len(rows) // 3])))
    return kept


def _second_palette(chunks):
    at = [k for k, _ in chunks].index(b"PLTE")
    palette = bytes(255 - b for b in chunks[at][1])  # another palette: every pixel would change color
    return chunks[:at + 1] + [(b"PLTE", palette)] + chunks[at + 1:]


def _palette_after_data(chunks):
    return chunks[:-1] + [(b"PLTE", next(p for k, p in chunks if k == b"PLTE")), chunks[-1]]


def _palette_in_gray_label(voc: Path, name: str = BROKEN) -> None:
    """An 8-bit gray label that also carries a PLTE (forbidden for gray; libpng ignores it)."""
    levels = class_stripes(2, *BROKEN_SHAPE)
    raw = b"".join(b"\x00" + row.tobytes() for row in levels)
    h, w = BROKEN_SHAPE
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)), (b"PLTE", bytes(voc_palette()[:63])),
              (b"IDAT", zlib.compress(raw)), (b"IEND", b"")]
    _rewrite_label(voc, name, lambda _: chunks)


def _data_too_long(chunks):
    """Image data that inflates to more bytes than the header announces (libpng ignores the rest)."""
    rows = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    first = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"][0]
    kept = [c for c in chunks if c[0] != b"IDAT"]
    kept.insert(first, (b"IDAT", zlib.compress(rows + bytes(491))))
    return kept


def _unknown_critical_chunk(chunks):
    return chunks[:1] + [(b"ZZZZ", b"must be understood")] + chunks[1:]


def _short_palette_label(voc: Path, name: str = BROKEN) -> None:
    """A 21-entry palette, with pixels of index 100 and 255 (no palette entry) among the classes."""
    index = class_stripes(2, *BROKEN_SHAPE)
    index[:40, :60] = 100
    img = Image.fromarray(index, mode="P")
    img.putpalette(voc_palette()[:21 * 3])
    img.save(_label(voc, name), format="PNG")


def _exif_rotated_image(voc: Path, name: str = BROKEN) -> None:
    """The same stored pixels, tagged "rotate 90 degrees" (EXIF orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(textured(2, *BROKEN_SHAPE)).save(_image(voc, name), format="JPEG", quality=95, exif=exif.tobytes())


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    parts = [(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\x00" * 64)), (b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(p, zlib.crc32(k))) for k, p in parts)


def _png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG (gray ``[H, W]`` or RGB ``[H, W, 3]`` uint16 samples), unfiltered rows."""
    h, w = samples.shape[:2]
    color = 0 if samples.ndim == 2 else 2
    rows = samples.astype(">u2").reshape(h, -1).view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    parts = [(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)), (b"IDAT", zlib.compress(raw)),
             (b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(p, zlib.crc32(k))) for k, p in parts)


def _class_colors16(voc: Path, name: str = BROKEN) -> None:
    """A 16-bit RGB label: each class color ``c`` stored as ``c << 8`` (what a 16-bit export of
    the 8-bit label holds)."""
    rgb = COLORMAP[class_stripes(2, *BROKEN_SHAPE) % len(COLORMAP)].astype(np.uint16) << 8
    _label(voc, name).write_bytes(_png16(rgb))


def _save_as(voc: Path, name: str, fmt: str, mode: str, **options) -> None:
    """The broken sample's textured image saved by PIL as ``fmt`` in ``mode``, under its .jpg name."""
    Image.fromarray(textured(2, *BROKEN_SHAPE)).convert(mode).save(_image(voc, name), format=fmt, **options)


def _not_a_file(path: Path, kind: str) -> None:
    path.unlink()
    path.mkdir() if kind == "dir" else os.mkfifo(path)


def _grow(path: Path, extra: int) -> None:
    """``extra`` zero bytes after the file's content (a sparse hole: no disk used; a reader that
    reads the whole file would grow by that much)."""
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) + extra)


def _trailing_data(voc: Path, name: str = BROKEN) -> None:
    """64 MiB after the label's IEND."""
    _grow(_label(voc, name), 64 << 20)


#: fault name -> function(voc folder, sample name) that breaks that sample
FAULTS = {
    "missing-image": lambda voc, n=BROKEN: _image(voc, n).unlink(),
    "missing-label": lambda voc, n=BROKEN: _label(voc, n).unlink(),
    "zero-byte-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(b""),
    "wrong-magic-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(b"this is a text file, not a JPEG\n" * 50),
    "size-mismatch": lambda voc, n=BROKEN: _label(voc, n).write_bytes(palette_png(np.zeros((100, 100), np.uint8))),
    "truncated-image": lambda voc, n=BROKEN: _cut(_image(voc, n)),
    "truncated-label": lambda voc, n=BROKEN: _cut(_label(voc, n)),
    "bomb-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(_bomb_png(60000, 60000)),
    "bomb-label": lambda voc, n=BROKEN: _label(voc, n).write_bytes(_bomb_png(60000, 60000)),
    "label-data-cut-short": lambda voc, n=BROKEN: _rewrite_label(voc, n, _idat_cut_short),
    "two-palettes": lambda voc, n=BROKEN: _rewrite_label(voc, n, _second_palette),
    "palette-after-data": lambda voc, n=BROKEN: _rewrite_label(voc, n, _palette_after_data),
    "unknown-critical-chunk": lambda voc, n=BROKEN: _rewrite_label(voc, n, _unknown_critical_chunk),
    "palette-in-gray-label": _palette_in_gray_label,
    "label-data-too-long": lambda voc, n=BROKEN: _rewrite_label(voc, n, _data_too_long),
    "image-is-a-directory": lambda voc, n=BROKEN: _not_a_file(_image(voc, n), "dir"),
    "label-is-a-fifo": lambda voc, n=BROKEN: _not_a_file(_label(voc, n), "fifo"),
    "16-bit-gray-label": lambda voc, n=BROKEN: _label(voc, n).write_bytes(
        _png16(class_stripes(2, *BROKEN_SHAPE).astype(np.uint16))),
    "16-bit-gray-label-scaled": lambda voc, n=BROKEN: _label(voc, n).write_bytes(
        _png16(class_stripes(2, *BROKEN_SHAPE).astype(np.uint16) * 257)),
    "16-bit-rgb-label": _class_colors16,
    "16-bit-gray-png-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(
        _png16(textured(2, *BROKEN_SHAPE)[..., 0].astype(np.uint16) * 257)),
    "16-bit-rgb-png-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(
        _png16(textured(2, *BROKEN_SHAPE).astype(np.uint16) * 257 + 100)),
    "16-bit-gray-tiff-image": lambda voc, n=BROKEN: Image.fromarray(
        textured(2, *BROKEN_SHAPE)[..., 0].astype(np.uint16) * 257).save(_image(voc, n), format="TIFF"),
    "data-after-label-iend": _trailing_data,
    "data-after-jpeg-end": lambda voc, n=BROKEN: _grow(_image(voc, n), 64 << 20),
    "huge-chunk-in-label": lambda voc, n=BROKEN: _rewrite_label(
        voc, n, lambda chunks: chunks[:-1] + [(b"tEXt", b"junk\x00" + bytes(6 << 20))] + chunks[-1:]),
}
CONSTRUCTION_FAULTS = ["missing-image", "missing-label", "zero-byte-image", "wrong-magic-image", "size-mismatch",
                       "bomb-image", "bomb-label", "image-is-a-directory", "label-is-a-fifo", "16-bit-gray-label",
                       "16-bit-gray-label-scaled", "16-bit-rgb-label", "16-bit-gray-png-image", "16-bit-rgb-png-image",
                       "16-bit-gray-tiff-image", "data-after-label-iend", "data-after-jpeg-end",
                       "huge-chunk-in-label"]
#: Named when the sample is decoded (or, where a loader checks those files up front, when it is built).
DECODE_FAULTS = ["truncated-image", "truncated-label", "label-data-cut-short", "two-palettes", "palette-after-data",
                 "unknown-critical-chunk", "palette-in-gray-label", "label-data-too-long"]

#: inputs every path decodes, identically: case name -> function(voc folder, sample name)
HANDLED = {
    "grayscale-jpeg": lambda voc, n=BROKEN: _image(voc, n).write_bytes(jpeg_bytes(textured(2, *BROKEN_SHAPE), "L")),
    "cmyk-jpeg": lambda voc, n=BROKEN: _image(voc, n).write_bytes(jpeg_bytes(textured(2, *BROKEN_SHAPE), "CMYK")),
    "png-named-jpg": lambda voc, n=BROKEN: Image.fromarray(textured(2, *BROKEN_SHAPE)).save(_image(voc, n),
                                                                                            format="PNG"),
    "rgb-label": lambda voc, n=BROKEN: Image.open(_label(voc, n)).convert("RGB").save(_label(voc, n)),
    "exif-orientation": _exif_rotated_image,
    "palette-index-without-entry": _short_palette_label,
    # other encodings under a .jpg name that both decoders read alike (a probe of the formats
    # DALI and PIL share found only >8-bit samples differing; those are refused, see FAULTS)
    "rgba-png-named-jpg": lambda voc, n=BROKEN: _save_as(voc, n, "PNG", "RGBA"),
    "1-bit-png-named-jpg": lambda voc, n=BROKEN: _save_as(voc, n, "PNG", "1"),
    "interlaced-png-named-jpg": lambda voc, n=BROKEN: _save_as(voc, n, "PNG", "RGB", interlace=True),
    "tiff-named-jpg": lambda voc, n=BROKEN: _save_as(voc, n, "TIFF", "RGB"),
    "webp-named-jpg": lambda voc, n=BROKEN: _save_as(voc, n, "WEBP", "RGB", quality=80),
    "progressive-jpeg": lambda voc, n=BROKEN: _save_as(voc, n, "JPEG", "RGB", progressive=True, quality=90),
}


@functools.lru_cache(maxsize=1)
def _pristine_tree() -> Path:
    """The five-sample tree before any fault, written once per test session."""
    root = Path(tempfile.mkdtemp(prefix="dali_voc_pristine_"))
    atexit.register(shutil.rmtree, root, True)
    voc = make_tree(root, [BROKEN_SHAPE] * 5, image_fn=textured, label_fn=class_stripes)
    for i in range(5):
        _image(voc, f"s_{i:04d}").write_bytes(jpeg_bytes(textured(i, *BROKEN_SHAPE)))
    return root


def broken_tree(root: Path, fault) -> Path:
    """Five samples of real JPEGs with class-stripe labels (a fresh copy), then ``fault(voc)``
    applied to sample :data:`BROKEN`."""
    shutil.copytree(_pristine_tree(), root, dirs_exist_ok=True)
    fault(root.joinpath(*VOC_ROOT_PARTS))
    return root
