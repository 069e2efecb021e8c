"""Batches for JAX and TensorFlow: the torch loaders' batches, bit for bit, on the same device,
handed over through DLPack (CPU builds of both frameworks in CI; GPU variants marked ``gpu``).

JAX and TensorFlow start threads when imported, and a process that forks afterwards (DataLoader
workers, the synthetic-tree writer) may deadlock; so they are imported inside the tests, never
at collection, and conftest.py runs this module last."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dali_voc import OptionError, resolve
from dali_voc.batch import Batch
from dali_voc.loaders.frameworks import batch_converter
from tests.helpers import class_stripes, config_for, loader_for, make_tree



@pytest.fixture
def jax():
    return pytest.importorskip("jax", reason="JAX not installed (pip install '.[jax]')")


@pytest.fixture
def tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow not installed (pip install '.[tensorflow]')")


def _numpy(array) -> np.ndarray:
    return np.array(array.numpy() if hasattr(array, "numpy") and not isinstance(array, np.ndarray) else array)


def _batches(config, epochs=2):
    loader = loader_for(config, shuffle=True)
    return [tuple(_numpy(t) for t in batch) for _ in range(epochs) for batch in loader]


#: TensorFlow's import alone takes seconds: its cases run with the slow tests (CI runs all).
_TF = pytest.param("tensorflow", marks=pytest.mark.slow)


@pytest.mark.parametrize("backend", ["reference", "dali"])
@pytest.mark.parametrize("framework", ["jax", _TF])
def test_batches_equal_the_torch_batches_bit_for_bit(stripe_tree, backend, framework, jax, request):
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", void_label="ignore", return_meta=True)
    want = _batches(config)
    got_loader = loader_for(replace(config, framework=framework), shuffle=True)
    got = []
    for _ in range(2):
        for batch in got_loader:
            images, labels = batch.images, batch.labels
            if framework == "jax":
                assert isinstance(images, jax.Array) and images.devices() == {jax.devices("cpu")[0]}
            else:
                tf = request.getfixturevalue("tf")
                assert isinstance(images, tf.Tensor) and "CPU" in images.device
            assert images.dtype == np.float32 and labels.dtype == np.int32
            got.append(tuple(_numpy(t) for t in batch))
    assert len(got) == len(want) == 8
    for (x, y, windows, ids, *_), (x_ref, y_ref, windows_ref, ids_ref, *_) in zip(got, want):
        assert x.shape == (2, 320, 480, 3)  # NHWC, the frameworks' default
        assert np.array_equal(x, x_ref.transpose(0, 2, 3, 1))  # same bits
        assert np.array_equal(y, y_ref) and np.array_equal(windows, windows_ref) and np.array_equal(ids, ids_ref)


def test_nchw_on_request_and_plain_pairs_without_meta(stripe_tree, jax):
    config = config_for(stripe_tree, "reference", batch_size=2, framework="jax", layout="NCHW")
    x, y = next(iter(loader_for(config)))
    assert x.shape == (2, 3, 320, 480) and y.shape == (2, 320, 480) and y.dtype == np.int32


def test_jax_takes_the_tensors_without_a_copy(jax):
    """NCHW images and int32 labels are handed over as they are: the JAX arrays point at the
    torch tensors' memory (DLPack, zero-copy)."""
    config = config_for(".", "reference", framework="jax", layout="NCHW")
    batch = Batch(torch.rand(2, 3, 8, 16), torch.zeros(2, 8, 16, dtype=torch.int32), torch.zeros(2, 2, dtype=torch.int32),
                  torch.arange(2), torch.full((2, 2), 8, dtype=torch.int32), torch.zeros(2, dtype=torch.bool))
    x, y = batch_converter(resolve(config), meta=False)(batch)
    assert x.unsafe_buffer_pointer() == batch.images.data_ptr()
    assert y.unsafe_buffer_pointer() == batch.labels.data_ptr()


def test_a_missing_framework_is_named_with_its_extra(stripe_tree, monkeypatch, jax):
    import sys
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now fails
    with pytest.raises(OptionError, match=r"framework='jax' needs jax: pip install 'dali-voc\[jax\]'"):
        resolve(config_for(stripe_tree, "reference", framework="jax"))


def test_int64_labels_are_refused_for_jax_without_x64(stripe_tree, jax):
    with pytest.raises(OptionError, match="JAX holds no 64-bit integers"):
        resolve(config_for(stripe_tree, "reference", framework="jax", label_dtype="int64"))


@pytest.mark.slow  # builds and runs a small net in each framework
@pytest.mark.parametrize("example", ["train_jax", "train_tf"])
def test_one_training_step_per_framework(tmp_path, example, jax, tf):
    import importlib
    for split in ("train", "val"):  # written here, in this process: no fork once JAX runs
        make_tree(tmp_path, [(96, 128)] * 4, split=split, label_fn=class_stripes)
    main = importlib.import_module(f"dali_voc.examples.{example}").main
    losses = main(["--root", str(tmp_path), "--backend", "dali", "--batch-size", "2", "--crop", "64x96",
                   "--steps", "2", "--workers", "1"])
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[0] > 0


@pytest.mark.gpu
@pytest.mark.parametrize("framework", ["jax", "tensorflow"])
@pytest.mark.parametrize("backend", ["dali-gpu-nvcomp", "dali-gpu-stock"])
def test_gpu_batches_stay_on_the_gpu_and_equal_the_torch_batches(stripe_tree, framework, backend, request):
    # only the framework under test must import: a machine with JAX alone still runs the JAX case
    module = request.getfixturevalue("jax" if framework == "jax" else "tf")
    if framework == "jax" and not any(d.platform == "gpu" for d in module.devices()):
        pytest.skip("this JAX build has no GPU backend")
    if framework == "tensorflow" and not module.config.list_physical_devices("GPU"):
        pytest.skip("this TensorFlow build has no GPU")
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", void_label="ignore", return_meta=True)
    want = [tuple(t.cpu().numpy() for t in b) for b in loader_for(config, shuffle=True)]
    got = []
    for batch in loader_for(replace(config, framework=framework), shuffle=True):
        if framework == "jax":
            assert all(d.platform == "gpu" for d in batch.images.devices())
        else:
            assert "GPU" in batch.images.device
        got.append(tuple(_numpy(t) for t in batch))
    assert len(got) == len(want) > 0
    for (x, y, *_), (x_ref, y_ref, *_) in zip(got, want):
        assert np.array_equal(x, x_ref.transpose(0, 2, 3, 1)) and np.array_equal(y, y_ref)
