"""The DALI loader: ``for X, Y in loader`` with ``X``, ``Y`` ready for training.

Wraps ``DALIGenericIterator`` over :func:`dali_voc.loaders.pipeline.build_pipeline`, checks on every
batch that the image and label readers are paired, and hands each batch's labels to one
label decoder (:mod:`dali_voc.labels.choice`: nvCOMP on the GPU, the same algorithm with
zlib on CPU threads, or DALI's PNG decoder followed by the CuPy or NumPy color mapping). Unknown colors are counted and, with
``unknown_colors="raise"``, named here, the same way for every decoder. Epochs, ``len``,
state and ``close`` follow :class:`~dali_voc.loaders.base.SegmentationLoader`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.profiler import record_function

from ..config import LoaderConfig
from .dali_verify import DaliFileCheck
from ..errors import (LabelDecoderError, LoaderStateError, OptionError, PNGFormatError, ReaderPairingError,
                      SampleDecodeError, UnknownColorError)
from ..datasets.packed import ShardPlan, is_packed, probe_shards, write_selection_indexes
from ..datasets.integrity import diagnose_failure, invalid_labels, loader_selection
from ..labels.decoder import LabelBatch
from ..labels.choice import make_label_decoder
from ..labels.host import crop_label, read_label
from ..batch import Batch
from .base import SegmentationLoader
from .pipeline import GRAPH_VERSION, IMAGE_READER, build_pipeline, pipeline_outputs
from ..resolve import Resolved, resolve
from ..datasets.scan import Sample, Selection
from ..geometry.windows import BatchGeometry

_SEE_CHECK = "use on_error='skip' to leave such samples out, or 'python -m dali_voc check' to list every problem"


def _dali_said(err: BaseException) -> str:
    """DALI's error without its repeated banners and the graph traceback: the lines that say what failed."""
    lines = [line.strip() for line in str(err).splitlines()]
    keep = [line for line in lines if line and not line.startswith(("Critical error", "Current pipeline", "File ",
                                                                      "which was used", "encountered"))]
    return " ".join(keep[-2:]) or str(err)


