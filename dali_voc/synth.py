"""Synthetic VOC2012 trees with the real dataset's statistics.

The real archive cannot be fetched everywhere (CI, the demo), so tests and benchmarks run on
generated trees that look like VOC to a decoder:

* sizes drawn from VOC-like shapes (long side mostly 500: 500x375, 500x333, 375x500, ...),
  about a quarter of them smaller than 320x480 in some dimension;
* JPEGs of textured, natural-looking content (1/f noise fields, objects with their own
  texture and shading, fine grain), saved at IJG quality 95 with 4:2:0 chroma, as VOC's own
  (VOC's quantization tables are IJG's scaled to quality 95); ~100 KB at 500x375;
* labels as 8-bit palette PNGs with VOC's palette: background, 1-4 objects of random
  classes, each outlined by a void (index 255) border 3-6 pixels wide; ~2-4 KB each;
* ``ImageSets/Segmentation/{train,val,trainval}.txt``.

Generation is deterministic for a seed (each sample has its own generator) and runs in
parallel processes with a progress bar.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .progress import progress_bar
from .voc import IMAGE_DIR, LABEL_DIR, SPLIT_DIR, VOC_ROOT_PARTS, VOID_PALETTE_INDEX, voc_palette

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
    from .config import default_worker_count

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
