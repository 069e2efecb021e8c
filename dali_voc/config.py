"""The one configuration object of dali_voc.

A :class:`LoaderConfig` is built once (by :func:`dali_voc.load_data_voc`, the CLI or the user)
and passed down unchanged to the dataset layer, the reference loader and the DALI loader.
It is frozen: a different setting means a new object (``dataclasses.replace``).
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Optional, Sequence, Union, get_args

from .geometry.augment import PRESETS, Augmentation, check_augmentation
from .dataset_specs import DatasetSpec, dataset_names, dataset_spec
from .errors import OptionError
from .storage.stores import is_url

Backend = Literal["auto", "dali", "reference"]
SmallImagePolicy = Literal["drop", "pad"]
VoidLabel = Literal["background", "ignore"]
UnknownColorPolicy = Literal["ignore", "raise"]
LastBatchPolicy = Literal["drop", "partial"]
DevicePolicy = Literal["auto", "gpu", "cpu"]
LabelDType = Literal["int64", "int32", "uint8"]
Framework = Literal["torch", "jax", "tensorflow", "mxnet"]
CropPlacement = Literal["random", "top_left"]
ValMode = Literal["crop", "whole"]
ImageLayout = Literal["auto", "NCHW", "NHWC"]
LabelDecoder = Literal["auto", "nvcomp", "zlib", "dali"]
ErrorPolicy = Literal["raise", "skip"]

#: The fields whose values are one of a Literal's: the valid values are read off the types.
_CHOICES: dict[str, tuple[str, ...]] = {
    name: get_args(kind) for name, kind in (
        ("backend", Backend), ("small_images", SmallImagePolicy), ("void_label", VoidLabel),
        ("unknown_colors", UnknownColorPolicy), ("on_error", ErrorPolicy), ("last_batch", LastBatchPolicy),
        ("device", DevicePolicy), ("label_dtype", LabelDType), ("framework", Framework),
        ("crop_placement", CropPlacement), ("val_mode", ValMode), ("layout", ImageLayout),
        ("label_decoder", LabelDecoder))}
#: Of those, the ones where ``None`` means "the default".
_OPTIONAL = frozenset({"small_images", "label_dtype"})

#: ImageNet statistics used by the textbook, per RGB channel, for pixel values in [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Largest image (height x width, pixels) the loaders and ``check`` accept by default: 160 times
#: VOC's largest (500x500), far below what a forged header can claim (a decompression bomb).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: Share of JPEGs DALI's ``mixed`` decoder sends to the hardware JPEG engine when
#: ``hw_decoder_load`` is left unset (DALI's own default).
DEFAULT_HW_DECODER_LOAD = 0.65


#: The fields that turn every augmentation off (evaluation).
NO_AUGMENTATION = dict(augment="textbook", scale_range=None, scale_base=None, flip_prob=None, jitter=None)


#: Seeds every backend accepts: NumPy's generators take any non-negative int, DALI's int64 seed
#: arguments the non-negative ones (its -1 means "random", which would break reproducibility).
SEED_RANGE = (0, 2**63 - 1)


def check_seed(seed: object) -> int:
    """``seed`` as an int when it is an integer in :data:`SEED_RANGE` (both ends included).

    Raises:
        OptionError: naming ``seed``, its value and the valid range.
    """
    lo, hi = SEED_RANGE
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)  # ints, NumPy ints; not floats
    except TypeError:
        value = None
    if value is None or not lo <= value <= hi:
        raise OptionError(f"seed={seed!r} is not valid; expected an integer in [{lo}, 2**63 - 1] "
                          f"(the same range on every backend)")
    return value


def _check_choice(name: str, value: object, valid: Sequence[object]) -> None:
    """Raise ``ValueError`` listing the valid values when ``value`` is not one of them."""
    if value not in valid:
        choices = ", ".join(repr(v) for v in valid)
        raise ValueError(f"{name}={value!r} is not valid; expected one of {choices}")


def usable_cpu_count() -> int:
    """CPU cores this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_worker_count() -> int:
    """Workers/threads for decoding: all usable cores, capped at 8 (the textbook uses 4).

    Past 8 a single training process rarely gains, and a training node shares its cores
    between the loader and the training processes.
    """
    return min(8, usable_cpu_count())


