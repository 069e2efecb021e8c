"""The public DALI iterator: ``for X, Y in loader`` with ``X``, ``Y`` ready for training.

Wraps ``DALIGenericIterator`` over :func:`dali_voc.pipeline.build_pipeline`, checks on every
batch that image and label readers are paired, converts label colors to class indices
(CuPy kernel on the GPU, NumPy on the CPU), and behaves like a ``DataLoader``: ``len()``,
one epoch per ``for`` loop, a new shuffle order and new crop windows every epoch.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import numpy as np
import torch

from .colors import ColorTable, UnknownColorError, colors_to_indices
from .config import LoaderConfig
from .pipeline import IMAGE_READER, OUTPUTS, build_pipeline, make_spec
from .png import PNGFormatError
from .voc import Sample, Selection


class ReaderPairingError(RuntimeError):
    """The image and label readers delivered different samples in one batch slot."""


def cuda_usable() -> bool:
    """True when torch sees a CUDA device."""
    return torch.cuda.is_available()


def choose_gpu(config: LoaderConfig) -> bool:
    """The one "use the GPU?" decision: ``device='auto'`` follows CUDA availability."""
    if config.device == "gpu" and not cuda_usable():
        raise RuntimeError("device='gpu' was asked for but torch sees no CUDA device; use device='auto' or 'cpu'")
    return config.device == "gpu" or (config.device == "auto" and cuda_usable())


def nvcomp_available() -> bool:
    """True when nvCOMP's Python API imports (the ``cuda13``/``cuda12`` extras)."""
    try:
        from nvidia import nvcomp  # noqa: F401
    except ImportError:
        return False
    return True


def choose_label_decoder(config: LoaderConfig, use_gpu: bool) -> str:
    """``"nvcomp"`` (PNG inflated on the GPU) or ``"dali"`` (DALI's decoder, CPU threads)."""
    if not use_gpu:
        if config.label_decoder == "nvcomp":
            raise ValueError("label_decoder='nvcomp' decodes labels on the GPU, but this loader runs on the CPU")
        return "dali"
    if config.label_decoder == "auto":
        return "nvcomp" if nvcomp_available() else "dali"
    if config.label_decoder == "nvcomp" and not nvcomp_available():
        raise ImportError("label_decoder='nvcomp' needs nvidia-nvcomp (pip install 'dali-voc[cuda13]')")
    return config.label_decoder


def batch_valid_masks(windows: np.ndarray, shapes: np.ndarray, crop_hw: tuple[int, int]) -> np.ndarray:
    """bool ``[B, h, w]``: True where each sample's window covers image pixels.

    ``windows``: int ``[B, 2]`` (top, left); ``shapes``: int ``[B, 2]`` (height, width)."""
    rows = np.arange(crop_hw[0])[None, :] + windows[:, :1]
    cols = np.arange(crop_hw[1])[None, :] + windows[:, 1:2]
    rows_ok = (rows >= 0) & (rows < shapes[:, :1])
    cols_ok = (cols >= 0) & (cols < shapes[:, 1:2])
    return rows_ok[:, :, None] & cols_ok[:, None, :]


