"""Fixtures: small synthetic VOC trees and hand-made trees with coordinate images. The
functions behind them live in tests/helpers.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dali_voc.tools.synth import SynthSpec, synthesize_voc
from tests.helpers import class_stripes, make_tree


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    # JAX, TensorFlow and MXNet start threads on import, and forking after that may deadlock:
    # their tests run after every test that forks (DataLoader workers, the synthetic-tree writer).
    items.sort(key=lambda item: item.module.__name__.endswith(("test_frameworks", "test_mxnet")))
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic VOC tree: 40 train + 16 val images, seed 0."""
    root = tmp_path_factory.mktemp("synth")
    synthesize_voc(root, SynthSpec(num_train=40, num_val=16, seed=0), workers=2, progress=False)
    return root


@pytest.fixture(scope="session")
def _coord_tree_once(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coords")
    shapes = [(375, 500), (333, 500), (500, 375), (300, 500), (400, 520), (320, 480), (281, 500),
              (500, 500), (340, 490), (360, 640)]
    make_tree(root, shapes)
    return root


@pytest.fixture
def coord_tree(_coord_tree_once, tmp_path) -> Path:
    """Coordinate-encoded images AND labels (identical per sample), mixed sizes incl. small.
    A fresh copy per test (tests may break it), made once and copied."""
    shutil.copytree(_coord_tree_once, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture(scope="session")
def stripe_tree(tmp_path_factory) -> Path:
    """Coordinate images with palette labels holding every class color and void (shared by
    the session: tests only read it)."""
    root = tmp_path_factory.mktemp("stripes")
    shapes = [(375, 500), (333, 500), (500, 375), (300, 500), (400, 520), (340, 490), (320, 480), (366, 500)]
    make_tree(root, shapes, label_fn=class_stripes)
    return root