@dataclass(frozen=True)
class LoaderConfig:
    """Everything a segmentation loader needs to know, fixed at construction.

    Which backend, device, shard and label decoder actually run is decided once from this
    object by :func:`dali_voc.resolve.resolve`; options a backend cannot honour are refused
    there with :class:`~dali_voc.errors.OptionError`.

    Attributes:
        root: the dataset's folder: for VOC a ``VOCdevkit/VOC2012`` folder, or a folder that
            contains ``VOCdevkit/VOC2012`` (see :mod:`dali_voc.datasets` for the others);
            or packed data: a folder holding a pack manifest, or ``s3://bucket/prefix`` (kept as
            that string; :mod:`dali_voc.datasets.packed`).
        dataset: ``"voc"`` (the default), ``"voc_aug"`` (VOC2012 + SBD trainaug), ``"ade20k"``
            or ``"cityscapes"``: the folder layout, how label pixels become classes, the class
            count and the whole-image canvas (:mod:`dali_voc.dataset_specs`; any registered name).
        batch_size: samples per batch (``B``).
        crop_size: ``(height, width)`` of every output sample, in pixels.
        small_images: ``"drop"`` removes images smaller than the crop (the textbook: train
            1464 -> 1114 at 320x480); ``"pad"`` keeps them, padding the image with the
            normalization mean (0.0 after normalizing) and the label with ``ignore_index``.
            ``None``: ``"drop"`` with the textbook augmentation, ``"pad"`` when samples are
            rescaled (the recipes train on every image); see :attr:`small_image_policy`.
        void_label: where the VOC border/void color (224, 224, 192) goes: ``"background"``
            (class 0, the textbook) or ``"ignore"`` (``ignore_index``, what training uses).
        ignore_index: label value of pixels that carry no class (void under ``"ignore"``,
            padding, unknown colors). Must be in [number of classes, 255] (VOC: [21, 255]).
        unknown_colors: a label color that is neither a class nor void is mapped to
            ``ignore_index`` and counted (``"ignore"``), or raises naming the file and the
            color (``"raise"``).
        on_error: a sample whose image or label cannot be decoded (truncated, corrupt, not an
            image) ``"raise"``s an error naming the file, or is ``"skip"``ped: the split is
            verified once at construction (full decode, in parallel), unusable samples are left
            out, and the count is reported at construction and at the end of every epoch.
        backend: ``"dali"`` (DALI pipeline: GPU when CUDA is available, else DALI's CPU
            operators), ``"reference"`` (PIL + NumPy + torch ``DataLoader``, CPU only) or
            ``"auto"`` (``"dali"`` when DALI is installed).
        seed: seeds the shuffle order and the crop windows; same seed (and shard), same
            batches. Each shard draws its windows from its own stream (see ``resolve``).
        last_batch: ``"drop"`` the final partial batch (the textbook) or yield it ``"partial"``.
        num_workers: DataLoader workers (reference) / DALI CPU threads; ``None`` picks
            :func:`default_worker_count`.
        prefetch: batches prepared ahead of the consumer (DALI queue depth / DataLoader
            prefetch factor), >= 1; ``None``: 1 for DALI on the CPU (each queued batch holds
            one more image batch in memory there; 2 buys a few percent of speed with it: see
            the README's CPU benchmark), else 2.
        device: ``"auto"`` uses the GPU when CUDA is available, else the CPU; ``"gpu"``
            needs the ``"dali"`` backend and a CUDA device.
        hw_decoder_load: share of JPEGs sent to the GPU's hardware JPEG decoder (A100/H100)
            by DALI's ``mixed`` decoder; 0.0 disables it; ``None``:
            :data:`DEFAULT_HW_DECODER_LOAD`. It is refused with ``device="cpu"`` or the
            reference backend; with ``device="auto"`` it applies when the GPU is used.
        jpeg_fancy_upsampling: the GPU JPEG decoder (DALI ``mixed``) upsamples chroma as
            libjpeg-turbo does (DALI's ``jpeg_fancy_upsampling``), so GPU images come closer to
            the CPU paths'; DALI's default is off. The CPU decoders (PIL, DALI's CPU operators)
            always upsample this way, so it changes nothing there. Off until a GPU run measures
            its cost and the difference (``python -m dali_voc doctor`` runs both).
        label_dtype: ``"int64"`` (what ``torch.nn.CrossEntropyLoss`` takes), ``"int32"`` or
            ``"uint8"``; ``None``: the framework's usual one (torch int64; JAX, TensorFlow and
            MXNet int32; JAX holds no 64-bit integers by default).
        label_decoder: how the DALI loader decodes label PNGs: ``"nvcomp"`` (inflate on the
            GPU; GPU only), ``"zlib"`` (the nvCOMP path's algorithm on CPU threads: zlib
            inflates, NumPy unfilters, crops and maps; CPU only), ``"dali"`` (DALI's stock
            decoder, on CPU threads) or ``"auto"`` (``"nvcomp"`` on a GPU with nvCOMP
            installed, ``"zlib"`` on the CPU). The reference backend takes ``"auto"`` only.
        nvcomp_known_sizes: build nvCOMP's decompression config from the sizes every label's
            PNG header states (documented by nvCOMP as sync-free) instead of letting nvCOMP read
            them off the streams, which synchronizes its (private) stream once per batch. Off
            until a GPU run measures it; a wrong size still fails the Adler-32 check. Applies
            when labels are inflated with nvCOMP; refused where they cannot be (the reference
            backend, ``device="cpu"``, ``label_decoder="dali"``).
        shard_id, num_shards: data-parallel sharding; ``None`` takes rank and world size
            from ``torch.distributed`` when it is initialised, else a single shard.
        verbose: log one line per loader saying what was kept and which device runs it, and
            skipped samples at the end of each epoch, at INFO on the ``dali_voc`` logger
            (shown on stderr by default); ``False`` logs them at DEBUG.
        return_meta: yield :class:`~dali_voc.loaders.base.Batch` named tuples ``(images,
            labels, windows, ids)`` instead of ``(X, Y)``: each sample's crop anchor and split
            index, enough to re-create the batch on the reference path.
        max_image_pixels: an image whose header claims more pixels than this is refused before
            anything decodes it (an error naming the file, or skipped with ``on_error="skip"``).
        crop_placement: ``"random"`` (a window drawn per sample, the textbook) or ``"top_left"``
            (the window at (0, 0): whole images on a canvas of ``crop_size``, padded right and
            below; images larger than the canvas are refused, naming them).
        val_mode: what :func:`dali_voc.load_data_voc`'s test iterator yields: ``"crop"`` (the
            textbook: random crops, small images dropped) or ``"whole"`` (every image of the
            split, uncropped, on a ``whole_canvas`` canvas, image padded with 0.0 after
            normalizing and label with ``ignore_index``, list order, nothing dropped).
        whole_canvas: ``(height, width)`` of that canvas; ``None``: the dataset's
            (:attr:`canvas`; VOC's images all fit in 512x512).
        framework: what the batches are: ``"torch"`` tensors, ``"jax"`` arrays,
            ``"tensorflow"`` tensors or ``"mxnet"`` arrays (``mxnet.numpy.ndarray``), on the same
            device, handed over through DLPack without a copy (needs the ``[jax]`` /
            ``[tensorflow]`` / ``[mxnet]`` extra). MXNet takes CPU arrays only: with it
            ``device="auto"`` runs on the CPU and ``device="gpu"`` is refused.
        layout: images ``"NCHW"`` or ``"NHWC"``; ``"auto"``: NCHW for torch and MXNet, NHWC for
            JAX and TensorFlow (their convolutions' default). NHWC costs one transposing copy,
            on the device the batch is on.
        augment: the training augmentation preset (:data:`dali_voc.geometry.augment.PRESETS`):
            ``"textbook"`` (one random crop; the default), ``"torchvision"`` (scale 0.5-2.0 of
            a 520 shorter side, flip 0.5, crop, pad) or ``"mmseg"`` (scale 0.5-2.0 of a 512
            shorter side, flip 0.5, color jitter). The fields below, when given, override it;
            :attr:`augmentation` is what is in effect. Whole-image evaluation never augments.
        scale_range: ``(lo, hi)``: each sample is rescaled by a factor drawn uniformly in it
            (:mod:`dali_voc.geometry.augment` states the sizes exactly).
        scale_base: shorter side in pixels at scale 1.0; 0: the scale is relative to the image.
        flip_prob: probability of a horizontal flip of each sample (image and label).
        jitter: ``(brightness, contrast, saturation, hue)`` ranges of the image-only color
            jitter (:mod:`dali_voc.loaders.photometric`); ``(0, 0, 0, 0)`` turns a preset's off.
    """

    root: Union[Path, str]
    batch_size: int = 64
    crop_size: tuple[int, int] = (320, 480)
    small_images: Optional[SmallImagePolicy] = None
    void_label: VoidLabel = "background"
    ignore_index: int = 255
    unknown_colors: UnknownColorPolicy = "ignore"
    on_error: ErrorPolicy = "raise"
    backend: Backend = "auto"
    seed: int = 0
    last_batch: LastBatchPolicy = "drop"
    num_workers: Optional[int] = None
    prefetch: Optional[int] = None
    device: DevicePolicy = "auto"
    hw_decoder_load: Optional[float] = None
    jpeg_fancy_upsampling: bool = False
    label_dtype: Optional[LabelDType] = None
    label_decoder: LabelDecoder = "auto"
    nvcomp_known_sizes: bool = False
    shard_id: Optional[int] = None
    num_shards: Optional[int] = None
    verbose: bool = True
    return_meta: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    crop_placement: CropPlacement = "random"
    val_mode: ValMode = "crop"
    whole_canvas: Optional[tuple[int, int]] = None
    framework: Framework = "torch"
    layout: ImageLayout = "auto"
    augment: str = "textbook"
    scale_range: Optional[tuple[float, float]] = None
    scale_base: Optional[int] = None
    flip_prob: Optional[float] = None
    jitter: Optional[tuple[float, float, float, float]] = None
    dataset: str = "voc"

    def __post_init__(self) -> None:
        if not is_url(self.root):  # s3://bucket/prefix stays a URL (packed data, dali_voc.datasets.packed)
            object.__setattr__(self, "root", Path(self.root).expanduser())
        if isinstance(self.crop_size, int) or len(tuple(self.crop_size)) != 2:
            raise ValueError(f"crop_size must be (height, width), got {self.crop_size!r}")
        crop_h, crop_w = (int(v) for v in self.crop_size)
        if crop_h <= 0 or crop_w <= 0:
            raise ValueError(f"crop_size must be positive, got {self.crop_size!r}")
        object.__setattr__(self, "crop_size", (crop_h, crop_w))
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        object.__setattr__(self, "seed", check_seed(self.seed))
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value is not None or name not in _OPTIONAL:
                _check_choice(name, value, choices)
        _check_choice("augment", self.augment, tuple(PRESETS))
        if self.scale_range is not None:
            object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        if self.jitter is not None:
            object.__setattr__(self, "jitter", tuple(float(v) for v in self.jitter))
        check_augmentation(self.augmentation)
        if self.whole_canvas is not None:
            if len(tuple(self.whole_canvas)) != 2 or min(int(v) for v in self.whole_canvas) <= 0:
                raise ValueError(f"whole_canvas must be a positive (height, width), got {self.whole_canvas!r}")
            object.__setattr__(self, "whole_canvas", tuple(int(v) for v in self.whole_canvas))
        _check_choice("dataset", self.dataset, dataset_names())
        classes = self.spec.num_classes
        if not classes <= self.ignore_index <= 255:
            raise ValueError(f"ignore_index must be in [{classes}, 255] (it must not be one of {self.dataset}'s "
                             f"{classes} classes), got {self.ignore_index}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None, got {self.num_workers}")
        if self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be positive, got {self.max_image_pixels}")
        if self.prefetch is not None and self.prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {self.prefetch}")
        if self.hw_decoder_load is not None and not 0.0 <= self.hw_decoder_load <= 1.0:
            raise ValueError(f"hw_decoder_load must be in [0, 1], got {self.hw_decoder_load}")
        if (self.shard_id is None) != (self.num_shards is None):
            raise ValueError("give both shard_id and num_shards, or neither")
        if self.num_shards is not None and not 0 <= self.shard_id < self.num_shards:  # type: ignore[operator]
            raise ValueError(f"shard_id must be in [0, num_shards), got {self.shard_id} of {self.num_shards}")

    def whole_image(self) -> "LoaderConfig":
        """This config as whole-image evaluation needs it: every image at the top left of a
        ``whole_canvas`` canvas, padded, in list order (the caller does not shuffle), the last
        partial batch kept."""
        return replace(self, crop_size=self.canvas, small_images="pad", last_batch="partial",
                       crop_placement="top_left", **NO_AUGMENTATION)

    def evaluation(self) -> "LoaderConfig":
        """This config without augmentation (random crops only): the textbook's test iterator."""
        return replace(self, **NO_AUGMENTATION)

    @property
    def augmentation(self) -> Augmentation:
        """The augmentation in effect: the ``augment`` preset with the given fields over it."""
        preset = PRESETS[self.augment]
        jitter = preset.jitter if self.jitter is None else (None if not any(self.jitter) else self.jitter)
        return Augmentation(
            scale_range=preset.scale_range if self.scale_range is None else self.scale_range,
            scale_base=preset.scale_base if self.scale_base is None else int(self.scale_base),
            flip_prob=preset.flip_prob if self.flip_prob is None else float(self.flip_prob),
            jitter=jitter)

    @property
    def canvas(self) -> tuple[int, int]:
        """The whole-image canvas: ``whole_canvas``, or the dataset's."""
        return self.whole_canvas if self.whole_canvas is not None else self.spec.whole_canvas

    @property
    def small_image_policy(self) -> SmallImagePolicy:
        """``small_images``, or its default: ``"pad"`` when samples are rescaled, else ``"drop"``."""
        if self.small_images is not None:
            return self.small_images
        return "pad" if self.augmentation.scale_range is not None else "drop"

    @property
    def whole_images(self) -> bool:
        """Whole images on a canvas (``crop_placement="top_left"``): the window at (0, 0), no draw."""
        return self.crop_placement == "top_left"

    @property
    def workers(self) -> int:
        """The worker/thread count in effect (``num_workers`` or the machine default)."""
        return default_worker_count() if self.num_workers is None else self.num_workers

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's spec (:mod:`dali_voc.dataset_specs`): layout, classes, label table."""
        return dataset_spec(self.dataset)

    def label_table(self):
        """The table every label path maps this config's labels with: the dataset's, with this
        ``void_label`` and ``ignore_index`` (a :class:`~dali_voc.labels.tables.ColorTable` or
        :class:`~dali_voc.labels.tables.ValueTable`)."""
        return self.spec.label_table(self.void_index, self.ignore_index)

    @property
    def void_index(self) -> int:
        """The class index the void/border color maps to (0 or ``ignore_index``)."""
        return 0 if self.void_label == "background" else self.ignore_index