class DALILoader:
    """Iterable of ``(X, Y)`` batches produced by DALI.

    ``X``: float32 ``[B, 3, h, w]`` normalized with the ImageNet mean/std (0.0 in padding).
    ``Y``: int64 (or uint8) ``[B, h, w]`` class indices in ``[0, 20]`` or ``ignore_index``.
    Both are CUDA tensors on the current device when the GPU is used, else CPU tensors.

    Breaking out of a ``for`` loop early is allowed: the next loop first drains the rest of
    that epoch (DALI cannot reset a reader mid-epoch), so every epoch still starts fresh.
    """

    def __init__(self, config: LoaderConfig, split: str, shuffle: bool, selection: Optional[Selection] = None):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        from .api import resolve_shard

        self.config = config
        self.split = split
        if selection is None:
            from .integrity import loader_selection
            selection = loader_selection(config, split)
        self.selection = selection
        self.samples_by_index: dict[int, Sample] = {s.index: s for s in self.selection.samples}
        self.use_gpu = choose_gpu(config)
        self.shard = resolve_shard(config)
        self.table = ColorTable.from_config(config)
        self.label_dtype = getattr(torch, config.label_dtype)
        self.label_decoder = choose_label_decoder(config, self.use_gpu)
        self._gpu_convert = None
        self._png_decoder = None
        device = torch.device("cuda", torch.cuda.current_device()) if self.use_gpu else None
        if self.label_decoder == "nvcomp":
            from .gpu_png import GPUPNGLabelDecoder
            self._png_decoder = GPUPNGLabelDecoder(self.table, config.crop_size, self.label_dtype, device)
        elif self.use_gpu:
            from .gpu_labels import GPULabelConverter
            self._gpu_convert = GPULabelConverter(self.table, self.label_dtype, device)
        spec = make_spec(self.selection.samples, shuffle, self.shard, self.use_gpu,
                         raw_labels=self.label_decoder == "nvcomp")
        self.pipeline = build_pipeline(config, spec)
        policy = LastBatchPolicy.DROP if config.last_batch == "drop" else LastBatchPolicy.PARTIAL
        self._iter = DALIGenericIterator([self.pipeline], list(OUTPUTS), reader_name=IMAGE_READER,
                                         last_batch_policy=policy, auto_reset=True)
        self._in_epoch = False
        self._failed: Optional[str] = None
        self.epoch = 0
        self.unknown_pixels = 0
        self._unknown_device: Optional[torch.Tensor] = None
        #: Of the batch last yielded: int32 ``[B, 2]`` crop anchors (top, left) in image pixels,
        #: and int ``[B]`` split indices of its samples (CPU), e.g. to re-create the batch with
        #: the reference path's ``VOCSegmentation.load(i, CropWindow(top, left))``.
        self.last_windows: Optional[torch.Tensor] = None
        self.last_ids: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self._iter)

    def describe(self) -> str:
        where = "CPU (DALI CPU operators)"
        if self.use_gpu:
            name = torch.cuda.get_device_name(torch.cuda.current_device())
            where = f"GPU {torch.cuda.current_device()} ({name}, hw JPEG load {self.config.hw_decoder_load})"
        shard = f", shard {self.shard[0]} of {self.shard[1]}" if self.shard[1] > 1 else ""
        labels = {"nvcomp": "labels inflated on the GPU (nvCOMP)", "dali": "labels decoded by DALI"}
        skipped = self.selection.skipped_line(self.split)
        return (f"{self.selection.describe(self.split, self.config.crop_size)}; DALI loader on {where}, "
                f"{self.config.workers} CPU threads, {labels[self.label_decoder]}{shard}"
                + (f"\ndali_voc: {skipped}" if skipped else ""))

    @property
    def fallback_images(self) -> int:
        """Labels the GPU PNG path handed to the CPU (not 8-bit palette/gray PNGs) so far."""
        return self._png_decoder.fallback_images if self._png_decoder is not None else 0

    def _sample_name(self, index: int) -> str:
        sample = self.samples_by_index.get(index)
        return f"{sample.name} ({sample.image}, {sample.label})" if sample else f"index {index}"

    def _check_pairing(self, image_ids: torch.Tensor, label_ids: torch.Tensor) -> None:
        if not torch.equal(image_ids, label_ids):
            slot = int((image_ids != label_ids).flatten().nonzero()[0])
            raise ReaderPairingError(
                f"image and label readers out of step in batch slot {slot}: image of "
                f"{self._sample_name(int(image_ids.flatten()[slot]))} paired with label of "
                f"{self._sample_name(int(label_ids.flatten()[slot]))}")

    def _raise_unknown(self, slot: int, ids: torch.Tensor) -> None:
        sample = self.samples_by_index[int(ids.flatten()[slot])]
        from .reference import read_rgb
        first = colors_to_indices(read_rgb(sample.label), self.table).first_unknown
        raise UnknownColorError(f"label {sample.label} holds color {first}, which is "
                                f"neither a class color nor the void color")

    def _convert_labels(self, batch: dict) -> torch.Tensor:
        rgb, windows, shapes = batch["labels"], batch["windows"], batch["shapes"]
        strict = self.config.unknown_colors == "raise"
        if self._gpu_convert is not None or self._png_decoder is not None:
            if self._png_decoder is not None:
                ids = batch["label_ids"].flatten().tolist()
                names = [str(self.samples_by_index[i].label) for i in ids]
                encoded = [row.tobytes() for row in rgb.numpy()]
                y = self._png_decoder(encoded, names, windows.numpy(), shapes.numpy())
                unknown = self._png_decoder.last_unknown
            else:
                y = self._gpu_convert(rgb, windows, shapes)
                unknown = self._gpu_convert.last_unknown
            total = unknown.sum()
            self._unknown_device = total if self._unknown_device is None else self._unknown_device + total
            if strict:  # costs one host sync per batch, by request
                per_sample = unknown.cpu()
                if per_sample.any():
                    self._raise_unknown(int(per_sample.nonzero()[0]), batch["image_ids"])
            return y
        masks = batch_valid_masks(windows.numpy(), shapes.numpy(), self.config.crop_size)
        result = colors_to_indices(rgb.numpy(), self.table, valid=masks, dtype=np.dtype(self.config.label_dtype))
        if result.unknown_pixels:
            if strict:
                slot = next(b for b in range(len(masks))
                            if colors_to_indices(rgb[b].numpy(), self.table, valid=masks[b]).unknown_pixels)
                self._raise_unknown(slot, batch["image_ids"])
            self.unknown_pixels += result.unknown_pixels
        return torch.from_numpy(result.indices)

    def _finish_epoch_counts(self) -> None:
        if self._unknown_device is not None:
            self.unknown_pixels += int(self._unknown_device.item())  # one sync per epoch
            self._unknown_device = None

    def _next_outputs(self) -> Optional[dict]:
        """The next batch of the epoch, or None at its end (DALI then resets itself).

        ``next()`` rather than ``iter()``: DALI's ``__iter__`` tries a reset mid-epoch.

        A DALI failure (a file that does not decode) leaves its pipeline unusable; it is turned
        into :class:`~dali_voc.reference.SampleDecodeError` naming the file(s), and every later
        use of this loader says so instead of touching the dead pipeline."""
        if self._failed:
            raise RuntimeError(f"this loader stopped after an error ({self._failed}); build a new one")
        try:
            return next(self._iter)[0]
        except StopIteration:
            return None
        except RuntimeError as err:
            from .integrity import diagnose_failure
            from .reference import SampleDecodeError
            found = diagnose_failure(err, self.selection.samples, self.table, self.config.workers,
                                     progress=self.config.verbose)
            self._failed = found or "DALI failure"
            if found is None:
                raise RuntimeError(f"DALI failed while loading {self.split!r} and every file of the split decodes "
                                   f"with PIL; DALI said: {err}") from err
            raise SampleDecodeError(f"{self.split}: {found} (use on_error='skip' to leave such samples "
                                    f"out, or 'python -m dali_voc check' to list every problem)") from err

    @contextlib.contextmanager
    def _label_errors_named(self) -> Iterator[None]:
        """A label the GPU PNG path cannot decode (damaged data, named by the parser, by
        nvCOMP's failure or by the kernels' flags) ends this loader like a DALI decode error:
        :class:`~dali_voc.reference.SampleDecodeError` naming the file, then no further use."""
        try:
            yield
        except PNGFormatError as err:
            from .reference import SampleDecodeError
            self._failed = str(err)
            raise SampleDecodeError(f"{self.split}: {err} (use on_error='skip' to leave such samples out, "
                                    f"or 'python -m dali_voc check' to list every problem)") from err

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._in_epoch:  # the previous loop broke early: finish that epoch first
            while self._next_outputs() is not None:
                pass
        self._in_epoch = True
        self.epoch += 1
        while (batch := self._next_outputs()) is not None:
            self._check_pairing(batch["image_ids"], batch["label_ids"])
            self.last_windows, self.last_ids = batch["windows"], batch["image_ids"].flatten()
            with self._label_errors_named():
                labels = self._convert_labels(batch)
            yield batch["images"], labels
        self._in_epoch = False
        if self._png_decoder is not None:
            with self._label_errors_named():
                self._png_decoder.check_pending()
        self._finish_epoch_counts()
        from .reference import report_skips
        report_skips(self.config, self.split, self.epoch, self.selection)
