"""The CPU reference path: PIL decode, NumPy color table, torch ``DataLoader``.

Textbook semantics (``load_data_voc`` of the chapter this library replaces), decoded per
item instead of loading a whole split into RAM. It is the correctness oracle of the tests
and the baseline of the benchmark. Crop windows are a pure function of
``(seed, epoch, sample index)``, so any window can be re-drawn or passed in explicitly.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..geometry.augment import Augmentation, draw_geometry
from ..config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig
from ..errors import OptionError, PackError, PNGFormatError, SampleDecodeError, UnknownColorError
from .images import read_rgb
from ..datasets.integrity import loader_selection
from ..labels.host import crop_label, read_label
from ..batch import Batch
from .base import SegmentationLoader
from ..resolve import Resolved, label_dtype_of, resolve
from ..datasets.scan import Sample, Selection
from ..geometry.windows import CropWindow, SampleGeometry, crop_with_pad, valid_mask

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)
#: float32 ``[3, 256]``: each channel's normalized value of every 8-bit level, computed with the
#: very float32 operations of the definition below, so a lookup gives the same bits as the
#: arithmetic (``tests/test_reference.py`` compares all 256 levels).
_NORMALIZED_LEVELS = np.ascontiguousarray(
    (np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0) - _MEAN[:, None]) / _STD[:, None])


class SkippedSample(NamedTuple):
    """What a dataset item is when its files cannot be decoded and ``on_error="skip"``."""

    name: str
    reason: str


def collate_skipping(items: list) -> tuple[Optional[tuple[torch.Tensor, ...]], list[SkippedSample]]:
    """``default_collate`` over the decodable items (``None`` when there is none); the skipped
    ones are returned beside."""
    kept = [item for item in items if not isinstance(item, SkippedSample)]
    skipped = [item for item in items if isinstance(item, SkippedSample)]
    return (default_collate(kept) if kept else None), skipped


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` (any strides) -> float32 CHW ``[3, H, W]``: ``(v / 255 - mean) / std``,
    the ImageNet statistics; values roughly in [-2.2, 2.7].

    One table lookup per pixel and channel, written straight into the CHW output (instead of
    four passes of float32 arithmetic and a transpose)."""
    out = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(_NORMALIZED_LEVELS[channel], rgb[:, :, channel], out=out[channel])
    return out


def crop_window_for(seed: int, epoch: int, sample: Sample, crop_hw: tuple[int, int]) -> CropWindow:
    """The window the reference path uses for ``sample`` in ``epoch`` without augmentation."""
    return geometry_for(seed, epoch, sample, crop_hw, Augmentation()).window


def geometry_for(seed: int, epoch: int, sample: Sample, crop_hw: tuple[int, int], aug: Augmentation) -> SampleGeometry:
    """The geometry the reference path draws for ``sample`` in ``epoch`` (deterministic)."""
    rng = np.random.default_rng([seed, epoch, sample.index])
    return draw_geometry(rng, (sample.height, sample.width), crop_hw, aug)


