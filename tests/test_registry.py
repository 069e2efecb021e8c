"""The public face and the dataset registry: every ``dali_voc`` name the README's code uses
imports, old module paths still import (the same module), and a fifth dataset defined in this
file alone loads on both backends with the same labels at the same windows."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dali_voc
from dali_voc import DatasetSpec, LoaderConfig, ValueTable, dataset_names, register_dataset, unregister_dataset
from dali_voc.geometry import CropWindow
from dali_voc.labels import UNKNOWN
from tests.helpers import config_for, jpeg_bytes, loader_for, require_dali, textured

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _dali_voc_names(source: str) -> set[str]:
    """``module:name`` for every ``from dali_voc... import name`` and ``import dali_voc...`` in ``source``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dali_voc":
            found |= {f"{node.module}:{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {f"{alias.name}:" for alias in node.names if alias.name.split(".")[0] == "dali_voc"}
    return found


def test_readme_code_blocks_parse_and_their_dali_voc_imports_resolve():
    blocks = _readme_python_blocks()
    assert len(blocks) >= 3
    names = set().union(*(_dali_voc_names(block) for block in blocks))
    assert "dali_voc:load_data_voc" in names
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the README documents current paths only
        for entry in sorted(names):
            module, _, name = entry.partition(":")
            imported = importlib.import_module(module)
            if name:
                assert hasattr(imported, name), entry


def test_readme_mentions_only_importable_dali_voc_paths():
    """Dotted ``dali_voc.x.y`` paths in the README's text name modules or public attributes."""
    paths = set(re.findall(r"`(dali_voc(?:\.\w+)+)", README.read_text()))
    assert paths
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for path in sorted(paths):
            parts = path.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                except ModuleNotFoundError:
                    continue
                for attr in parts[cut:]:
                    assert hasattr(obj, attr), path
                    obj = getattr(obj, attr)
                break


def test_public_names_are_exported():
    for name in dali_voc.__all__:
        assert hasattr(dali_voc, name), name
    for wing in ("datasets", "geometry", "labels", "loaders"):
        module = importlib.import_module(f"dali_voc.{wing}")
        for name in module.__all__:
            assert hasattr(module, name), f"dali_voc.{wing}.{name}"


@pytest.mark.parametrize("old, new", [("pipeline", "loaders.pipeline"), ("photometric", "loaders.photometric"),
                                      ("distributed", "loaders.distributed"), ("synth", "tools.synth"),
                                      ("colors", "labels.tables"), ("voc", "datasets.voc")])
def test_old_module_paths_import_the_moved_module(old, new):
    with pytest.warns(DeprecationWarning, match=f"dali_voc.{old} moved"):
        alias = importlib.import_module(f"dali_voc.{old}")
    real = importlib.import_module(f"dali_voc.{new}")
    assert alias is real and real.__spec__.name == f"dali_voc.{new}"


def test_graph_version_and_jitter_keep_their_documented_paths():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dali_voc.photometric import apply_jitter
        from dali_voc.pipeline import GRAPH_VERSION
    assert GRAPH_VERSION == dali_voc.GRAPH_VERSION and apply_jitter is dali_voc.apply_jitter


# --- a toy fifth dataset, defined here alone ---------------------------------------------------

TOY_SHAPES = [(40, 56), (48, 48), (36, 60), (52, 44), (44, 52), (40, 40)]


@dataclass(frozen=True)
class ToyLayout:
    """``<root>/toy/<split>/<name>.jpg`` beside ``<name>.label.png`` (8-bit gray class indices)."""

    root: Path

    @classmethod
    def locate(cls, root) -> "ToyLayout":
        root = Path(root)
        if not (root / "toy").is_dir():
            raise FileNotFoundError(f"{root} is not a toy tree: expected toy/<split>/ there")
        return cls(root / "toy")

    def available_splits(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def pairs(self, split: str):
        folder = self.root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"no toy split {split!r}")
        return [(p.stem, p, folder / f"{p.stem}.label.png") for p in sorted(folder.glob("*.jpg"))]


def toy_table(void_index: int, ignore_index: int) -> ValueTable:
    """Values 10, 20, 30 are classes 0, 1, 2; 99 is void; the rest is unknown."""
    classes = [UNKNOWN] * 256
    classes[10], classes[20], classes[30], classes[99] = 0, 1, 2, void_index
    return ValueTable(tuple(classes), 3, ignore_index)


TOY = DatasetSpec(name="toy", title="Toy", class_names=("sea", "land", "cloud"), train_split="train",
                  val_split="val", whole_canvas=(64, 64), layout="toy/<split>/<name>.{jpg,label.png}",
                  label_encoding="8-bit PNG: 10, 20, 30 -> classes 0-2, 99 void", locate=ToyLayout.locate,
                  label_table=toy_table, class_colors=((0, 0, 255), (0, 255, 0), (255, 255, 255)))


@pytest.fixture
def toy_tree(tmp_path):
    register_dataset(TOY)
    try:
        for split, shapes in (("train", TOY_SHAPES), ("val", TOY_SHAPES[:2])):
            folder = tmp_path / "toy" / split
            folder.mkdir(parents=True)
            for i, (h, w) in enumerate(shapes):
                (folder / f"t{i:03d}.jpg").write_bytes(jpeg_bytes(textured(i, h, w)))
                values = np.array([10, 20, 30, 99], dtype=np.uint8)
                label = values[(np.arange(h)[:, None] // 5 + np.arange(w)[None, :] // 7 + i) % 4]
                Image.fromarray(label, mode="L").save(folder / f"t{i:03d}.label.png")
        yield tmp_path
    finally:
        unregister_dataset("toy")


def test_a_registered_dataset_is_a_config_choice(toy_tree):
    assert "toy" in dataset_names()
    config = LoaderConfig(toy_tree, dataset="toy", ignore_index=3)
    assert config.spec is TOY and config.canvas == (64, 64)
    with pytest.raises(ValueError, match="ignore_index"):
        LoaderConfig(toy_tree, dataset="toy", ignore_index=2)  # a toy class


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_toy_dataset_loads_with_the_same_labels_on_both_backends(toy_tree, backend):
    """Both backends load the toy tree; every label equals the reference path's re-creation of
    the sample at the window (scale, flip) the loader reports, and holds only toy classes."""
    if backend == "dali":
        require_dali()
    config = config_for(toy_tree, backend, dataset="toy", batch_size=2, crop_size=(32, 32), return_meta=True,
                        augment="torchvision", scale_base=0, void_label="ignore")
    loader = loader_for(config, "train", shuffle=True)
    assert loader.selection.kept == len(TOY_SHAPES)
    reference = loader_for(dataclasses.replace(config, backend="reference", num_workers=0), "train",
                           shuffle=True).dataset
    position = {s.index: i for i, s in enumerate(reference.selection.samples)}
    seen: set[int] = set()
    for batch in loader:
        for k in range(len(batch.ids)):
            _, y_ref = reference.load(position[int(batch.ids[k])], CropWindow(*batch.windows[k].tolist()),
                                      tuple(batch.scaled[k].tolist()), bool(batch.flips[k]))
            assert torch.equal(batch.labels[k], y_ref), int(batch.ids[k])
            seen |= set(batch.labels[k].unique().tolist())
    assert {0, 1, 2} <= seen <= {0, 1, 2, 255}
    assert loader.unknown_pixels == 0
    loader.close()


# --- decisions made once ------------------------------------------------------------------------

def test_valid_choices_are_read_off_the_literal_types():
    from typing import get_args

    from dali_voc.config import DevicePolicy, Framework
    with pytest.raises(ValueError) as err:
        LoaderConfig(".", device="tpu")
    assert all(repr(v) in str(err.value) for v in get_args(DevicePolicy))
    with pytest.raises(ValueError) as err:
        LoaderConfig(".", framework="caffe")
    assert all(repr(v) in str(err.value) for v in get_args(Framework))


def test_a_plan_of_the_other_backend_is_an_option_error(tmp_path):
    from dali_voc import DALILoader, OptionError, ReferenceLoader, resolve
    from tests.helpers import make_tree
    make_tree(tmp_path, [(40, 50)] * 2)
    config = LoaderConfig(tmp_path, batch_size=1, crop_size=(32, 32), verbose=False, num_workers=0)
    reference_plan = resolve(dataclasses.replace(config, backend="reference"))
    with pytest.raises(OptionError, match="reference"):
        DALILoader(config, "train", False, reference_plan)
    require_dali()
    dali_plan = resolve(dataclasses.replace(config, backend="dali", device="cpu"))
    with pytest.raises(OptionError, match="dali"):
        ReferenceLoader(config, "train", False, dali_plan)
