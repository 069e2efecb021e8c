"""What a GPU user hits first, checked on the CPU with the imports simulated missing: a
missing CuPy is refused by resolve() naming the package; a missing nvCOMP is said once (and
refused when asked for), naming the package; nvCOMP failures become LabelDecoderError, which
ends the loader like a damaged file; CuPy gets torch's streams through Stream.from_external."""

from __future__ import annotations

import logging
import sys
import types
import warnings

import pytest
import torch

import importlib
from dali_voc.config import LoaderConfig
from dali_voc.errors import LabelDecoderError, OptionError
from tests.helpers import config_for, require_dali

resolve_mod = importlib.import_module("dali_voc.resolve")  # the module (dali_voc.resolve is also the function)


@pytest.fixture
def pretend_gpu(monkeypatch):
    """resolve() as on a machine where torch sees CUDA device 0 (nothing runs on it)."""
    monkeypatch.setattr(resolve_mod, "cuda_usable", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(resolve_mod, "_told_nvcomp_missing", False)


def _hide(monkeypatch, module: str) -> None:
    """Make ``import module`` (and ``from parent import name``) raise ImportError."""
    monkeypatch.setitem(sys.modules, module, None)
    parent, _, name = module.rpartition(".")
    if parent and parent in sys.modules:
        monkeypatch.delattr(sys.modules[parent], name, raising=False)


def _config(**kw) -> LoaderConfig:
    return LoaderConfig(root=".", backend="dali", verbose=False, **kw)


def test_a_missing_cupy_is_refused_naming_the_package(pretend_gpu, monkeypatch):
    _hide(monkeypatch, "cupy")
    with pytest.raises(OptionError, match=r"CuPy does not import: pip install cupy-cuda1[23]x"):
        resolve_mod.resolve(_config())
    assert resolve_mod.resolve(_config(device="cpu")).label_path == "zlib"  # the CPU path needs no CuPy


def test_a_missing_nvcomp_is_said_once_naming_the_package(pretend_gpu, monkeypatch, caplog):
    pytest.importorskip("cupy")
    _hide(monkeypatch, "nvidia.nvcomp")
    with caplog.at_level(logging.WARNING, logger="dali_voc"):
        first = resolve_mod.resolve(_config())
        second = resolve_mod.resolve(_config())
    assert first.use_gpu and first.label_path == second.label_path == "dali"
    said = [r.getMessage() for r in caplog.records if "nvCOMP" in r.getMessage()]
    assert len(said) == 1 and "pip install nvidia-nvcomp-cu1" in said[0] and "CPU threads" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dali_voc"):
        assert resolve_mod.resolve(_config(label_decoder="dali")).label_path == "dali"
    assert not caplog.records  # asking for DALI's decoder is not a missed faster path
    with pytest.raises(OptionError, match=r"label_decoder='nvcomp' needs nvCOMP: pip install nvidia-nvcomp-cu1"):
        resolve_mod.resolve(_config(label_decoder="nvcomp"))


def test_the_nvcomp_codec_failures_are_named(monkeypatch):
    from dali_voc.labels.nvcomp_decoder import deflate_codec
    nvcomp = pytest.importorskip("nvidia.nvcomp")
    if not torch.cuda.is_available():  # the real codec, on a machine without a GPU: CUDA refuses
        with pytest.raises(LabelDecoderError, match=r"nvCOMP could not create its Deflate decoder on CUDA device 0 "
                                                    r"\(RuntimeError: .*label_decoder='dali'"):
            deflate_codec(0, 0)

    def refusing(**kwargs):
        raise ValueError("bad argument")
    monkeypatch.setattr(nvcomp, "Codec", refusing)
    with pytest.raises(LabelDecoderError, match=r"\(ValueError: bad argument\)"):
        deflate_codec(0, 0)
    _hide(monkeypatch, "nvidia.nvcomp")
    with pytest.raises(LabelDecoderError, match=r"does not import .*pip install nvidia-nvcomp-cu1[23]==5\.3\.0\.16"):
        deflate_codec(0, 0)


def test_cupy_gets_torchs_stream_without_the_deprecated_external_stream():
    pytest.importorskip("cupy")
    from dali_voc.labels.cupy_decoder import cupy_stream
    fake = types.SimpleNamespace(cuda_stream=0x1234, device=torch.device("cuda", 0))  # no CUDA call is made
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cupy.cuda.ExternalStream warns DeprecationWarning on CuPy 14
        stream = cupy_stream(fake)
    assert stream.ptr == 0x1234


def test_a_failing_label_decoder_ends_the_loader(stripe_tree, monkeypatch):
    """LabelDecoderError (nvCOMP cannot be set up or refuses good streams) reaches the caller as
    itself and the loader refuses further use, as after a damaged file."""
    require_dali()
    from dali_voc import DALILoader
    loader = DALILoader(config_for(stripe_tree, "dali", batch_size=2), "train", shuffle=False)

    def failing(batch):
        raise LabelDecoderError("nvCOMP could not create its Deflate decoder on CUDA device 0 (RuntimeError: x)")
    monkeypatch.setattr(loader.labels, "decode", failing)
    with pytest.raises(LabelDecoderError, match="could not create"):
        list(loader)
    with pytest.raises(RuntimeError, match="stopped after an error"):
        list(loader)


def test_the_doctor_names_the_missing_packages():
    from dali_voc.tools.doctor import faster_path_hints
    env = {"dali": "2.4.0", "gpus": [{"index": 0}], "cupy": None, "nvcomp": None, "torch": torch.__version__,
           "torch_cuda": "13.0"}
    hints = faster_path_hints(env)
    assert any("pip install cupy-cuda" in h for h in hints) and any("pip install nvidia-nvcomp-cu" in h for h in hints)
    assert "dali-voc[cuda13]" in faster_path_hints({**env, "dali": None})[0]