def resized_image(image: np.ndarray, scaled: tuple[int, int]) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` resized to ``scaled`` (height, width) with PIL's bilinear filter
    (antialiased when shrinking: its support widens with the factor); unchanged at its own size."""
    if tuple(scaled) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((scaled[1], scaled[0]), Image.BILINEAR))


class SegmentationDataset(Dataset):
    """A split of any registered dataset's tree as a torch ``Dataset`` of ``(X, Y)`` CPU tensors.

    ``X``: float32 ``[3, crop_h, crop_w]``, normalized with the ImageNet mean/std (0.0 in
    padding). ``Y``: int64 (or ``label_dtype``) ``[crop_h, crop_w]`` class
    indices in ``[0, num_classes)`` (the dataset's classes) or ``config.ignore_index``.

    Call :meth:`set_epoch` before each epoch for new crop windows (the loader does).
    """

    def __init__(self, config: LoaderConfig, split: str, selection: Optional[Selection] = None,
                 label_dtype: Optional[str] = None):
        self.config = config
        self.split = split
        if selection is None:
            selection = loader_selection(config, split, config.workers)  # standalone: no resolved plan
        self.selection = selection
        self.samples: Sequence[Sample] = self.selection.samples
        self.label_dtype = getattr(torch, label_dtype or label_dtype_of(config))
        self.table = config.label_table()
        self.table.lut  # build the 32 MiB table now: forked workers then share it instead of each building one
        self.epoch = 0
        # Shared with DataLoader worker processes (passed at their creation).
        self._unknown_pixels = mp.Value("q", 0)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def unknown_pixels(self) -> int:
        """Label pixels of unknown color mapped to ``ignore_index`` so far (all workers)."""
        return int(self._unknown_pixels.value)

    def geometry(self, i: int) -> SampleGeometry:
        """Item ``i``'s geometry in the current epoch (window ``(0, 0)``, unscaled, for whole images)."""
        sample = self.samples[i]
        if self.config.whole_images:
            return SampleGeometry(CropWindow(0, 0), (sample.height, sample.width), False)
        return geometry_for(self.config.seed, self.epoch, sample, self.config.crop_size, self.config.augmentation)

    def __getitem__(self, i: int) -> Union[tuple[torch.Tensor, torch.Tensor], SkippedSample]:
        item = self.item(i)
        return item if isinstance(item, SkippedSample) else item[:2]

    def item(self, i: int) -> Union[tuple, SkippedSample]:
        """Item ``i`` at this epoch's geometry: ``(X, Y, window, split index, scaled, flip)``
        (the fields of :class:`~dali_voc.batch.Batch` before the jitter) with the window and
        the scaled size as int32 ``[2]``; a :class:`SkippedSample` when it cannot be decoded
        and ``on_error="skip"``."""
        window, scaled, flip = self.geometry(i)
        try:
            x, y = self.load(i, window, scaled, flip)
        except SampleDecodeError as err:
            if self.config.on_error != "skip":
                raise
            return SkippedSample(self.samples[i].name, str(err))
        return (x, y, torch.tensor(window, dtype=torch.int32), self.samples[i].index,
                torch.tensor(scaled, dtype=torch.int32), flip)

    def load(self, i: int, window: CropWindow, scaled: Optional[tuple[int, int]] = None,
             flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``i`` at an explicit geometry (for comparing paths sample by sample): scaled to
        ``scaled`` (height, width; default its own size), cropped at ``window``, mirrored when
        ``flip``. The image is resized by :func:`resized_image`, the label by the formula of
        :mod:`dali_voc.geometry.windows`. No color jitter (see :mod:`dali_voc.loaders.photometric`)."""
        sample = self.samples[i]
        crop_hw = self.config.crop_size
        image = read_rgb(sample.image)
        try:
            label = read_label(sample.label, self.table)
        except (PNGFormatError, PackError, OSError) as err:  # PackError: a shard out of step with its manifest
            raise SampleDecodeError(str(err) if isinstance(err, (PNGFormatError, PackError)) else
                                    f"cannot read {sample.label}: {err}") from err
        image_hw = (sample.height, sample.width)
        for kind, path, shape in (("image", sample.image, image.shape), ("label", sample.label, label.classes.shape)):
            if shape[:2] != image_hw:
                raise SampleDecodeError(f"{kind} {path} decoded to {shape[0]}x{shape[1]}, "
                                        f"its header said {image_hw[0]}x{image_hw[1]} when the split was scanned")
        scaled = image_hw if scaled is None else (int(scaled[0]), int(scaled[1]))
        cropped = crop_with_pad(resized_image(image, scaled), window, crop_hw)
        x = normalize_image(cropped[:, ::-1] if flip else cropped)
        inside = valid_mask(window, image_hw, crop_hw, scaled, flip)
        if not inside.all():  # padding is the mean, i.e. 0.0 after normalizing
            x *= inside
        result = crop_label(label, SampleGeometry(window, scaled, bool(flip)), crop_hw, self.table.ignore_index)
        if result.unknown_pixels:
            if self.config.unknown_colors == "raise":
                raise UnknownColorError.in_label(sample.label, result.first_unknown)
            with self._unknown_pixels.get_lock():
                self._unknown_pixels.value += result.unknown_pixels
        y = torch.from_numpy(result.indices).to(self.label_dtype)
        return torch.from_numpy(x), y


#: The name this class had while VOC was the only dataset.
VOCSegmentation = SegmentationDataset


class _Items(Dataset):
    """The dataset seen through :meth:`SegmentationDataset.item` (what a ``Batch`` carries)."""

    def __init__(self, dataset: SegmentationDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset.item(i)


def epoch_order(size: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """Positions ``[0, size)`` in the order epoch ``epoch`` visits them: a permutation drawn
    from ``(seed, epoch)``, or list order."""
    return np.random.default_rng([seed, epoch]).permutation(size) if shuffle else np.arange(size)


class EpochBatches(Sampler[list[int]]):
    """The batches (lists of dataset positions) one shard runs in one epoch.

    Shard ``k`` of ``n`` takes the contiguous block ``[k*N//n, (k+1)*N//n)`` of the epoch's
    order, so the shards of an epoch partition the split. Every shard yields
    ``batches`` batches (:func:`~dali_voc.loaders.base.batches_per_epoch`): under ``"drop"`` the
    last samples of a larger shard are left out, under ``"partial"`` a shorter shard's last
    batch is short or empty. ``start`` skips the first batches (resuming an epoch).
    """

    def __init__(self, size: int, shuffle: bool, seed: int, shard: tuple[int, int], batch_size: int, batches: int):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.shard_id, self.num_shards = shard
        self.batch_size, self.batches = batch_size, batches
        self.epoch = 0
        self.start = 0

    def shard_positions(self) -> np.ndarray:
        """This shard's block of the epoch's order."""
        lo = self.shard_id * self.size // self.num_shards
        hi = (self.shard_id + 1) * self.size // self.num_shards
        return epoch_order(self.size, self.shuffle, self.seed, self.epoch)[lo:hi]

    def __iter__(self) -> Iterator[list[int]]:
        positions = self.shard_positions().tolist()
        for b in range(self.start, self.batches):
            yield positions[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.batches - self.start


class ReferenceLoader(SegmentationLoader):
    """Iterable of ``(X, Y)`` batches from :class:`SegmentationDataset` through a ``DataLoader``.

    Each ``for`` loop over it is one epoch; the epoch's order (when shuffled) and crop windows
    are functions of ``(seed, epoch)``, so :meth:`set_epoch` can choose any epoch. ``X``:
    float32 ``[B, 3, h, w]``; ``Y``: int64 ``[B, h, w]``; both on the CPU. See
    :class:`~dali_voc.loaders.base.SegmentationLoader` for epochs, state and ``close``.
    """

    def __init__(self, config: LoaderConfig, split: str, shuffle: bool, resolved: Optional[Resolved] = None):
        resolved = resolve(config, "reference") if resolved is None else resolved
        if resolved.backend != "reference":
            raise OptionError(f"ReferenceLoader got a plan for the {resolved.backend!r} backend")
        super().__init__(config, split, shuffle, resolved)
        self.dataset = SegmentationDataset(config, split, loader_selection(config, split, resolved.workers),
                                       resolved.label_dtype)
        self.selection = self.dataset.selection
        self._check_batch_count()
        self.batch_sampler = EpochBatches(len(self.dataset), shuffle, config.seed,
                                          (resolved.shard_id, resolved.num_shards), config.batch_size, len(self))
        workers = resolved.workers
        self._loader = DataLoader(
            _Items(self.dataset), batch_sampler=self.batch_sampler, num_workers=workers,
            prefetch_factor=resolved.prefetch if workers > 0 else None,
            persistent_workers=False,  # workers must see each epoch's windows
            collate_fn=collate_skipping,
        )
        self._epoch_iter: Optional[Iterator] = None
        #: Samples skipped at decode time in the last epoch (``on_error="skip"``).
        self.skipped_last_epoch: list[SkippedSample] = []

    @property
    def unknown_pixels(self) -> int:
        """Label pixels of unknown color mapped to ``ignore_index`` so far (all workers)."""
        return self._unknown_pixels + self.dataset.unknown_pixels

    def _batches(self, start: int) -> Iterator[Batch]:
        self.dataset.set_epoch(self.epoch)
        self.batch_sampler.epoch = self.epoch
        self.batch_sampler.start = start
        skipped: list[SkippedSample] = []
        self.skipped_last_epoch = skipped
        self._epoch_iter = iter(self._loader)
        for collated, dropped in self._epoch_iter:
            skipped += dropped
            # A batch whose samples were all skipped (or a shorter shard's empty last batch)
            # is yielded empty: every rank steps the same number of times.
            yield Batch(*collated[:5], collated[5].to(torch.bool)) if collated is not None else self._empty_batch()
        self._epoch_iter = None

    def _abandon_epoch(self) -> None:
        self._epoch_iter = None  # the DataLoader iterator shuts its workers down when collected

    def _load_backend_state(self, prepared: None) -> None:
        self._epoch_iter = None
        with self.dataset._unknown_pixels.get_lock():  # the saved total is taken over whole
            self.dataset._unknown_pixels.value = 0

    def _release(self) -> None:
        self._epoch_iter = None

    def _skipped_at_decode(self) -> list[str]:
        return [s.name for s in self.skipped_last_epoch]

    def _where(self) -> str:
        return f"reference loader (PIL + NumPy, {self.resolved.workers} workers, CPU)"