class DALILoader(SegmentationLoader):
    """Iterable of ``(X, Y)`` batches produced by DALI.

    ``X``: float32 ``[B, 3, h, w]`` normalized with the ImageNet mean/std (0.0 in padding).
    ``Y``: int64 (or uint8) ``[B, h, w]`` class indices in ``[0, num_classes)`` (the dataset's classes) or ``ignore_index``.
    Both are CUDA tensors on ``resolved.cuda_device`` when the GPU is used, else CPU tensors.

    DALI's readers run their epochs in order, so :meth:`set_epoch` accepts only the epoch the
    next loop would run anyway; :meth:`state_dict` saves DALI's own checkpoint (reader positions
    and generator states), from which :meth:`load_state_dict` rebuilds the pipeline.
    Breaking out of a loop early is allowed: the next loop first drains the rest of that epoch
    (DALI cannot reset a reader mid-epoch).
    """

    def __init__(self, config: LoaderConfig, split: str, shuffle: bool, resolved: Optional[Resolved] = None,
                 selection: Optional[Selection] = None):
        resolved = resolve(config, "dali") if resolved is None else resolved
        if resolved.backend != "dali":
            raise OptionError(f"DALILoader got a plan for the {resolved.backend!r} backend")
        super().__init__(config, split, shuffle, resolved)
        self.file_check = DaliFileCheck(resolved, progress=config.verbose)
        if selection is None:
            selection = loader_selection(config, split, resolved.workers, decoder=self.file_check)
        self.selection = selection
        self._check_batch_count()
        #: Packed data: the shards DALI reads, through index files of the selected samples.
        self.shards = self._plan_shards() if is_packed(config.root) else None
        if resolved.label_path == "dali" and config.on_error == "raise" and self.shards is None:
            # ("skip" verified them already; packing checked them as check does)
            self._check_labels_for_dalis_decoder()
        self.samples_by_index: dict[int, Sample] = {s.index: s for s in self.selection.samples}
        self.table = config.label_table()
        self.labels = self._new_label_decoder()
        self._failed: Optional[str] = None
        self._unknown_device: Optional[torch.Tensor] = None
        self._iter: Any = None
        self.pipeline: Any = None
        self._open()

    def _new_label_decoder(self):
        """A label decoder for this loader (the one place it is built: at construction, and
        fresh after a restored state)."""
        return make_label_decoder(self.resolved, self.table, self.config.crop_size,
                                  getattr(torch, self.resolved.label_dtype))

    def _plan_shards(self) -> ShardPlan:
        """Index files listing this loader's samples, in a private temporary folder (removed
        with the loader), from the manifest's offsets."""
        folder = Path(tempfile.mkdtemp(prefix="dali_voc-index-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        return write_selection_indexes(self.config.root, self.split, self.selection.samples, folder)

    def _check_labels_for_dalis_decoder(self) -> None:
        """DALI's PNG decoder (libpng) decodes some labels the PNG rules refuse (a PLTE in a gray
        image, image data longer than the header says), which every other path refuses: check
        the labels once, here, so that this path names them too. A few KB per label."""
        bad = invalid_labels(self.selection.samples, self.resolved.workers)
        if bad:
            listed = "; ".join(why for _, why in bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise SampleDecodeError(f"{self.split}: {len(bad)} invalid label(s): {listed} ({_SEE_CHECK})")

    def _open(self) -> None:
        """(Re)build the pipeline and its iterator. The first batch is not fetched here, so a
        file that fails in it is named like any other."""
        self._release()
        self.pipeline, self._iter = self._new_pipeline()

    def _new_pipeline(self, checkpoint: Optional[bytes] = None) -> tuple[Any, Any]:
        """A built pipeline and its iterator, restored from DALI's ``checkpoint`` when given."""
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
        pipeline = build_pipeline(self.config, self.resolved, self.selection.samples, self.shuffle, checkpoint,
                                  self.shards)
        policy = LastBatchPolicy.DROP if self.config.last_batch == "drop" else LastBatchPolicy.PARTIAL
        try:  # builds the pipeline: DALI's reader reads the index files here
            iterator = DALIGenericIterator([pipeline], list(pipeline_outputs(self.config)), reader_name=IMAGE_READER,
                                           last_batch_policy=policy, auto_reset=True, prepare_first_batch=False)
        except RuntimeError as err:
            if self.shards is None:
                raise
            raise self._shards_failed(err) from err
        return pipeline, iterator

    def _release(self) -> None:
        self._iter = None
        self.pipeline = None  # DALI frees its threads and device memory with the last reference

    def _where(self) -> str:
        r = self.resolved
        if r.use_gpu:
            name = torch.cuda.get_device_name(r.cuda_device)
            where = f"GPU {r.cuda_device} ({name}, hw JPEG load {r.hw_decoder_load})"
        else:
            where = "CPU (DALI CPU operators)"
        return f"DALI on {where}, {r.workers} CPU threads, {self.labels.description}"

    @property
    def fallback_images(self) -> int:
        """Labels the GPU PNG path handed to the CPU (not 8-bit palette/gray PNGs) so far."""
        return self.labels.fallback_images

    @property
    def unknown_pixels(self) -> int:
        """Label pixels of unknown color mapped to ``ignore_index`` so far (reading it waits
        for the device when labels are counted there)."""
        self._collect_unknown()
        return self._unknown_pixels

    def _collect_unknown(self) -> None:
        if self._unknown_device is not None:
            self._unknown_pixels += int(self._unknown_device.item())
            self._unknown_device = None

    # -- one batch ----------------------------------------------------------------------------

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

    def _shards_failed(self, err: BaseException) -> SampleDecodeError:
        """DALI failed reading packed shards: the error naming the shard or member at fault
        (:func:`~dali_voc.datasets.packed.probe_shards`), and no further use of this loader."""
        self._failed = probe_shards(self.config.root, self.split) or "DALI failure on packed shards"
        return SampleDecodeError(f"{self.split}: DALI could not read the packed shards: {self._failed}; DALI said: "
                                 f"{_dali_said(err)} ('python -m dali_voc check {self.config.root}' verifies every "
                                 f"shard)")

    def _check_known(self, ids: torch.Tensor) -> None:
        """Every index the reader returned is a selected sample's (packed shards carry their
        own ``.id`` members: one that is not means shards and manifest disagree)."""
        unknown = [i for i in ids.tolist() if i not in self.samples_by_index]
        if unknown:
            self._failed = f"split index {unknown[0]} read from the data is not a selected sample"
            raise SampleDecodeError(f"{self.split}: the reader returned split index {unknown[0]}, which is not one of "
                                    f"the loader's samples: packed shards that disagree with their manifest ('python "
                                    f"-m dali_voc check {self.config.root}' verifies them)")

    def _check_sizes(self, outputs: dict, ids: torch.Tensor) -> None:
        """Image and label headers, as read for this batch, against the size the split was
        scanned with: a file replaced by one of another size is named, never cropped misaligned."""
        shapes = outputs["shapes"].numpy()
        label_shapes = outputs["label_shapes"].numpy()
        for slot, index in enumerate(ids.tolist()):
            sample = self.samples_by_index[index]
            scanned = (sample.height, sample.width)
            files = (("image", sample.image, shapes[slot]), ("label", sample.label, label_shapes[slot]))
            for kind, path, found in files:
                if tuple(int(v) for v in found) != scanned:
                    raise SampleDecodeError(f"{self.split}: {kind} {path} is now {int(found[0])}x{int(found[1])}, "
                                            f"but was {scanned[0]}x{scanned[1]} when the split was scanned (the file "
                                            f"changed after the loader was built)")

    def _unknown_color_error(self, batch: LabelBatch, slot: int) -> UnknownColorError:
        """Name the label file and the first unknown color inside its window (read again on
        the host: this happens once, on the way to an error)."""
        label = read_label(batch.paths[slot], self.table)
        first = crop_label(label, batch.geometry.sample(slot), self.config.crop_size,
                           self.table.ignore_index).first_unknown
        return UnknownColorError.in_label(batch.paths[slot], first or "an unknown color")

    def _host_slots(self, samples: list[Sample]) -> tuple[int, ...]:
        """Slots whose labels DALI's PNG decoder would get wrong (``LabelBatch.host_slots``):
        palettes shorter than their bit depth, and any palette label of a dataset whose labels
        are values (DALI outputs palette colors, the table maps indices)."""
        by_value = self.table.by_value
        return tuple(k for k, s in enumerate(samples) if s.label_short_palette or (by_value and s.label_palette))

    def _decode_labels(self, outputs: dict, ids: torch.Tensor) -> torch.Tensor:
        """Labels of one batch through the label decoder; unknown colors counted (on the
        device, read once per epoch) or, with ``unknown_colors="raise"``, named at once."""
        shapes = outputs["shapes"].numpy().astype(np.int32)
        samples = [self.samples_by_index[int(i)] for i in ids]
        whole = "scaled" in outputs  # geometric augmentation: labels leave DALI whole
        geometry = BatchGeometry.of(outputs["windows"].numpy(), outputs["scaled"].numpy() if whole else shapes,
                                    outputs["flips"].numpy() if "flips" in outputs else None)
        batch = LabelBatch(outputs["labels"], geometry, shapes, tuple(s.label for s in samples),
                           self._host_slots(samples), whole)
        decoded = self.labels.decode(batch)
        total = decoded.unknown.sum()
        self._unknown_device = total if self._unknown_device is None else self._unknown_device + total
        if self.config.unknown_colors == "raise":  # costs one host sync per batch, by request
            per_sample = decoded.unknown.cpu()
            if per_sample.any():
                raise self._unknown_color_error(batch, int(per_sample.nonzero()[0]))
        return decoded.labels

    def _next_outputs(self) -> Optional[dict]:
        """The next batch of the epoch, or None at its end (DALI then resets itself).

        ``next()`` rather than ``iter()``: DALI's ``__iter__`` tries a reset mid-epoch.

        A DALI failure (a file that does not decode) leaves its pipeline unusable; it is turned
        into :class:`~dali_voc.errors.SampleDecodeError` naming the file(s), and every later use
        of this loader says so instead of touching the dead pipeline."""
        if self._failed:
            raise RuntimeError(f"this loader stopped after an error ({self._failed}); build a new one")
        try:
            return next(self._iter)[0]
        except StopIteration:
            return None
        except RuntimeError as err:
            if self.shards is not None:
                raise self._shards_failed(err) from err
            found = diagnose_failure(err, self.selection.samples, self.table, self.resolved.workers,
                                     progress=self.config.verbose, decoder=self.file_check)
            self._failed = found or "DALI failure"
            if found is None:
                raise RuntimeError(f"DALI failed while loading {self.split!r}, and DALI's decoder and the label "
                                   f"checks accept every file of the split; DALI said: {err}") from err
            raise SampleDecodeError(f"{self.split}: {found} ({_SEE_CHECK})") from err

    @contextlib.contextmanager
    def _label_errors_named(self) -> Iterator[None]:
        """A label the label decoder cannot decode (damaged data, named by the parser, by
        nvCOMP's failure or by the kernels' flags) ends this loader like a DALI decode error:
        :class:`~dali_voc.errors.SampleDecodeError` naming the file, then no further use."""
        try:
            yield
        except PNGFormatError as err:
            self._failed = str(err)
            raise SampleDecodeError(f"{self.split}: {err} ({_SEE_CHECK})") from err
        except LabelDecoderError as err:  # the decoder failed, not a file: no later batch would be right
            self._failed = str(err)
            raise

    # -- epochs -------------------------------------------------------------------------------

    def _batches(self, start: int) -> Iterator[Batch]:
        # ``start`` batches were consumed before the state was saved; DALI's checkpoint resumes after them.
        # The record_function ranges name the main thread's phases in a torch.profiler trace
        # (python -m benchmarks.profile_loader); without a profiler they cost next to nothing.
        while True:
            with record_function("dali_voc::wait_for_dali"):
                outputs = self._next_outputs()
            if outputs is None:
                break
            ids = outputs["image_ids"].flatten()
            with record_function("dali_voc::check_batch"):
                self._check_known(ids)
                self._check_pairing(ids, outputs["label_ids"].flatten())
                if len(ids):
                    self._check_sizes(outputs, ids)
            if len(ids) == 0:  # a shorter shard's empty last batch (see batches_per_epoch)
                yield self._empty_batch(outputs["images"].device)
                continue
            with self._label_errors_named(), record_function("dali_voc::decode_labels"):
                labels = self._decode_labels(outputs, ids)
            scaled = outputs["scaled"] if "scaled" in outputs else outputs["shapes"]
            flips = (outputs["flips"].flatten() if "flips" in outputs else torch.zeros(len(ids))).to(torch.bool)
            yield Batch(outputs["images"], labels, outputs["windows"].to(torch.int32), ids.to(torch.int64),
                        scaled.to(torch.int32), flips)
        with self._label_errors_named():
            self.labels.finish()
        self._collect_unknown()  # one sync per epoch

    def _abandon_epoch(self) -> None:
        while self._next_outputs() is not None:
            pass

    def _set_next_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            raise LoaderStateError(f"the DALI loader runs its epochs in order and its next epoch is {self.epoch}, "
                                   f"not {epoch}; to continue a run, save loader.state_dict() and load it into a "
                                   f"new loader with load_state_dict()")

    def _backend_state(self) -> dict[str, Any]:
        with self._label_errors_named():
            self.labels.finish()  # a damaged label of a batch already yielded is named now, not lost
        self._collect_unknown()
        return {"dali_checkpoint": base64.b64encode(self._iter.checkpoints()[0]).decode("ascii")}

    def _identity(self) -> dict[str, Any]:
        # DALI's checkpoint restores generator states operator by operator: a state saved by a
        # graph with other random operators (or before the version was recorded) is refused.
        return {**super()._identity(), "dali_graph": GRAPH_VERSION}

    def _prepare_backend_state(self, state: Any) -> tuple[Any, Any]:
        # The restored pipeline is built beside the current one: a checkpoint DALI cannot
        # restore is refused while this loader still runs its own.
        text = state.get("dali_checkpoint")
        if not isinstance(text, str):
            raise LoaderStateError(f"the state's 'dali_checkpoint' must be base64 text, got {type(text).__name__}")
        try:
            checkpoint = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as err:
            raise LoaderStateError(f"the state's 'dali_checkpoint' is not base64 ({err})") from err
        try:
            return self._new_pipeline(checkpoint)
        except Exception as err:  # DALI raises RuntimeError with its C++ context
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LoaderStateError(f"the state's 'dali_checkpoint' cannot be restored by DALI "
                                   f"(damaged, or saved by another pipeline): {first}") from None

    def _load_backend_state(self, prepared: tuple[Any, Any]) -> None:
        self._release()
        self.pipeline, self._iter = prepared
        # A fresh decoder: flags pending from batches before the restore belong to another run.
        self.labels = self._new_label_decoder()
        self._unknown_device = None
        self._failed = None
