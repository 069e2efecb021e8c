"""Batches for MXNet (``framework="mxnet"``): the torch loaders' batches, bit for bit, as
``mxnet.numpy`` arrays on the CPU that hold the very memory torch filled (DLPack).

MXNet 1.9.1 needs NumPy < 1.24, so these tests run in a venv of their own (``make test-mxnet``,
which sets ``DALI_VOC_REQUIRE_MXNET=1``: there a missing MXNet fails them). Elsewhere the tests
that need MXNet are skipped, naming that target; the resolve decisions (refusals, the device
``"auto"`` picks) need no MXNet and run everywhere. MXNet starts engine threads on import, so it
is imported inside the tests and conftest.py runs this module after the tests that fork."""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch

from dali_voc import OptionError, load_data_voc, resolve
from dali_voc.batch import Batch
from dali_voc.loaders.frameworks import batch_converter
from tests.helpers import class_stripes, config_for, loader_for, make_tree, require_dali

BACKENDS = ["reference", "dali"]


@pytest.fixture
def mx():
    """MXNet, or a skip; under ``make test-mxnet`` (DALI_VOC_REQUIRE_MXNET=1) a missing MXNet fails."""
    if os.environ.get("DALI_VOC_REQUIRE_MXNET") == "1":
        import mxnet
        return mxnet
    return pytest.importorskip("mxnet", reason="MXNet not installed; `make test-mxnet` runs these tests in a venv "
                                                "of their own (MXNet 1.9.1 needs NumPy < 1.24)")


@pytest.fixture
def importable_mxnet(monkeypatch):
    """An importable stand-in for ``mxnet`` where MXNet is not installed: for tests of the
    resolve decisions only, which import the framework but never use it."""
    if "mxnet" not in sys.modules:
        monkeypatch.setitem(sys.modules, "mxnet", types.ModuleType("mxnet"))


def _address(array) -> int:
    """Where an MXNet array's data starts (MXNet's C API)."""
    import mxnet as mx
    pointer = ctypes.c_void_p()
    mx.base.check_call(mx.base._LIB.MXNDArrayGetData(array.handle, ctypes.byref(pointer)))
    return pointer.value


def _bits(array: np.ndarray) -> np.ndarray:
    """The bytes of ``array`` (bool as uint8 0/1, the way MXNet receives it)."""
    array = np.ascontiguousarray(array.astype(np.uint8) if array.dtype == np.bool_ else array)
    return array.view(np.uint8)


def _same_bits(got, want: torch.Tensor) -> bool:
    """``got`` (an MXNet array) holds exactly ``want``'s values, in ``want``'s dtype (bool: uint8)."""
    want_np = want.numpy()
    want_dtype = np.uint8 if want_np.dtype == np.bool_ else want_np.dtype
    return got.dtype == want_dtype and got.shape == want_np.shape and np.array_equal(_bits(got.asnumpy()), _bits(want_np))


def _torch_batches(loader, epochs: int = 2) -> list[Batch]:
    return [Batch(*(t.clone() for t in batch)) for _ in range(epochs) for batch in loader]


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_equal_the_torch_batches_bit_for_bit(stripe_tree, backend, mx):
    """Two epochs of MXNet batches, all kept until the end (a later batch must not overwrite an
    earlier one), equal the torch loader's batches with the same labels' dtype, bit for bit, every
    field of the meta batch included."""
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", void_label="ignore", return_meta=True)
    want = _torch_batches(loader_for(replace(config, label_dtype="int32"), shuffle=True))
    loader = loader_for(replace(config, framework="mxnet"), shuffle=True)
    got = [batch for _ in range(2) for batch in loader]
    assert len(got) == len(want) == 8
    for batch, reference in zip(got, want):
        assert all(isinstance(array, mx.np.ndarray) and array.ctx == mx.cpu() for array in batch)
        assert batch.images.shape == (2, 3, 320, 480) and batch.images.dtype == np.float32  # NCHW, the chapter's
        assert batch.labels.shape == (2, 320, 480) and batch.labels.dtype == np.int32
        assert batch.flips.dtype == np.uint8  # MXNet 1.9's DLPack has no bool
        assert all(_same_bits(array, tensor) for array, tensor in zip(batch, reference))


def test_load_data_voc_yields_nchw_float32_images_and_int32_labels(tmp_path, mx):
    for split in ("train", "val"):
        make_tree(tmp_path, [(96, 128)] * 4, split=split, label_fn=class_stripes)
    train_iter, test_iter = load_data_voc(2, (64, 96), root=tmp_path, framework="mxnet", backend="reference",
                                          num_workers=0, verbose=False)
    for loader in (train_iter, test_iter):
        assert loader.resolved.framework == "mxnet" and not loader.resolved.use_gpu
        batches = list(loader)
        assert len(batches) == 2
        for X, Y in batches:
            assert isinstance(X, mx.np.ndarray) and isinstance(Y, mx.np.ndarray)
            assert X.shape == (2, 3, 64, 96) and X.dtype == np.float32 and X.ctx == mx.cpu()
            assert Y.shape == (2, 64, 96) and Y.dtype == np.int32 and Y.ctx == mx.cpu()
            labels = Y.asnumpy()
            assert ((labels <= 20) | (labels == 255)).all() and (labels <= 20).any()


