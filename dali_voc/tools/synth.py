"""Synthetic segmentation trees with the real datasets' layouts and statistics.

The real archives cannot be fetched everywhere (CI, the demo), so tests and benchmarks run on
generated trees that look like the real ones to a decoder. :func:`synthesize` writes any of
four datasets; :func:`synthesize_voc` is the original VOC writer it calls for ``"voc"``.

``"voc"`` (:class:`SynthSpec`): ``root/VOCdevkit/VOC2012``

* sizes drawn from VOC-like shapes (long side mostly 500: 500x375, 500x333, 375x500, ...),
  about a quarter of them smaller than 320x480 in some dimension;
* JPEGs of textured, natural-looking content (1/f noise fields, objects with their own
  texture and shading, fine grain), saved at IJG quality 95 with 4:2:0 chroma, as VOC's own
  (VOC's quantization tables are IJG's scaled to quality 95); ~100 KB at 500x375;
* labels as 8-bit palette PNGs with VOC's palette: background, 1-4 objects of random
  classes, each outlined by a void (index 255) border 3-6 pixels wide; ~2-4 KB each;
* ``ImageSets/Segmentation/{train,val,trainval}.txt``.

``"voc_aug"`` (:class:`VocAugSpec`): the VOC tree above plus SBD's extra labels ("trainaug")

* ``SegmentationClassAug/<name>.png``: 8-bit grayscale (mode ``L``) class indices 0-20 and
  255, the same pixels as the palette label for every VOC name, and for ``num_extra``
  SBD-only names ``2008_NNNNNN`` that have a JPEG in ``JPEGImages`` but no
  ``SegmentationClass`` label;
* ``ImageSets/Segmentation/train_aug.txt``: VOC train names + the extra names (no val name).

``"ade20k"`` (:class:`Ade20kSpec`): ``root/ADEChallengeData2016`` (SceneParsing)

* ``images/{training,validation}/ADE_{train,val}_%08d.jpg`` (numbered from 1): JPEGs at
  quality 90 of ADE-like sizes (shorter side mostly 256-512, aspect 0.5-2, about 10% with
  the long side 768-1024), textured like VOC's;
* ``annotations/{training,validation}/ADE_{train,val}_%08d.png``: 8-bit grayscale, 0 =
  "other"/unlabelled and 1-150 the classes: stuff bands (sky/ceiling, wall/building/tree,
  floor/road/grass...) and 2-8 objects whose classes follow ADE's long-tailed frequencies,
  outlined by unlabelled (0) seams 2-5 pixels wide, plus unlabelled clutter (a few percent
  of the pixels are 0).

``"cityscapes"`` (:class:`CityscapesSpec`): ``root`` itself

* ``leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png``: RGB 8-bit
  PNGs, 2048x1024 by default, ~2 MB each like the real ones (street scenes: road at the
  bottom, sky at the top, natural colors per class, damped 1/f texture);
* ``gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png``: 8-bit
  grayscale labelIds in 0-33 (mostly the 19 evaluated ids, plus 0 unlabeled, 1 ego vehicle,
  2 rectification border, 3 out of roi, 4 static, ...); cities aachen, bochum, bremen
  (train) and frankfurt, lindau, munster (val).

Generation is deterministic for a seed (each sample has its own generator) and runs in
parallel processes with a progress bar. Every tree has a JSON manifest of its spec, so
writing the same spec again writes nothing.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..progress import progress_bar
from ..datasets.ade20k import ADE20K_CLASS_NAMES
from ..datasets.cityscapes import CITYSCAPES_TRAIN_IDS
from ..datasets.ade20k import ADE20K_FOLDER as ADE_DIR
from ..datasets.ade20k import ADE20K_SPLITS
from ..datasets.voc_aug import TRAIN_AUG_SPLIT
from ..datasets.voc import AUG_LABEL_DIR, IMAGE_DIR, LABEL_DIR, SPLIT_DIR, VOC_ROOT_PARTS, VOID_PALETTE_INDEX, voc_palette

JPEG_QUALITY = 95
MANIFEST = "dali_voc_synth.json"

# (height, width, weight): VOC-like shapes. Portrait and short landscape images are those
# the textbook's 320x480 filter drops (weights sum to 1; about 25% are smaller than 320x480).
SIZE_TABLE: tuple[tuple[int, int, float], ...] = (
    (375, 500, 0.40), (333, 500, 0.17), (334, 500, 0.05), (332, 500, 0.02), (500, 500, 0.02),
    (366, 500, 0.03), (400, 500, 0.02), (353, 500, 0.02), (338, 500, 0.02),
    (500, 375, 0.12), (500, 333, 0.06), (500, 334, 0.01), (480, 360, 0.01),
    (281, 500, 0.02), (300, 500, 0.01), (313, 500, 0.01), (240, 320, 0.01),
)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Names are ``2007_000000`` ... like VOC's ``YYYY_NNNNNN``."""

    num_train: int = 1464
    num_val: int = 1449
    seed: int = 0
    quality: int = JPEG_QUALITY


def sample_shape(rng: np.random.Generator) -> tuple[int, int]:
    """Draw ``(height, width)`` from :data:`SIZE_TABLE`."""
    weights = np.array([w for _, _, w in SIZE_TABLE])
    h, w, _ = SIZE_TABLE[rng.choice(len(SIZE_TABLE), p=weights / weights.sum())]
    return h, w


