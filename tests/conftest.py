"""Shared fixtures: small synthetic VOC trees and hand-made trees with coordinate images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dali_voc.synth import SynthSpec, synthesize_voc
from dali_voc.voc import IMAGE_DIR, LABEL_DIR, SPLIT_DIR, VOC_COLORMAP, VOC_ROOT_PARTS, voc_palette


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def require_dali():
    """Import DALI or skip; under CI (DALI_VOC_REQUIRE_DALI=1) a missing DALI fails instead."""
    if os.environ.get("DALI_VOC_REQUIRE_DALI") == "1":
        import nvidia.dali  # noqa: F401  (ImportError fails the test)
        return
    pytest.importorskip("nvidia.dali", reason="DALI not installed (pip install '.[cuda13]')")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic VOC tree: 40 train + 16 val images, seed 0."""
    root = tmp_path_factory.mktemp("synth")
    synthesize_voc(root, SynthSpec(num_train=40, num_val=16, seed=0), workers=2, progress=False)
    return root


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


@pytest.fixture
def coord_tree(tmp_path) -> Path:
    """Coordinate-encoded images AND labels (identical per sample), mixed sizes incl. small."""
    shapes = [(375, 500), (333, 500), (500, 375), (300, 500), (400, 520), (320, 480), (281, 500),
              (500, 500), (340, 490), (360, 640)]
    make_tree(tmp_path, shapes)
    return tmp_path


@pytest.fixture
def stripe_tree(tmp_path) -> Path:
    """Coordinate images with palette labels holding every class color and void."""
    shapes = [(375, 500), (333, 500), (500, 375), (300, 500), (400, 520), (340, 490), (320, 480), (366, 500)]
    make_tree(tmp_path, shapes, label_fn=class_stripes)
    return tmp_path


COLORMAP = np.array(VOC_COLORMAP, dtype=np.uint8)