def _hand_made_batch() -> Batch:
    return Batch(torch.rand(2, 3, 8, 16), torch.randint(0, 21, (2, 8, 16), dtype=torch.int32),
                 torch.zeros(2, 2, dtype=torch.int32), torch.arange(2), torch.full((2, 2), 8, dtype=torch.int32),
                 torch.tensor([False, True]), torch.ones(2, 4))


def test_mxnet_arrays_are_the_memory_torch_filled(mx):
    """Zero-copy: each MXNet array starts at its torch tensor's address, and a write through
    torch afterwards shows in MXNet (the legacy ``NDArray`` view shares it too)."""
    batch = _hand_made_batch()
    converted = batch_converter(resolve(config_for(".", "reference", framework="mxnet")), meta=True)(batch)
    assert [_address(a) for a in converted] == [t.data_ptr() for t in batch]
    assert _address(converted.images.as_nd_ndarray()) == batch.images.data_ptr()
    batch.images[1, 2, 3, 4] = 42.0
    batch.labels[0, 5, 6] = 255
    batch.flips[0] = True
    assert converted.images.asnumpy()[1, 2, 3, 4] == 42.0
    assert converted.labels.asnumpy()[0, 5, 6] == 255
    assert converted.flips.asnumpy().tolist() == [1, 1]
    assert all(_same_bits(a, t) for a, t in zip(converted, batch))


def test_plain_pairs_and_nhwc_on_request(mx):
    batch = _hand_made_batch()
    X, Y = batch_converter(resolve(config_for(".", "reference", framework="mxnet")), meta=False)(batch)
    assert _address(X) == batch.images.data_ptr() and _address(Y) == batch.labels.data_ptr()
    config = config_for(".", "reference", framework="mxnet", layout="NHWC")
    X, _ = batch_converter(resolve(config), meta=False)(batch)  # one transposing copy
    assert X.shape == (2, 8, 16, 3) and _same_bits(X, batch.images.permute(0, 2, 3, 1).contiguous())


def _until(loader, count: int) -> tuple[list, dict]:
    """The first ``count`` batches of ``loader``'s next epoch and its state after them."""
    done = []
    for batch in loader:
        done.append(batch)
        if len(done) == count:
            return done, loader.state_dict()
    raise AssertionError(f"the epoch had fewer than {count} batches")


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_and_set_epoch_are_the_torch_loaders(stripe_tree, backend, mx):
    """The framework is no part of a loader's state: after the same batches the MXNet loader's
    state is the torch loader's, either loads into the other, and a resumed set_epoch loop yields
    the rest of the uninterrupted torch run, bit for bit."""
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", return_meta=True, label_dtype="int32")
    mx_config = replace(config, framework="mxnet")
    full = _torch_batches(loader_for(config, shuffle=True))  # 2 epochs of 4 batches
    torch_first = loader_for(config, shuffle=True)
    torch_first.set_epoch(0)
    _, torch_state = _until(torch_first, 2)
    mx_first = loader_for(mx_config, shuffle=True)
    mx_first.set_epoch(0)
    first_two, mx_state = _until(mx_first, 2)
    assert mx_state == torch_state and mx_state["batches_done"] == 2
    resumed = loader_for(mx_config, shuffle=True)
    resumed.load_state_dict(torch_state)
    rest = []
    for epoch in range(torch_state["epoch"], 2):
        resumed.set_epoch(epoch)
        rest += list(resumed)
    got = first_two + rest
    assert len(got) == len(full) == 8
    assert all(_same_bits(a, t) for batch, reference in zip(got, full) for a, t in zip(batch, reference))