def pink_noise(rng: np.random.Generator, shape: tuple[int, int], exponent: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std noise with a ``1/f**exponent`` amplitude spectrum, float32 ``[H, W]``.

    Natural photographs have roughly ``1/f`` amplitude spectra; this is their texture.
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f ** exponent
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    return field / (field.std() + 1e-8)


def _blob_polygon(rng: np.random.Generator, h: int, w: int) -> list[tuple[float, float]]:
    """A random closed outline (a wobbly star-shaped blob) inside an ``h x w`` image."""
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    radius = rng.uniform(0.12, 0.35) * min(h, w)
    n = int(rng.integers(24, 48))
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    wobble = np.ones(n)
    for k in range(2, 6):  # a few low harmonics give organic shapes
        wobble += rng.uniform(0, 0.25) * np.sin(k * angles + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.6, 1.6)
    ys = cy + radius * wobble * np.sin(angles)
    xs = cx + radius * aspect * wobble * np.cos(angles)
    return list(zip(np.clip(xs, 0, w - 1).tolist(), np.clip(ys, 0, h - 1).tolist()))


def make_label(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A palette-index label ``uint8 [H, W]`` and the bool mask of each object's interior.

    Background is 0; each of 1-4 objects has a class in 1..20 and a void border (255)."""
    h, w = shape
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    masks = []
    for _ in range(int(rng.integers(1, 5))):
        poly = _blob_polygon(rng, h, w)
        cls = int(rng.integers(1, 21))
        mask_img = Image.new("1", (w, h), 0)
        ImageDraw.Draw(mask_img).polygon(poly, fill=1)
        masks.append(np.asarray(mask_img, dtype=bool))
        draw.polygon(poly, fill=cls)
        draw.line(poly + [poly[0]], fill=VOID_PALETTE_INDEX, width=int(rng.integers(3, 7)), joint="curve")
    return np.asarray(canvas, dtype=np.uint8), masks


def _textured_layer(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """float32 ``[H, W, 3]`` in 0-255: a random base color with 1/f luminance and chroma."""
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    lum = pink_noise(rng, shape, exponent=rng.uniform(1.2, 1.4))
    detail = pink_noise(rng, shape, exponent=0.55)  # foliage/fabric-like fine structure
    chroma = pink_noise(rng, shape, exponent=1.3)
    tint = rng.normal(0, 1, size=3).astype(np.float32)
    layer = (base + rng.uniform(20, 34) * lum[..., None] + rng.uniform(5, 9) * detail[..., None]
             + 8.0 * chroma[..., None] * tint)
    return layer


def make_image(rng: np.random.Generator, masks: list[np.ndarray]) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: a textured background with each object in its own texture,
    shaded with a light gradient, edges softened by one pixel, plus sensor grain."""
    h, w = masks[0].shape
    image = _textured_layer(rng, (h, w))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for mask in masks:
        layer = _textured_layer(rng, (h, w))
        gy, gx = rng.normal(0, 0.12, size=2)
        layer *= (1.0 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5))[..., None]
        alpha = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(1.0)),
                           dtype=np.float32)[..., None] / 255.0
        image = image * (1.0 - alpha) + layer * alpha
    image += rng.normal(0, 1.5, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def sample_name(index: int) -> str:
    return f"2007_{index:06d}"


def write_sample(voc_dir: Path, index: int, seed: int, quality: int = JPEG_QUALITY) -> tuple[int, int]:
    """Generate sample ``index`` of a tree with ``seed`` and write its JPEG and PNG.

    Returns the JPEG and PNG sizes in bytes."""
    rng = np.random.default_rng([seed, index])
    shape = sample_shape(rng)
    label, masks = make_label(rng, shape)
    image = make_image(rng, masks)
    name = sample_name(index)
    jpg, png = voc_dir / IMAGE_DIR / f"{name}.jpg", voc_dir / LABEL_DIR / f"{name}.png"
    Image.fromarray(image).save(jpg, quality=quality, subsampling="4:2:0")
    label_img = Image.fromarray(label, mode="P")
    label_img.putpalette(voc_palette())
    label_img.save(png)
    return jpg.stat().st_size, png.stat().st_size


def _write_chunk(args: tuple[str, list[int], int, int]) -> list[tuple[int, int]]:
    voc_dir, indices, seed, quality = args
    return [write_sample(Path(voc_dir), i, seed, quality) for i in indices]


def synthesize_voc(root: os.PathLike | str, spec: SynthSpec = SynthSpec(), workers: Optional[int] = None,
                   progress: bool = True) -> Path:
    """Write a synthetic ``root/VOCdevkit/VOC2012`` tree and return the ``VOC2012`` path.

    Idempotent: when the tree at ``root`` was made from the same spec, nothing is written.
    """
    from ..config import default_worker_count

    voc_dir = Path(root).expanduser().joinpath(*VOC_ROOT_PARTS)
    manifest = voc_dir / MANIFEST
    wanted = asdict(spec)
    if manifest.is_file() and json.loads(manifest.read_text()).get("spec") == wanted:
        return voc_dir
    for sub in (IMAGE_DIR, LABEL_DIR, SPLIT_DIR):
        (voc_dir / sub).mkdir(parents=True, exist_ok=True)
    total = spec.num_train + spec.num_val
    workers = workers or default_worker_count()
    chunk = 16
    jobs = [(str(voc_dir), list(range(i, min(i + chunk, total))), spec.seed, spec.quality)
            for i in range(0, total, chunk)]
    sizes: list[tuple[int, int]] = []
    with progress_bar(total=total, desc="synthesizing VOC", unit="img", disable=not progress) as bar:
        if workers <= 1:
            results = map(_write_chunk, jobs)
            for part in results:
                sizes += part
                bar.update(len(part))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for part in pool.map(_write_chunk, jobs):
                    sizes += part
                    bar.update(len(part))
    names = [sample_name(i) for i in range(total)]
    split_dir = voc_dir / SPLIT_DIR
    train, val = names[: spec.num_train], names[spec.num_train:]
    for split, listed in (("train", train), ("val", val), ("trainval", names)):
        (split_dir / f"{split}.txt").write_text("".join(n + "\n" for n in listed))
    jpeg_bytes = [s[0] for s in sizes]
    png_bytes = [s[1] for s in sizes]
    manifest.write_text(json.dumps({
        "spec": wanted,
        "mean_jpeg_bytes": float(np.mean(jpeg_bytes)),
        "mean_png_bytes": float(np.mean(png_bytes)),
    }, indent=2))
    return voc_dir


# ---------------------------------------------------------------------------------------------
# Shared plumbing for the other datasets
# ---------------------------------------------------------------------------------------------

def _spec_json(spec: Any) -> dict:
    """``asdict(spec)`` as it reads back from JSON (tuples become lists), for comparison."""
    return json.loads(json.dumps(asdict(spec)))


def _manifest_matches(manifest: Path, spec: Any) -> bool:
    return manifest.is_file() and json.loads(manifest.read_text()).get("spec") == _spec_json(spec)


def _write_manifest(manifest: Path, spec: Any, sizes: list[tuple[int, int]], image_key: str,
                    label_key: str) -> None:
    manifest.write_text(json.dumps({
        "spec": _spec_json(spec),
        image_key: float(np.mean([s[0] for s in sizes])) if sizes else 0.0,
        label_key: float(np.mean([s[1] for s in sizes])) if sizes else 0.0,
    }, indent=2))


def _run_chunks(func: Callable[[Any], list[tuple[int, int]]], jobs: Sequence[tuple], total: int,
                desc: str, workers: Optional[int], progress: bool) -> list[tuple[int, int]]:
    """Run ``func`` on every job (each a chunk of samples) in ``workers`` processes.

    ``func`` returns one ``(image_bytes, label_bytes)`` pair per sample of its chunk; they come
    back in job order."""
    from ..config import default_worker_count

    workers = workers or default_worker_count()
    sizes: list[tuple[int, int]] = []
    with progress_bar(total=total, desc=desc, unit="img", disable=not progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            results = map(func, jobs)
            for part in results:
                sizes += part
                bar.update(len(part))
        else:
            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                for part in pool.map(func, jobs):
                    sizes += part
                    bar.update(len(part))
    return sizes


def _chunks(indices: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(indices[i: i + size]) for i in range(0, len(indices), size)]


def _blob_in_box(rng: np.random.Generator, x0: float, y0: float, box_w: float,
                 box_h: float) -> list[tuple[float, float]]:
    """:func:`_blob_polygon` drawn in a ``box_w x box_h`` box whose top-left is ``(x0, y0)``."""
    poly = _blob_polygon(rng, max(2, int(round(box_h))), max(2, int(round(box_w))))
    return [(x0 + x, y0 + y) for x, y in poly]


def _wobbly_rows(rng: np.random.Generator, w: int, mean_y: float, amplitude: float) -> np.ndarray:
    """float ``[W]``: a horizon-like boundary, ``mean_y`` plus a few low harmonics."""
    x = np.arange(w, dtype=np.float64) / max(1, w)
    y = np.full(w, mean_y)
    for k in range(1, 5):
        y += amplitude / k * np.sin(2 * np.pi * k * x * rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * np.pi))
    return y


def _save_gray_png(path: Path, label: np.ndarray) -> int:
    """Write ``uint8 [H, W]`` as an 8-bit grayscale (mode ``L``) PNG; return its size in bytes."""
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(path)
    return path.stat().st_size


# ---------------------------------------------------------------------------------------------
# VOC2012 + SBD ("trainaug")
# ---------------------------------------------------------------------------------------------

AUG_MANIFEST = "dali_voc_synth_aug.json"
AUG_SPLIT = TRAIN_AUG_SPLIT


@dataclass(frozen=True)
class VocAugSpec:
    """A VOC tree (``voc``) plus ``num_extra`` SBD-only samples named ``2008_NNNNNN``.

    The real trainaug has 10582 names: VOC's 1464 train + 9118 from SBD; the default here adds
    200 so a default tree is quick to write (raise ``num_extra`` for the full count). The
    extras' generators are seeded with ``voc.seed``."""

    voc: SynthSpec = SynthSpec()
    num_extra: int = 200


def aug_extra_name(index: int) -> str:
    """Name of SBD-only sample ``index``: ``2008_NNNNNN`` never collides with ``2007_...``."""
    return f"2008_{index:06d}"


def write_aug_extra(voc_dir: Path, index: int, seed: int, quality: int = JPEG_QUALITY) -> tuple[int, int]:
    """Generate SBD-only sample ``index``: a VOC-like JPEG in ``JPEGImages`` and its mode-``L``
    label (values 0-20, 255 borders) in ``SegmentationClassAug``; no ``SegmentationClass``
    PNG. Returns the JPEG and PNG sizes in bytes."""
    rng = np.random.default_rng([seed, 0x5BD, index])  # own stream: never equals a VOC sample's
    label, masks = make_label(rng, sample_shape(rng))
    image = make_image(rng, masks)
    name = aug_extra_name(index)
    jpg = voc_dir / IMAGE_DIR / f"{name}.jpg"
    Image.fromarray(image).save(jpg, quality=quality, subsampling="4:2:0")
    return jpg.stat().st_size, _save_gray_png(voc_dir / AUG_LABEL_DIR / f"{name}.png", label)


def convert_voc_label(voc_dir: Path, name: str) -> tuple[int, int]:
    """Rewrite ``SegmentationClass/<name>.png`` (palette) as ``SegmentationClassAug/<name>.png``
    (grayscale, the same indices). Returns the JPEG and new PNG sizes in bytes."""
    with Image.open(voc_dir / LABEL_DIR / f"{name}.png") as im:
        indices = np.asarray(im)  # a P-mode image reads back as its palette indices
    png = _save_gray_png(voc_dir / AUG_LABEL_DIR / f"{name}.png", indices)
    return (voc_dir / IMAGE_DIR / f"{name}.jpg").stat().st_size, png


def _write_aug_chunk(args: tuple[str, str, list, int, int]) -> list[tuple[int, int]]:
    voc_dir, kind, items, seed, quality = args
    if kind == "voc":
        return [convert_voc_label(Path(voc_dir), name) for name in items]
    return [write_aug_extra(Path(voc_dir), i, seed, quality) for i in items]


def synthesize_voc_aug(root: os.PathLike | str, spec: VocAugSpec = VocAugSpec(), workers: Optional[int] = None,
                       progress: bool = True) -> Path:
    """Write a synthetic VOC2012 + SBD tree under ``root`` and return the ``VOC2012`` path."""
    voc_dir = synthesize_voc(root, spec.voc, workers, progress)
    manifest = voc_dir / AUG_MANIFEST
    if _manifest_matches(manifest, spec):
        return voc_dir
    (voc_dir / AUG_LABEL_DIR).mkdir(parents=True, exist_ok=True)
    names = [sample_name(i) for i in range(spec.voc.num_train + spec.voc.num_val)]
    jobs = ([(str(voc_dir), "voc", c, spec.voc.seed, spec.voc.quality) for c in _chunks(names, 64)]
            + [(str(voc_dir), "extra", c, spec.voc.seed, spec.voc.quality)
               for c in _chunks(range(spec.num_extra), 16)])
    sizes = _run_chunks(_write_aug_chunk, jobs, len(names) + spec.num_extra, "synthesizing VOC+SBD",
                        workers, progress)
    train = names[: spec.voc.num_train]
    extra = [aug_extra_name(i) for i in range(spec.num_extra)]
    (voc_dir / SPLIT_DIR / f"{AUG_SPLIT}.txt").write_text("".join(n + "\n" for n in train + extra))
    extra_jpeg = [jpeg for jpeg, _ in sizes[len(names):]]
    manifest.write_text(json.dumps({
        "spec": _spec_json(spec),
        "num_train_aug": len(train) + len(extra),
        "mean_extra_jpeg_bytes": float(np.mean(extra_jpeg)) if extra_jpeg else 0.0,
        "mean_aug_png_bytes": float(np.mean([png for _, png in sizes])) if sizes else 0.0,
    }, indent=2))
    return voc_dir


# ---------------------------------------------------------------------------------------------
# ADE20K SceneParsing (ADEChallengeData2016)
# ---------------------------------------------------------------------------------------------

#: The generator's split keywords -> ADE20K's split folders.
ADE_SPLITS = {key: ADE20K_SPLITS[key] for key in ("train", "val")}
ADE_NUM_CLASSES = len(ADE20K_CLASS_NAMES)
ADE_JPEG_QUALITY = 90
# ADE150 ids (1-based, ordered by pixel frequency) of the stuff bands, top to bottom. Indoor:
# ceiling / wall / floor, rug. Outdoor: sky / building, tree, mountain, house, skyscraper /
# road, grass, sidewalk, earth, water, sea, field, sand.
_ADE_INDOOR = ((6,), (1,), (4, 29))
_ADE_OUTDOOR = ((3,), (2, 5, 17, 26, 49), (7, 10, 12, 14, 22, 27, 30, 47))
# (aspect long/short, weight): ADE's common frames; the remaining 18% are uniform in 1-2.
_ADE_ASPECTS: tuple[tuple[float, float], ...] = ((4 / 3, 0.45), (3 / 2, 0.12), (1.0, 0.10),
                                                 (16 / 9, 0.10), (5 / 4, 0.05))


@dataclass(frozen=True)
class Ade20kSpec:
    """What to generate. The defaults are SceneParsing's counts (20210 train, 2000 val)."""

    num_train: int = 20210
    num_val: int = 2000
    seed: int = 0
    quality: int = ADE_JPEG_QUALITY


def sample_ade_shape(rng: np.random.Generator) -> tuple[int, int]:
    """Draw an ADE20K-like ``(height, width)``: shorter side mostly 256-512 (512 for about half),
    aspect 0.5-2 (mostly 4:3 landscape), about 10% large with the long side 768-1024."""
    weights = np.array([w for _, w in _ADE_ASPECTS])
    pick = rng.random()
    if pick < weights.sum():
        aspect = _ADE_ASPECTS[int(rng.choice(len(_ADE_ASPECTS), p=weights / weights.sum()))][0]
    else:
        aspect = float(rng.uniform(1.0, 2.0))
    if rng.random() < 0.10:
        long = int(rng.integers(768, 1025))
        short = max(256, int(round(long / aspect)))
    else:
        short = 512 if rng.random() < 0.5 else int(rng.integers(256, 512))
        long = min(1024, int(round(short * aspect)))
    return (long, short) if rng.random() < 0.25 else (short, long)  # a quarter are portrait


def _ade_class_weights() -> np.ndarray:
    """Probabilities of object classes 1..150: ADE's ids are sorted by frequency, which falls
    off roughly as 1/rank."""
    p = 1.0 / np.arange(1, ADE_NUM_CLASSES + 1, dtype=np.float64)
    return p / p.sum()


def make_ade_label(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """An ADE20K-like annotation ``uint8 [H, W]`` (0 = unlabelled, 1-150 = classes) and the
    bool ``[H, W]`` mask of each class, in drawing order (for :func:`make_image`).

    Three stuff bands with wobbly boundaries (indoor: ceiling/wall/floor; outdoor:
    sky/building.../road...), then 2-8 objects of distinct classes, each outlined by an
    unlabelled seam 2-5 pixels wide, and usually an unlabelled blob."""
    h, w = shape
    bands = _ADE_INDOOR if rng.random() < 0.45 else _ADE_OUTDOOR
    classes = [int(rng.choice(b)) for b in bands]
    top = _wobbly_rows(rng, w, rng.uniform(0.15, 0.4) * h, 0.04 * h)
    bottom = _wobbly_rows(rng, w, rng.uniform(0.6, 0.85) * h, 0.05 * h)
    rows = np.arange(h, dtype=np.float64)[:, None]
    label = np.full((h, w), classes[1], dtype=np.uint8)
    label[rows < top[None, :]] = classes[0]
    label[rows >= bottom[None, :]] = classes[2]
    canvas = Image.fromarray(label)
    draw = ImageDraw.Draw(canvas)
    probs = _ade_class_weights()
    probs[[c - 1 for c in classes]] = 0.0  # objects have classes distinct from the bands'
    n_objects = int(rng.integers(2, 9))
    objects = rng.choice(ADE_NUM_CLASSES, size=n_objects, replace=False, p=probs / probs.sum()) + 1
    for cls in objects:
        box_w, box_h = rng.uniform(0.1, 0.7) * w, rng.uniform(0.1, 0.7) * h
        poly = _blob_in_box(rng, rng.uniform(0, w - box_w), rng.uniform(0, h - box_h), box_w, box_h)
        draw.polygon(poly, fill=int(cls))
        # ADE's annotators leave unlabelled seams between touching objects.
        draw.line(poly + [poly[0]], fill=0, width=int(rng.integers(2, 6)), joint="curve")
    if rng.random() < 0.7:  # unannotated clutter; with the seams ~2-3% of pixels are 0
        box = rng.uniform(0.2, 0.5, size=2) * (w, h)
        draw.polygon(_blob_in_box(rng, rng.uniform(0, w - box[0]), rng.uniform(0, h - box[1]), *box), fill=0)
    label = np.asarray(canvas, dtype=np.uint8)
    masks = [m for m in (label == c for c in classes + [int(c) for c in objects]) if m.any()]
    return label, masks or [label == label[0, 0]]


def ade_name(split: str, index: int) -> str:
    """``ADE_train_00000001``-style name of 1-based sample ``index`` of ``split`` (train/val)."""
    return f"ADE_{split}_{index:08d}"


def write_ade_sample(ade_dir: Path, split: str, index: int, seed: int,
                     quality: int = ADE_JPEG_QUALITY) -> tuple[int, int]:
    """Generate 1-based sample ``index`` of ``split`` and write its JPEG and annotation PNG.

    Returns the JPEG and PNG sizes in bytes."""
    rng = np.random.default_rng([seed, 0xADE, list(ADE_SPLITS).index(split), index])
    label, masks = make_ade_label(rng, sample_ade_shape(rng))
    image = make_image(rng, masks)
    name, folder = ade_name(split, index), ADE_SPLITS[split]
    jpg = ade_dir / "images" / folder / f"{name}.jpg"
    Image.fromarray(image).save(jpg, quality=quality, subsampling="4:2:0")
    return jpg.stat().st_size, _save_gray_png(ade_dir / "annotations" / folder / f"{name}.png", label)


def _write_ade_chunk(args: tuple[str, str, list[int], int, int]) -> list[tuple[int, int]]:
    ade_dir, split, indices, seed, quality = args
    return [write_ade_sample(Path(ade_dir), split, i, seed, quality) for i in indices]


def synthesize_ade20k(root: os.PathLike | str, spec: Ade20kSpec = Ade20kSpec(), workers: Optional[int] = None,
                      progress: bool = True) -> Path:
    """Write a synthetic ``root/ADEChallengeData2016`` tree and return its path."""
    ade_dir = Path(root).expanduser() / ADE_DIR
    manifest = ade_dir / MANIFEST
    if _manifest_matches(manifest, spec):
        return ade_dir
    for folder in ADE_SPLITS.values():
        (ade_dir / "images" / folder).mkdir(parents=True, exist_ok=True)
        (ade_dir / "annotations" / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(str(ade_dir), split, chunk, spec.seed, spec.quality)
            for split, count in (("train", spec.num_train), ("val", spec.num_val))
            for chunk in _chunks(range(1, count + 1), 16)]
    sizes = _run_chunks(_write_ade_chunk, jobs, spec.num_train + spec.num_val, "synthesizing ADE20K",
                        workers, progress)
    _write_manifest(manifest, spec, sizes, "mean_jpeg_bytes", "mean_png_bytes")
    return ade_dir


# ---------------------------------------------------------------------------------------------
# Cityscapes (leftImg8bit + gtFine labelIds)
# ---------------------------------------------------------------------------------------------

CITYSCAPES_MANIFEST = "dali_voc_synth_cityscapes.json"
CITYSCAPES_FRAME = 19  # gtFine annotates the 20th frame of each 30-frame snippet
# The 19 labelIds the benchmark evaluates (trainIds 0-18).
CITYSCAPES_EVAL_IDS = tuple(CITYSCAPES_TRAIN_IDS)
# labelIds used below.
(_CS_UNLABELED, _CS_EGO, _CS_RECT, _CS_OUT_OF_ROI, _CS_STATIC, _CS_DYNAMIC, _CS_ROAD, _CS_SIDEWALK,
 _CS_PARKING, _CS_BUILDING, _CS_WALL, _CS_FENCE, _CS_POLE, _CS_LIGHT, _CS_SIGN, _CS_VEGETATION,
 _CS_TERRAIN, _CS_SKY, _CS_PERSON, _CS_RIDER, _CS_CAR, _CS_TRUCK, _CS_BUS, _CS_CARAVAN, _CS_TRAILER,
 _CS_TRAIN, _CS_MOTORCYCLE, _CS_BICYCLE) = (0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 17, 19, 20, 21, 22,
                                            23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33)
# Mean RGB of each labelId in street photographs (dim, as Cityscapes' are); classes not listed
# (vehicles, people, clutter) keep the random color :func:`make_image` gave them.
_CS_COLORS: dict[int, tuple[int, int, int]] = {
    _CS_EGO: (35, 36, 40), _CS_RECT: (0, 0, 0), _CS_OUT_OF_ROI: (70, 72, 70), _CS_ROAD: (82, 86, 88),
    _CS_SIDEWALK: (118, 112, 110), _CS_PARKING: (96, 92, 96), _CS_BUILDING: (78, 80, 76),
    _CS_WALL: (120, 115, 104), _CS_FENCE: (100, 100, 94), _CS_POLE: (92, 94, 96), _CS_LIGHT: (40, 40, 36),
    _CS_SIGN: (160, 150, 70), _CS_VEGETATION: (62, 82, 46), _CS_TERRAIN: (104, 110, 72),
    _CS_SKY: (168, 182, 192),
}
# (labelId, weight) of the vehicles on the road.
_CS_VEHICLES = ((_CS_CAR, 0.80), (_CS_TRUCK, 0.06), (_CS_BUS, 0.05), (_CS_TRAIN, 0.02),
                (_CS_CARAVAN, 0.01), (_CS_TRAILER, 0.01), (_CS_MOTORCYCLE, 0.03), (_CS_BICYCLE, 0.02))
CITYSCAPES_SPLITS = ("train", "val")


@dataclass(frozen=True)
class CityscapesSpec:
    """What to generate. The defaults are gtFine's train/val counts (2975, 500) at the real
    ``image_size`` ``(height, width) = (1024, 2048)``; samples go to the split's cities in turn.

    ``texture`` scales the 1/f texture inside each region (it sets the PNG size: at 1.0 the
    default images are about 2 MB); ``render_scale`` is how much smaller the texture is
    rendered before it is upsampled to ``image_size`` (cameras' optics and demosaicing blur
    real frames, and it keeps generation fast)."""

    num_train: int = 2975
    num_val: int = 500
    image_size: tuple[int, int] = (1024, 2048)
    seed: int = 0
    train_cities: tuple[str, ...] = ("aachen", "bochum", "bremen")
    val_cities: tuple[str, ...] = ("frankfurt", "lindau", "munster")
    texture: float = 1.0
    render_scale: int = 2


def make_cityscapes_label(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A street scene's labelIds, ``uint8 [H, W]`` in 0-33.

    Painted back to front: buildings under a roofline that drops toward the vanishing point,
    sky above it, trees, a wall or fence along the horizon; sidewalk below the horizon and a
    road converging to the vanishing point; vehicles on the road and people, poles, signs,
    lights and clutter on the sidewalks, nearer ones lower and larger; then the ego vehicle's
    hood at the bottom, the out-of-roi frame and a few unlabelled spots."""
    h, w = shape
    canvas = Image.new("L", (w, h), _CS_BUILDING)
    draw = ImageDraw.Draw(canvas)
    horizon = rng.uniform(0.38, 0.5) * h
    vx = rng.uniform(0.35, 0.65) * w
    x = 0.0
    while x < w:  # a street canyon: tall blocks at the sides, open sky over the street
        block = rng.uniform(0.04, 0.16) * w
        d = min(1.0, abs(x + block / 2 - vx) / (0.5 * w))
        roof = horizon * (1.0 - (0.2 + 0.8 * d) * rng.uniform(0.55, 1.0))
        draw.rectangle([x, 0, x + block, roof], fill=_CS_SKY)
        x += block
    for _ in range(int(rng.integers(0, 4))):
        tw, th = rng.uniform(0.08, 0.3) * w, rng.uniform(0.15, 0.4) * h
        bottom = horizon + rng.uniform(0, 0.05) * h
        draw.polygon(_blob_in_box(rng, rng.uniform(-0.1, 1.0) * w, bottom - th, tw, th), fill=_CS_VEGETATION)
    for cls in (_CS_WALL, _CS_FENCE):
        if rng.random() < 0.4:
            left = rng.random() < 0.5
            x0, x1 = (0.0, vx - 0.1 * w) if left else (vx + 0.1 * w, float(w))
            draw.rectangle([x0, horizon - rng.uniform(0.02, 0.08) * h, x1, horizon + 0.02 * h], fill=cls)
    draw.rectangle([0, horizon, w, h], fill=_CS_SIDEWALK)
    spread = rng.uniform(0.5, 0.9) * w  # the road's half width at the bottom edge

    def half_road(y: float) -> float:
        return 0.03 * w + (spread - 0.03 * w) * (y - horizon) / (h - horizon)

    draw.polygon([(vx - 0.03 * w, horizon), (vx + 0.03 * w, horizon), (vx + spread, h), (vx - spread, h)],
                 fill=_CS_ROAD)
    if rng.random() < 0.3:
        tw, th = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
        draw.polygon(_blob_in_box(rng, (0 if rng.random() < 0.5 else w - tw), h - th - 0.1 * h, tw, th),
                     fill=_CS_TERRAIN)
    if rng.random() < 0.15:
        y0 = horizon + rng.uniform(0.1, 0.4) * (h - horizon)
        x0 = vx + half_road(y0) * rng.choice([-1.0, 0.7])
        draw.rectangle([x0, y0, x0 + 0.3 * half_road(y0), y0 + 0.1 * h], fill=_CS_PARKING)

    things: list[tuple[float, Callable[[], None]]] = []  # (bottom y, painter): far ones first

    def ground_y(lo: float, hi: float) -> tuple[float, float]:
        t = rng.uniform(lo, hi) ** 1.5  # more of them far away
        return horizon + t * (h - horizon), t

    weights = np.array([p for _, p in _CS_VEHICLES])
    for _ in range(int(rng.integers(2, 11))):  # gtFine averages ~10 cars and ~7 people
        yb, t = ground_y(0.05, 0.8)
        vw = w * (0.03 + 0.3 * t)
        xc = vx + rng.choice([-1.0, 1.0]) * half_road(yb) * rng.uniform(0.1, 0.9)
        cls = _CS_VEHICLES[int(rng.choice(len(_CS_VEHICLES), p=weights / weights.sum()))][0]

        def vehicle(xc=xc, yb=yb, vw=vw, cls=cls) -> None:
            if cls in (_CS_TRUCK, _CS_BUS, _CS_TRAIN, _CS_CARAVAN, _CS_TRAILER):
                draw.rectangle([xc - vw / 2, yb - vw * rng.uniform(0.8, 1.2), xc + vw / 2, yb], fill=cls)
            elif cls in (_CS_MOTORCYCLE, _CS_BICYCLE):  # a two-wheeler with its rider on top
                bw = vw * 0.35
                draw.ellipse([xc - bw / 2, yb - bw * 0.8, xc + bw / 2, yb], fill=cls)
                draw.polygon(_blob_in_box(rng, xc - bw * 0.3, yb - bw * 2.0, bw * 0.6, bw * 1.4), fill=_CS_RIDER)
            else:
                vh = vw * rng.uniform(0.55, 0.8)
                r = max(1, int(vw * 0.08))
                draw.rounded_rectangle([xc - vw / 2, yb - vh * 0.6, xc + vw / 2, yb], radius=r, fill=cls)
                draw.rounded_rectangle([xc - vw * 0.35, yb - vh, xc + vw * 0.35, yb - vh * 0.55], radius=r, fill=cls)
        things.append((yb, vehicle))

    def sidewalk_x(yb: float) -> float:
        return vx + rng.choice([-1.0, 1.0]) * (half_road(yb) + rng.uniform(0.01, 0.3) * w)

    for _ in range(int(rng.integers(0, 10))):
        yb, t = ground_y(0.03, 0.6)
        ph = h * (0.06 + 0.5 * t)
        pw = ph * rng.uniform(0.28, 0.4)
        xc = sidewalk_x(yb)
        things.append((yb, lambda xc=xc, yb=yb, pw=pw, ph=ph: draw.polygon(
            _blob_in_box(rng, xc - pw / 2, yb - ph, pw, ph), fill=_CS_PERSON)))
    for _ in range(int(rng.integers(1, 6))):
        yb, t = ground_y(0.03, 0.6)
        xc = sidewalk_x(yb)
        pole_w = max(1.0, w * (0.003 + 0.008 * t))
        top = max(0.0, yb - h * (0.3 + 0.6 * t))

        def pole(xc=xc, yb=yb, pole_w=pole_w, top=top, t=t) -> None:
            draw.rectangle([xc - pole_w / 2, top, xc + pole_w / 2, yb], fill=_CS_POLE)
            size = w * (0.01 + 0.03 * t)
            if rng.random() < 0.5:
                draw.ellipse([xc - size / 2, top, xc + size / 2, top + size], fill=_CS_SIGN)
            elif rng.random() < 0.6:
                draw.rectangle([xc - size / 4, top, xc + size / 4, top + size * 1.2], fill=_CS_LIGHT)
        things.append((yb, pole))
    for cls, n in ((_CS_STATIC, int(rng.integers(0, 4))), (_CS_DYNAMIC, int(rng.random() < 0.1))):
        for _ in range(n):
            yb, t = ground_y(0.05, 0.7)
            size = w * (0.01 + 0.08 * t)
            xc = sidewalk_x(yb)
            things.append((yb, lambda xc=xc, yb=yb, size=size, cls=cls: draw.polygon(
                _blob_in_box(rng, xc - size / 2, yb - size, size, size), fill=cls)))
    for _, paint in sorted(things, key=lambda item: item[0]):
        paint()

    for _ in range(int(rng.integers(1, 4))):  # annotators leave a few spots unlabelled
        size = rng.uniform(0.01, 0.04) * w
        draw.polygon(_blob_in_box(rng, rng.uniform(0, w - size), rng.uniform(0, h - size), size, size),
                     fill=_CS_UNLABELED)
    if rng.random() < 0.85:  # the hood of the car that carries the camera
        hood = rng.uniform(0.08, 0.2) * h
        xs = np.linspace(0, w, 33)
        ys = h - hood * (1.0 - 0.6 * ((xs - w / 2) / (w / 2)) ** 2)
        draw.polygon(list(zip(xs.tolist(), ys.tolist())) + [(w, h), (0, h)], fill=_CS_EGO)
    if rng.random() < 0.5:  # rectification leaves black corners
        c = 0.02 * w
        draw.polygon([(0, h - c), (c, h), (0, h)], fill=_CS_RECT)
        draw.polygon([(w, h - c), (w - c, h), (w, h)], fill=_CS_RECT)
    frame = max(1, int(round(0.004 * w)))  # the image border is out of the region of interest
    draw.rectangle([0, 0, w - 1, h - 1], outline=_CS_OUT_OF_ROI, width=frame)
    return np.asarray(canvas, dtype=np.uint8)


def make_cityscapes_image(rng: np.random.Generator, label: np.ndarray, texture: float = 1.0,
                          render_scale: int = 2) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` for a labelIds map ``uint8 [H, W]``.

    :func:`make_image` renders one textured layer per class at ``1/render_scale`` of the size;
    each region is then moved to its class's street color (:data:`_CS_COLORS`, varied per
    image) with its texture scaled by ``0.38 * texture``, and the result is upsampled
    (bicubic) to ``H x W``. Damped texture on smooth regions is what makes the PNGs ~2 MB
    like the real ones, rather than the ~4 MB of VOC-strength texture."""
    h, w = label.shape
    small = label[::render_scale, ::render_scale]  # nearest: the regions at render size
    classes, counts = np.unique(small, return_counts=True)
    order = classes[np.argsort(-counts, kind="stable")]
    # The largest class is make_image's background layer; every other class gets its own.
    masks = [small == c for c in order[1:]] or [small == order[0]]
    image = make_image(rng, masks).astype(np.float32)
    flat, pixels = small.ravel(), np.maximum(np.bincount(small.ravel(), minlength=256), 1)[:, None]
    means = np.stack([np.bincount(flat, weights=image[..., ch].ravel(), minlength=256) for ch in range(3)],
                     axis=1) / pixels
    targets = means.copy()
    exposure = rng.uniform(0.8, 1.15)  # overcast or sunny
    for cls, color in _CS_COLORS.items():
        targets[cls] = np.clip(np.array(color) * exposure + rng.normal(0, 8, size=3), 0, 255)
    image = targets[small] + (0.38 * texture) * (image - means[small])
    image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
    return image


def cityscapes_name(city: str, seq: int, frame: int = CITYSCAPES_FRAME) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def cityscapes_sample(spec: CityscapesSpec, split: str, index: int) -> tuple[str, str]:
    """``(city, name)`` of sample ``index`` of ``split``: samples go to the split's cities in
    turn, each city numbering its sequences from 0."""
    cities = spec.train_cities if split == "train" else spec.val_cities
    city = cities[index % len(cities)]
    return city, cityscapes_name(city, index // len(cities))


def cityscapes_samples(spec: CityscapesSpec, split: str) -> list[tuple[str, str]]:
    """``(city, name)`` of every sample of ``split``."""
    count = spec.num_train if split == "train" else spec.num_val
    return [cityscapes_sample(spec, split, i) for i in range(count)]


def write_cityscapes_sample(root: Path, split: str, index: int, spec: CityscapesSpec) -> tuple[int, int]:
    """Generate sample ``index`` of ``split`` and write its leftImg8bit PNG and labelIds PNG.

    Returns the image and label sizes in bytes."""
    city, name = cityscapes_sample(spec, split, index)
    rng = np.random.default_rng([spec.seed, 0xC17, CITYSCAPES_SPLITS.index(split), index])
    label = make_cityscapes_label(rng, tuple(spec.image_size))
    image = make_cityscapes_image(rng, label, spec.texture, spec.render_scale)
    img_path = root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
    Image.fromarray(image).save(img_path)
    png = _save_gray_png(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label)
    return img_path.stat().st_size, png


def _write_cityscapes_chunk(args: tuple[str, str, list[int], CityscapesSpec]) -> list[tuple[int, int]]:
    root, split, indices, spec = args
    return [write_cityscapes_sample(Path(root), split, i, spec) for i in indices]


def synthesize_cityscapes(root: os.PathLike | str, spec: CityscapesSpec = CityscapesSpec(),
                          workers: Optional[int] = None, progress: bool = True) -> Path:
    """Write synthetic ``leftImg8bit/`` and ``gtFine/`` trees under ``root``; return ``root``."""
    root = Path(root).expanduser()
    manifest = root / CITYSCAPES_MANIFEST
    if _manifest_matches(manifest, spec):
        return root
    for split in CITYSCAPES_SPLITS:
        for city in spec.train_cities if split == "train" else spec.val_cities:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    # Default-size samples take seconds each: small chunks keep the workers evenly loaded.
    jobs = [(str(root), split, chunk, spec)
            for split, count in (("train", spec.num_train), ("val", spec.num_val))
            for chunk in _chunks(range(count), 4)]
    sizes = _run_chunks(_write_cityscapes_chunk, jobs, spec.num_train + spec.num_val,
                        "synthesizing Cityscapes", workers, progress)
    _write_manifest(manifest, spec, sizes, "mean_image_bytes", "mean_label_bytes")
    return root


AnySpec = Union[SynthSpec, VocAugSpec, Ade20kSpec, CityscapesSpec]
_WRITERS: dict[str, tuple[type, Callable[..., Path]]] = {
    "voc": (SynthSpec, synthesize_voc),
    "voc_aug": (VocAugSpec, synthesize_voc_aug),
    "ade20k": (Ade20kSpec, synthesize_ade20k),
    "cityscapes": (CityscapesSpec, synthesize_cityscapes),
}


def synthesize(root: os.PathLike | str, dataset: str, spec: Optional[AnySpec] = None,
               workers: Optional[int] = None, progress: bool = True) -> Path:
    """Write a synthetic ``dataset`` tree under ``root`` and return the dataset's folder.

    ``dataset`` is one of the four built-in datasets; ``spec`` its spec class (default: that class's
    defaults): ``"voc"`` -> :class:`SynthSpec`, returns ``root/VOCdevkit/VOC2012``;
    ``"voc_aug"`` -> :class:`VocAugSpec`, returns ``root/VOCdevkit/VOC2012``; ``"ade20k"`` ->
    :class:`Ade20kSpec`, returns ``root/ADEChallengeData2016``; ``"cityscapes"`` ->
    :class:`CityscapesSpec`, returns ``root``. Idempotent per spec; ``workers`` processes
    (default: :func:`dali_voc.config.default_worker_count`)."""
    if dataset not in _WRITERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(_WRITERS)}")
    spec_type, writer = _WRITERS[dataset]
    if spec is None:
        spec = spec_type()
    elif not isinstance(spec, spec_type):
        raise TypeError(f"dataset {dataset!r} takes a {spec_type.__name__}, not a {type(spec).__name__}")
    return writer(root, spec, workers, progress)
