"""Every "which" decision, made once: backend, GPU or CPU, CUDA device, shard, label decoder,
thread count and random streams.

:func:`resolve` turns a :class:`~dali_voc.config.LoaderConfig` (what the user asked for) into
a :class:`Resolved` (what will run on this machine). Both loaders and
:func:`dali_voc.loaders.pipeline.build_pipeline` receive the ``Resolved``; nothing below decides
again. A combination that cannot be honoured raises :class:`~dali_voc.errors.OptionError`
instead of being quietly replaced by something else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

from .config import DEFAULT_HW_DECODER_LOAD, LoaderConfig
from .errors import OptionError

#: How label PNGs become class indices: inflated on the GPU by nvCOMP, inflated on CPU threads
#: by zlib through the same plan (:mod:`dali_voc.labels.zlib_decoder`), decoded by DALI (then
#: mapped by the CuPy kernel on the GPU or NumPy on the CPU), or decoded by PIL (the reference
#: backend).
LabelPath = Literal["nvcomp", "zlib", "dali", "pil"]
#: The label paths on which the DALI pipeline hands out the label files' bytes undecoded.
RAW_LABEL_PATHS = ("nvcomp", "zlib")


def dali_available() -> bool:
    """True when NVIDIA DALI can be imported (the ``cuda13``/``cuda12`` extras)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def nvcomp_available() -> bool:
    """True when nvCOMP's Python API imports (the ``cuda13``/``cuda12`` extras)."""
    try:
        from nvidia import nvcomp  # noqa: F401
    except ImportError:
        return False
    return True