def test_the_example_loss_counts_only_labelled_pixels(mx):
    """``masked_loss`` is the mean cross-entropy over pixels whose label is a class (NumPy's
    log-softmax, float64), whatever the logits say where the label is ``ignore_index``."""
    from mxnet import gluon, npx
    from dali_voc.examples.train_mxnet import masked_loss
    npx.set_np()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 21, 4, 6)).astype(np.float32)
    labels = rng.integers(0, 21, size=(2, 4, 6)).astype(np.int32)
    labels[0, :2] = 255
    labels[1, 3, 5] = 255
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    valid = labels != 255
    picked = np.take_along_axis(log_p, np.where(valid, labels, 0)[:, None], axis=1)[:, 0]
    want = -picked[valid].mean()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    got = float(masked_loss(loss_fn, mx.np.array(logits), mx.np.array(labels, dtype="int32"), 255))
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("hybridize", [False, True])
def test_int32_labels_give_softmax_cross_entropy_the_float32_labels_loss_and_gradients(mx, hybridize):
    """The labels' dtype for MXNet: Gluon's SoftmaxCrossEntropyLoss picks the same entries with
    int32 class indices as with float32 ones (the dtype the textbook's MXNet labels have), so the
    loader hands over the int32 labels it makes, without a cast; loss and gradients are equal bit
    for bit."""
    from mxnet import autograd, gluon, npx
    npx.set_np()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    if hybridize:
        loss_fn.hybridize()
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 21, 8, 12)).astype(np.float32)
    labels = rng.integers(0, 21, size=(2, 8, 12))
    results = []
    for dtype in ("float32", "int32"):
        pred = mx.np.array(logits)
        pred.attach_grad()
        with autograd.record():
            loss = loss_fn(pred, mx.np.array(labels.astype(dtype), dtype=dtype))
        loss.backward()
        results.append((loss.asnumpy(), pred.grad.asnumpy()))
    (loss_f, grad_f), (loss_i, grad_i) = results
    assert np.array_equal(loss_f, loss_i) and np.array_equal(grad_f, grad_i) and np.abs(grad_i).sum() > 0


@pytest.mark.slow  # builds and trains a small net
def test_one_training_step_in_mxnet(tmp_path, mx):
    from dali_voc.examples import train_mxnet
    for split in ("train", "val"):
        make_tree(tmp_path, [(96, 128)] * 4, split=split, label_fn=class_stripes)
    losses = train_mxnet.main(["--root", str(tmp_path), "--backend", "dali", "--batch-size", "2", "--crop", "64x96",
                               "--steps", "2", "--workers", "1"])
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[0] > 0


# -- resolve: no MXNet needed ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_mxnet_on_the_gpu_is_refused(stripe_tree, backend):
    if backend == "dali":
        require_dali()
    with pytest.raises(OptionError, match=r"framework='mxnet' takes CPU arrays only.*no build for CUDA 12 or 13"):
        resolve(config_for(stripe_tree, backend, framework="mxnet", device="gpu"))


def test_device_auto_decodes_on_the_cpu_for_mxnet_where_cuda_is_usable(stripe_tree, monkeypatch, importable_mxnet):
    """The decision alone (``cuda_usable`` answered yes): a CUDA machine runs MXNet's loader on
    DALI's CPU operators. The real GPU machine's run is ``test_mxnet_on_a_gpu_machine``."""
    require_dali()
    monkeypatch.setattr(importlib.import_module("dali_voc.resolve"), "cuda_usable", lambda: True)
    resolved = resolve(config_for(stripe_tree, "dali", framework="mxnet", device="auto"))
    assert not resolved.use_gpu and resolved.device_name == "cpu" and resolved.label_path == "zlib"
    assert (resolved.layout, resolved.label_dtype) == ("NCHW", "int32")


def test_a_missing_mxnet_is_named_with_its_extra(stripe_tree, monkeypatch):
    monkeypatch.setitem(sys.modules, "mxnet", None)  # import mxnet now fails
    with pytest.raises(OptionError, match=r"framework='mxnet' needs mxnet: pip install 'dali-voc\[mxnet\]' "
                                          r"\(MXNet 1\.9\.1 needs NumPy < 1\.24\)"):
        resolve(config_for(stripe_tree, "reference", framework="mxnet"))


def test_mxnet_under_a_newer_numpy_is_named_too(stripe_tree, tmp_path, monkeypatch):
    """MXNet 1.9.1 imported with NumPy >= 1.24 fails with AttributeError (``np.bool``), not
    ImportError: the same error, naming the extra and the NumPy it needs."""
    (tmp_path / "mxnet").mkdir()
    (tmp_path / "mxnet" / "__init__.py").write_text(
        "raise AttributeError(\"module 'numpy' has no attribute 'bool'\")\n")
    monkeypatch.delitem(sys.modules, "mxnet", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(OptionError, match=r"pip install 'dali-voc\[mxnet\]' \(MXNet 1\.9\.1 needs NumPy < 1\.24\) "
                                          r"\(module 'numpy' has no attribute 'bool'\)"):
        resolve(config_for(stripe_tree, "reference", framework="mxnet"))


@pytest.mark.gpu
def test_mxnet_on_a_gpu_machine(stripe_tree, mx):
    """On a CUDA machine ``device="auto"`` still hands MXNet CPU arrays, equal to the torch
    batches of DALI's CPU operators."""
    config = config_for(stripe_tree, "dali", batch_size=2, small_images="pad", return_meta=True, label_dtype="int32",
                        device="auto")
    loader = loader_for(replace(config, framework="mxnet"), shuffle=True)
    assert not loader.resolved.use_gpu
    want = _torch_batches(loader_for(replace(config, device="cpu"), shuffle=True), epochs=1)
    got = list(loader)
    assert all(array.ctx == mx.cpu() for batch in got for array in batch)
    assert all(_same_bits(a, t) for batch, reference in zip(got, want) for a, t in zip(batch, reference))
