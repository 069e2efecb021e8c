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

from .colors import ColorTable, UnknownColorError, colors_to_indices
from .config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig
from .voc import Sample, Selection
from .windows import CropWindow, crop_with_pad, random_window, valid_mask

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)


class SampleDecodeError(OSError):
    """An image or label file of a sample could not be decoded."""


class SkippedSample(NamedTuple):
    """What a dataset item is when its files cannot be decoded and ``on_error="skip"``."""

    name: str
    reason: str


def collate_skipping(items: list) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], list[SkippedSample]]:
    """``default_collate`` over the decodable items; the skipped ones are returned beside."""
    kept = [item for item in items if not isinstance(item, SkippedSample)]
    skipped = [item for item in items if isinstance(item, SkippedSample)]
    if not kept:
        return None, None, skipped
    x, y = default_collate(kept)
    return x, y, skipped


def read_rgb(path) -> np.ndarray:
    """Decode an image file to uint8 RGB ``[H, W, 3]`` (gray, CMYK and palette converted).

    Raises:
        SampleDecodeError: naming the file, when it cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise SampleDecodeError(f"cannot decode {path}: {err}") from err


def normalize_image(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` -> float32 CHW ``[3, H, W]``: ``(v / 255 - mean) / std``,
    the ImageNet statistics; values roughly in [-2.2, 2.7]."""
    x = (rgb.astype(np.float32) / np.float32(255.0) - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def crop_window_for(seed: int, epoch: int, sample: Sample, crop_hw: tuple[int, int]) -> CropWindow:
    """The window the reference path uses for ``sample`` in ``epoch`` (deterministic)."""
    rng = np.random.default_rng([seed, epoch, sample.index])
    return random_window(rng, (sample.height, sample.width), crop_hw)


class VOCSegmentation(Dataset):
    """A split of a VOC tree as a torch ``Dataset`` of ``(X, Y)`` CPU tensors.

    ``X``: float32 ``[3, crop_h, crop_w]``, normalized with the ImageNet mean/std (0.0 in
    padding). ``Y``: int64 (or uint8, per ``config.label_dtype``) ``[crop_h, crop_w]`` class
    indices in ``[0, 20]`` or ``config.ignore_index``.

    Call :meth:`set_epoch` before each epoch for new crop windows (the loader does).
    """

    def __init__(self, config: LoaderConfig, split: str, selection: Optional[Selection] = None):
        self.config = config
        self.split = split
        if selection is None:
            from .integrity import loader_selection
            selection = loader_selection(config, split)
        self.selection = selection
        self.samples: Sequence[Sample] = self.selection.samples
        self.table = ColorTable.from_config(config)
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

    def window(self, i: int) -> CropWindow:
        """The crop window of item ``i`` in the current epoch."""
        return crop_window_for(self.config.seed, self.epoch, self.samples[i], self.config.crop_size)

    def __getitem__(self, i: int) -> Union[tuple[torch.Tensor, torch.Tensor], SkippedSample]:
        try:
            return self.load(i, self.window(i))
        except SampleDecodeError as err:
            if self.config.on_error != "skip":
                raise
            return SkippedSample(self.samples[i].name, str(err))

    def load(self, i: int, window: CropWindow) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``i`` cropped at an explicit ``window`` (for comparing paths window by window)."""
        sample = self.samples[i]
        crop_hw = self.config.crop_size
        image = read_rgb(sample.image)
        label = read_rgb(sample.label)
        image_hw = (sample.height, sample.width)
        for kind, path, arr in (("image", sample.image, image), ("label", sample.label, label)):
            if arr.shape[:2] != image_hw:
                raise SampleDecodeError(f"{kind} {path} decoded to {arr.shape[0]}x{arr.shape[1]}, "
                                        f"its header said {image_hw[0]}x{image_hw[1]}")
        mask = valid_mask(window, image_hw, crop_hw)
        x = normalize_image(crop_with_pad(image, window, crop_hw))
        x *= mask  # padding is the mean, i.e. 0.0 after normalizing
        result = colors_to_indices(crop_with_pad(label, window, crop_hw), self.table, valid=mask,
                                   dtype=np.dtype(self.config.label_dtype))
        if result.unknown_pixels:
            if self.config.unknown_colors == "raise":
                raise UnknownColorError(f"label {sample.label} holds color {result.first_unknown}, which is "
                                        f"neither a class color nor the void color")
            with self._unknown_pixels.get_lock():
                self._unknown_pixels.value += result.unknown_pixels
        return torch.from_numpy(x), torch.from_numpy(result.indices)


def report_skips(config: LoaderConfig, split: str, epoch: int, selection: Selection,
                 at_decode: Sequence[SkippedSample] = ()) -> None:
    """End-of-epoch line on stderr naming skipped samples (verbose loaders only)."""
    if not config.verbose or not (selection.skipped or at_decode):
        return
    import sys
    skipped = [name for name, _ in selection.skipped] + [s.name for s in at_decode]
    names = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    print(f"dali_voc: {split}: epoch {epoch}: {len(skipped)} unreadable sample(s) skipped ({names}; "
          f"{len(selection.skipped)} found at construction, {len(at_decode)} while decoding)", file=sys.stderr)


class EpochSampler(Sampler[int]):
    """Indices of one epoch: a seeded permutation (or file order), optionally one shard of it.

    Shard ``k`` of ``n`` takes the contiguous block ``[k*N//n, (k+1)*N//n)`` of the epoch's
    order, so the shards of an epoch partition the split.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, shard_id: int = 0, num_shards: int = 1):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.shard_id, self.num_shards = shard_id, num_shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _bounds(self) -> tuple[int, int]:
        return (self.shard_id * self.size // self.num_shards, (self.shard_id + 1) * self.size // self.num_shards)

    def __iter__(self) -> Iterator[int]:
        order = np.arange(self.size)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        lo, hi = self._bounds()
        return iter(order[lo:hi].tolist())

    def __len__(self) -> int:
        lo, hi = self._bounds()
        return hi - lo


class ReferenceLoader:
    """Iterable of ``(X, Y)`` batches from :class:`VOCSegmentation` through a ``DataLoader``.

    Each ``for`` loop over it is one epoch with a fresh order (when shuffled) and fresh
    crop windows. ``X``: float32 ``[B, 3, h, w]``; ``Y``: int64 ``[B, h, w]``; both on the CPU.
    """

    def __init__(self, config: LoaderConfig, split: str, shuffle: bool, num_workers: Optional[int] = None):
        from .api import resolve_shard  # late: api imports this module

        self.config = config
        self.dataset = VOCSegmentation(config, split)
        shard_id, num_shards = resolve_shard(config)
        self.sampler = EpochSampler(len(self.dataset), shuffle, config.seed, shard_id, num_shards)
        workers = config.workers if num_workers is None else num_workers
        self.num_workers = workers
        self._loader = DataLoader(
            self.dataset, batch_size=config.batch_size, sampler=self.sampler,
            drop_last=config.last_batch == "drop", num_workers=workers,
            prefetch_factor=config.prefetch if workers > 0 else None,
            persistent_workers=False,  # workers must see set_epoch's new windows
            collate_fn=collate_skipping,
        )
        self.epoch = 0
        #: Samples skipped at decode time in the last epoch (``on_error="skip"``).
        self.skipped_last_epoch: list[SkippedSample] = []

    @property
    def selection(self) -> Selection:
        return self.dataset.selection

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        skipped: list[SkippedSample] = []
        self.skipped_last_epoch = skipped
        for x, y, dropped in self._loader:
            skipped += dropped
            if x is not None:  # a batch is shorter by the samples skipped in it
                yield x, y
        report_skips(self.config, self.dataset.split, self.epoch, self.selection, skipped)

    def describe(self) -> str:
        skipped = self.selection.skipped_line(self.dataset.split)
        return (f"{self.selection.describe(self.dataset.split, self.config.crop_size)}; "
                f"reference loader (PIL + NumPy, {self.num_workers} workers, CPU)"
                + (f"\ndali_voc: {skipped}" if skipped else ""))