def cupy_available() -> bool:
    """True when CuPy imports (the GPU label kernels; the ``cuda13``/``cuda12`` extras)."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_package(name: Literal["cupy", "nvcomp"]) -> str:
    """The pip requirement that provides ``name`` for torch's CUDA major (13 unless torch was
    built for 12), as the ``cuda13``/``cuda12`` extras pin it: for messages."""
    import torch
    major = "12" if (torch.version.cuda or "").startswith("12.") else "13"
    return {"cupy": f"cupy-cuda{major}x", "nvcomp": f"nvidia-nvcomp-cu{major}==5.3.0.16"}[name]


_told_nvcomp_missing = False


def _say_once_nvcomp_missing() -> None:
    """One warning per process: without nvCOMP the GPU loader decodes label PNGs with DALI's
    decoder, on CPU threads, which is the slower label path on a GPU."""
    global _told_nvcomp_missing
    if _told_nvcomp_missing:
        return
    _told_nvcomp_missing = True
    from .log import logger
    logger.warning("nvCOMP is not installed, so label PNGs are decoded by DALI on CPU threads (the slower label "
                   f"path on a GPU); pip install {gpu_package('nvcomp')} to inflate them on the GPU")


def cuda_usable() -> bool:
    """True when torch sees a CUDA device."""
    import torch
    return torch.cuda.is_available()


def shard_of(config: LoaderConfig) -> tuple[int, int]:
    """``(shard_id, num_shards)``: from the config, else ``torch.distributed`` rank and
    world size when a process group is initialised, else ``(0, 1)``."""
    if config.num_shards is not None:
        return config.shard_id, config.num_shards  # type: ignore[return-value]
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_seed(seed: int, shard_id: int) -> int:
    """The seed of one shard's random stream (crop windows), derived from ``(seed, shard_id)``:
    every rank of a data-parallel job draws its own windows, and a rerun repeats them.
    A non-negative int below 2**31."""
    return int(np.random.SeedSequence([seed, shard_id]).generate_state(1)[0] >> 1)


#: Batches prepared ahead by default: DALI's default queue depth, the ``DataLoader``'s default
#: prefetch factor.
PREFETCH = 2
#: ... except for DALI's CPU operators: the batches DALI hands over are zero-copy views of its
#: own buffers, so every batch queued ahead keeps one more float32 image batch (118 MB at
#: 64 x 3 x 320 x 480) alive, while on the CPU the same two or so threads decode the next
#: batch whatever the depth: a deeper queue there buys little speed for that memory (the
#: ``tune-cpu-*prefetch2`` benchmark rows measure both against the shipped rows).
CPU_DALI_PREFETCH = 1


@dataclass(frozen=True)
class Resolved:
    """What runs, decided once from a config on this machine.

    Attributes:
        backend: ``"dali"`` or ``"reference"``.
        use_gpu: decode and crop on the GPU (DALI ``mixed``/``gpu`` operators).
        cuda_device: index of the CUDA device batches live on, ``None`` on the CPU.
        shard_id, num_shards: this process's shard of every epoch.
        label_path: see :data:`LabelPath`.
        workers: DataLoader workers (reference, 0 = main process) or DALI CPU threads (>= 1).
        hw_decoder_load: share of JPEGs for the hardware JPEG engine (GPU only, else 0.0).
        framework: ``"torch"``, ``"jax"``, ``"tensorflow"`` or ``"mxnet"``: what the batches are.
        layout: ``"NCHW"`` or ``"NHWC"``: the images' layout.
        label_dtype: ``"int64"``, ``"int32"`` or ``"uint8"``: the labels' dtype.
        nvcomp_known_sizes: nvCOMP inflates with sizes from the PNG headers (no size pass; see
            :class:`~dali_voc.config.LoaderConfig`); only with ``label_path == "nvcomp"``.
        prefetch: batches prepared ahead of the consumer (DALI's queue depth, the
            ``DataLoader``'s prefetch factor): ``config.prefetch``, or when unset
            :data:`CPU_DALI_PREFETCH` for DALI's CPU operators and :data:`PREFETCH` elsewhere.
        window_seed: seed of this shard's window stream in the DALI pipeline
            (:func:`shard_seed`). The reference path draws each window from
            ``(seed, epoch, sample index)``, which no two shards share within an epoch.
    """

    backend: Literal["dali", "reference"]
    use_gpu: bool
    cuda_device: Optional[int]
    shard_id: int
    num_shards: int
    label_path: LabelPath
    workers: int
    hw_decoder_load: float
    window_seed: int
    framework: str = "torch"
    layout: str = "NCHW"
    label_dtype: str = "int64"
    nvcomp_known_sizes: bool = False
    prefetch: int = PREFETCH

    @property
    def device_name(self) -> str:
        """``"cuda:<k>"`` or ``"cpu"`` (the torch device of the batches)."""
        return f"cuda:{self.cuda_device}" if self.use_gpu else "cpu"


_FRAMEWORK_MODULE = {"jax": "jax", "tensorflow": "tensorflow", "mxnet": "mxnet"}
#: Frameworks that take CPU arrays only. MXNet's last release (1.9.1) has no build for CUDA 12 or
#: 13, so it cannot take this loader's CUDA tensors: with it ``device="auto"`` runs on the CPU.
_CPU_ONLY_FRAMEWORKS = ("mxnet",)


def _jax_has_x64() -> bool:
    import jax
    return bool(getattr(jax.config, "jax_enable_x64", False))


def label_dtype_of(config: LoaderConfig) -> str:
    """The labels' dtype: ``label_dtype``, or the framework's usual one (torch ``"int64"``; JAX,
    TensorFlow and MXNet ``"int32"``)."""
    return config.label_dtype or ("int64" if config.framework == "torch" else "int32")


def _output(config: LoaderConfig) -> tuple[str, str, str]:
    """``(framework, layout, label_dtype)`` of the batches; the framework must import (and take
    arrays on the device asked for)."""
    if config.framework in _CPU_ONLY_FRAMEWORKS and config.device == "gpu":
        raise OptionError("framework='mxnet' takes CPU arrays only: MXNet's last release (1.9.1) has no build for "
                          "CUDA 12 or 13, so it cannot receive CUDA tensors; use device='cpu' (device='auto' "
                          "decodes on the CPU for MXNet)")
    if config.framework != "torch":
        try:
            __import__(_FRAMEWORK_MODULE[config.framework])
        except (ImportError, AttributeError) as err:  # AttributeError: MXNet 1.9.1 under NumPy >= 1.24
            hint = " (MXNet 1.9.1 needs NumPy < 1.24)" if config.framework == "mxnet" else ""
            raise OptionError(f"framework={config.framework!r} needs {config.framework}: pip install "
                              f"'dali-voc[{config.framework}]'{hint} ({err})") from None
    layout = config.layout if config.layout != "auto" else (
        "NCHW" if config.framework in ("torch", "mxnet") else "NHWC")
    label_dtype = label_dtype_of(config)
    if config.framework == "jax" and label_dtype == "int64" and not _jax_has_x64():
        raise OptionError("label_dtype='int64' with framework='jax': JAX holds no 64-bit integers unless "
                          "jax_enable_x64 is set; use 'int32' (the default for JAX)")
    return config.framework, layout, label_dtype


def _backend(config: LoaderConfig, wanted: Optional[str]) -> Literal["dali", "reference"]:
    if wanted is not None and config.backend not in ("auto", wanted):
        raise OptionError(f"a {wanted} loader was built from a config with backend={config.backend!r}")
    if wanted is not None and config.backend == "auto":
        config = replace(config, backend=wanted)  # type: ignore[arg-type]
    if config.backend == "auto":
        return "dali" if dali_available() else "reference"
    if config.backend == "dali" and not dali_available():
        raise OptionError("backend='dali' needs NVIDIA DALI: pip install 'dali-voc[cuda13]' (or [cuda12]); "
                          "backend='reference' runs without it")
    return config.backend  # type: ignore[return-value]


def _prefetch(config: LoaderConfig, dali_cpu: bool) -> int:
    """The queue depth / prefetch factor for ``config`` (see :attr:`Resolved.prefetch`)."""
    if config.prefetch is not None:
        return config.prefetch
    return CPU_DALI_PREFETCH if dali_cpu else PREFETCH


def resolve(config: LoaderConfig, backend: Optional[str] = None) -> Resolved:
    """Decide backend, device, shard, label path, threads and window seed for ``config``.

    ``backend`` (``"dali"`` or ``"reference"``): the backend of a loader class built directly,
    which stands for ``config.backend="auto"`` and must agree with any other setting.

    Raises:
        OptionError: naming the options that cannot be honoured together or on this machine
            (``device="gpu"`` without CUDA or with the reference backend, ``label_decoder``
            other than ``"auto"`` with the reference backend, ``"nvcomp"`` on the CPU or
            without nvCOMP, ``hw_decoder_load`` where nothing decodes on the GPU,
            ``nvcomp_known_sizes`` where nvCOMP cannot inflate the labels, whole-image
            placement with rescaling or flips, ``device="gpu"`` with ``framework="mxnet"``, the GPU
            without CuPy). On the GPU without nvCOMP, ``label_decoder="auto"`` takes DALI's decoder
            and says so once per process, naming the package.
    """
    backend = _backend(config, backend)
    if config.whole_images and config.augmentation.geometric:
        raise OptionError("crop_placement='top_left' (whole images) cannot be combined with rescaling or flips "
                          f"({config.augmentation}); whole-image loading is for evaluation, leave augment unset")
    shard_id, num_shards = shard_of(config)
    seed = shard_seed(config.seed, shard_id)
    output = _output(config)
    if backend == "reference":
        refused = [f"{name}={value!r}" for name, value, ok in (
            ("device", config.device, config.device != "gpu"),
            ("label_decoder", config.label_decoder, config.label_decoder == "auto"),
            ("hw_decoder_load", config.hw_decoder_load, config.hw_decoder_load is None),
            ("nvcomp_known_sizes", config.nvcomp_known_sizes, not config.nvcomp_known_sizes)) if not ok]
        if refused:
            raise OptionError(f"the reference backend decodes with PIL on the CPU and cannot honour "
                              f"{', '.join(refused)}; use backend='dali' (or leave these options unset)")
        return Resolved("reference", False, None, shard_id, num_shards, "pil", config.workers, 0.0, seed, *output,
                        prefetch=_prefetch(config, dali_cpu=False))

    if config.device == "gpu" and not cuda_usable():
        raise OptionError("device='gpu' was asked for but torch sees no CUDA device; use device='auto' or 'cpu'")
    use_gpu = config.device == "gpu" or (
        config.device == "auto" and cuda_usable() and config.framework not in _CPU_ONLY_FRAMEWORKS)
    if config.nvcomp_known_sizes and (config.device == "cpu" or config.label_decoder == "dali"):
        raise OptionError("nvcomp_known_sizes tunes the nvCOMP label path, but labels are decoded by DALI here "
                          f"(device={config.device!r}, label_decoder={config.label_decoder!r}); leave it unset")
    if not use_gpu:
        if config.label_decoder == "nvcomp":
            raise OptionError("label_decoder='nvcomp' decodes labels on the GPU, but this loader runs on the CPU "
                              f"(device={config.device!r}); use label_decoder='auto', 'zlib' or 'dali'")
        if config.device == "cpu" and config.hw_decoder_load is not None:
            raise OptionError("hw_decoder_load sets the GPU's hardware JPEG decoder, but device='cpu'; "
                              "leave it unset or use device='gpu'")
        cpu_labels: LabelPath = "dali" if config.label_decoder == "dali" else "zlib"
        return Resolved("dali", False, None, shard_id, num_shards, cpu_labels, max(1, config.workers), 0.0, seed,
                        *output, prefetch=_prefetch(config, dali_cpu=True))
    if config.label_decoder == "zlib":
        raise OptionError("label_decoder='zlib' runs the nvCOMP path's algorithm on CPU threads for the loader on "
                          "the CPU, but this loader runs on the GPU; use label_decoder='auto', 'nvcomp' or 'dali'")

    import torch
    if not cupy_available():  # both GPU label decoders run CuPy kernels
        raise OptionError(f"the GPU loader maps labels with CuPy kernels, but CuPy does not import: pip install "
                          f"{gpu_package('cupy')} (or use device='cpu')")
    if config.label_decoder == "nvcomp" and not nvcomp_available():
        raise OptionError(f"label_decoder='nvcomp' needs nvCOMP: pip install {gpu_package('nvcomp')}; "
                          "label_decoder='dali' decodes labels with DALI instead")
    label_path: LabelPath = "dali" if config.label_decoder == "dali" else (
        "nvcomp" if config.label_decoder == "nvcomp" or nvcomp_available() else "dali")
    if config.label_decoder == "auto" and label_path == "dali":
        _say_once_nvcomp_missing()
    load = DEFAULT_HW_DECODER_LOAD if config.hw_decoder_load is None else config.hw_decoder_load
    return Resolved("dali", True, torch.cuda.current_device(), shard_id, num_shards, label_path,
                    max(1, config.workers), load, seed, *output,
                    nvcomp_known_sizes=config.nvcomp_known_sizes and label_path == "nvcomp",
                    prefetch=_prefetch(config, dali_cpu=False))
