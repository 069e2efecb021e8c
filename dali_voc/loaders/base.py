"""What both loaders share: epochs, ``len``, resumable state, ``close``, the batch they yield.

A loader is an iterable of batches, one epoch per ``for`` loop, like a torch ``DataLoader``:

* ``len(loader)``: batches per epoch (the same on every shard, see :func:`batches_per_epoch`);
* ``set_epoch(n)`` before a loop chooses the epoch it runs (the ``DistributedSampler``
  convention); without it, epochs follow each other 0, 1, 2, ...;
* breaking out of a loop abandons the rest of that epoch; the next loop starts the next one;
* ``state_dict()`` / ``load_state_dict()`` resume a run in the middle of an epoch with the same
  remaining batches as an uninterrupted run;
* ``close()`` (or ``with loader:``) releases threads, worker processes and device memory.

Batches are ``(X, Y)`` or, with ``return_meta=True``, a :class:`Batch` that also carries each
sample's crop window, split index and augmentation draws; torch tensors, or JAX / TensorFlow
arrays (:mod:`dali_voc.loaders.frameworks`). The image-only color jitter is applied here, to the
batches either backend assembled (:mod:`dali_voc.loaders.photometric`).
"""

from __future__ import annotations

import abc
import hashlib
import json
from typing import Any, Iterator, Mapping, Optional, Union

import torch
from torch.profiler import record_function

from ..batch import Batch
from ..config import LoaderConfig
from ..errors import LoaderStateError, OptionError
from .frameworks import batch_converter
from ..log import say
from .photometric import IDENTITY, apply_jitter, draw_jitter
from ..resolve import Resolved
from ..datasets.scan import Selection
from ..geometry.windows import source_pixels

#: Version of the dict :meth:`SegmentationLoader.state_dict` returns.
STATE_FORMAT = 1
#: Largest epoch and pixel count a state may hold (an int64, as the seeds).
MAX_STATE_COUNT = 2**63 - 1


def field_digests(state: Mapping[str, Any]) -> dict[str, str]:
    """A short SHA-256 of each field of a state (but ``digests``), saved with it: a field damaged
    or edited afterwards (a flipped byte in DALI's checkpoint that still parses, a counter
    changed within its range) no longer matches, and is named."""
    return {key: hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:16]
            for key, value in state.items() if key != "digests"}


def _check_digests(state: Mapping[str, Any]) -> None:
    """Refuse a state whose fields differ from the digests saved with them, naming the fields.
    A state without digests (saved before they were recorded) is taken as it is."""
    saved = state.get("digests")
    if saved is None:
        return
    if not isinstance(saved, Mapping):
        raise LoaderStateError(f"the state's 'digests' must be a dict, got {type(saved).__name__}")
    now = field_digests(state)
    changed = sorted(key for key in set(saved) | set(now) if saved.get(key) != now.get(key))
    if changed:
        raise LoaderStateError(f"the state's field(s) {', '.join(repr(k) for k in changed)} changed after "
                               f"state_dict() saved them (damaged or edited; see 'digests')")


def _state_int(state: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    """``state[key]`` when it is an int in ``[lo, hi]``; else :class:`LoaderStateError` naming it."""
    if key not in state:
        raise LoaderStateError(f"the state has no {key!r} field")
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise LoaderStateError(f"the state's {key!r} must be an int, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise LoaderStateError(f"the state's {key!r} is {value}, outside [{lo}, {hi}] for this loader")
    return value


def shard_sizes(kept: int, num_shards: int) -> list[int]:
    """Samples of each shard: shard ``k`` takes ``[k*N//n, (k+1)*N//n)`` of the epoch's order."""
    return [(k + 1) * kept // num_shards - k * kept // num_shards for k in range(num_shards)]


def batches_per_epoch(kept: int, num_shards: int, batch_size: int, last_batch: str) -> int:
    """Batches every shard yields per epoch, the same on all of them (a rank with one batch
    more would wait forever in an all-reduce): with ``"drop"``, full batches of the smallest
    shard; with ``"partial"``, all batches of the largest. Under ``"partial"`` the last batch
    may be short, and on a shard one sample shorter than the largest it may be empty (size 0),
    as DALI's iterator does: every rank still steps the same number of times."""
    sizes = shard_sizes(kept, num_shards)
    if last_batch == "drop":
        return min(sizes) // batch_size
    return -(-max(sizes) // batch_size)


class SegmentationLoader(abc.ABC):
    """The part of :class:`~dali_voc.loaders.dali.DALILoader` and
    :class:`~dali_voc.loaders.reference.ReferenceLoader` that does not depend on the backend.

    Subclasses set :attr:`selection` before calling :meth:`_check_batch_count`, and implement
    :meth:`_batches` (one epoch from a given batch on), :meth:`_where` (a phrase for
    ``repr``), and may extend :meth:`_abandon_epoch`, :meth:`_release`,
    :meth:`_backend_state` and :meth:`_load_backend_state`.
    """

    def __init__(self, config: LoaderConfig, split: str, shuffle: bool, resolved: Resolved):
        self.config = config
        self.split = split
        self.shuffle = shuffle
        self.resolved = resolved
        self.selection: Selection
        #: Index of the epoch in progress, or of the next one between loops.
        self.epoch = 0
        self._in_epoch = False
        self._batches_done = 0
        self._resume_at: Optional[int] = None
        self._closed = False
        self._unknown_pixels = 0
        self._output = batch_converter(resolved, config.return_meta)

    # -- what subclasses provide --------------------------------------------------------------

    @abc.abstractmethod
    def _batches(self, start: int) -> Iterator[Batch]:
        """The batches of epoch :attr:`epoch`, from batch index ``start`` on."""

    @abc.abstractmethod
    def _where(self) -> str:
        """Where and how the loader runs, e.g. ``"reference loader (PIL + NumPy, 4 workers, CPU)"``."""

    def _abandon_epoch(self) -> None:
        """The user broke out of epoch :attr:`epoch`; the next loop starts the next epoch."""

    def _release(self) -> None:
        """Free threads, processes and device memory (``close``)."""

    def _skipped_at_decode(self) -> list[str]:
        """Names of samples skipped while decoding the epoch that just ended."""
        return []

    def _backend_state(self) -> dict[str, Any]:
        return {}

    def _prepare_backend_state(self, state: Mapping[str, Any]) -> Any:
        """Check the backend's fields of ``state`` and prepare what :meth:`_load_backend_state`
        takes over, changing nothing of this loader (raises :class:`LoaderStateError` naming
        the field)."""
        return None

    def _load_backend_state(self, prepared: Any) -> None:
        """Take over what :meth:`_prepare_backend_state` prepared (cannot fail)."""

    # -- the public surface -------------------------------------------------------------------

    @property
    def unknown_pixels(self) -> int:
        """Label pixels of unknown color mapped to ``ignore_index`` so far."""
        return self._unknown_pixels

    def __len__(self) -> int:
        return batches_per_epoch(self.selection.kept, self.resolved.num_shards, self.config.batch_size,
                                 self.config.last_batch)

    def __iter__(self) -> Iterator[Union[Batch, tuple[torch.Tensor, torch.Tensor]]]:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} of {self.split!r} is closed")
        if self._resume_at is not None:
            start, self._resume_at = self._resume_at, None
        else:
            if self._in_epoch:  # the previous loop broke early
                self._abandon_epoch()
                self.epoch += 1
            start = 0
        self._in_epoch = True
        self._batches_done = start
        for batch in self._batches(start):
            self._batches_done += 1  # before the yield: state_dict() in the loop body counts this batch
            with record_function("dali_voc::assemble"):  # a named phase in a torch.profiler trace
                out = self._output(self._jittered(batch))
            yield out
        self._in_epoch = False
        self._batches_done = 0
        self._report_skips()
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Run epoch ``epoch`` (0-based) in the next loop: its order and crop windows. After
        :meth:`load_state_dict`, setting the saved epoch continues it where it stopped.

        Raises:
            LoaderStateError: when the backend cannot run that epoch next (the DALI loader
                runs its epochs in order; resume a run with :meth:`load_state_dict`).
        """
        if epoch < 0:
            raise LoaderStateError(f"epoch must be >= 0, got {epoch}")
        if self._resume_at is not None and epoch == self.epoch:
            return  # the epoch a loaded state stopped in: the next loop finishes it
        if self._in_epoch:
            self._abandon_epoch()
            self._in_epoch = False
            self.epoch += 1
        self._set_next_epoch(epoch)
        self._resume_at = None

    def _set_next_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands: the epoch, the batches of it already yielded, counters and
        the backend's own state (DALI's checkpoint, base64 text). Plain Python values: it goes
        into ``torch.save`` or ``json.dump`` as is."""
        batches_done = self._batches_done if self._in_epoch else 0
        if self._resume_at is not None:
            batches_done = self._resume_at
        state = {"format": STATE_FORMAT, "loader": type(self).__name__, **self._identity(),
                 "epoch": self.epoch, "batches_done": batches_done}
        state.update(self._backend_state())  # may finish pending device work, so it comes first
        state["unknown_pixels"] = self.unknown_pixels
        state["digests"] = field_digests(state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a loader built with the same
        config and split): the next loop yields the rest of the saved epoch.

        Every field is checked first (:meth:`_checked_state`); a refused state leaves the
        loader exactly as it was.

        Raises:
            LoaderStateError: naming the field that is missing, of the wrong type, out of
                range or damaged, or what differs when ``state`` belongs to another loader.
        """
        counters, backend = self._checked_state(state)
        self._in_epoch = False  # the backend state replaces whatever epoch was in progress
        self._load_backend_state(backend)
        self.epoch = counters["epoch"]
        self._resume_at = counters["batches_done"] or None
        self._unknown_pixels = counters["unknown_pixels"]

    def _checked_state(self, state: Any) -> tuple[dict[str, int], Any]:
        """The one validation step of a state, changing nothing: its counters (``epoch``,
        ``batches_done`` within this loader's epoch, ``unknown_pixels``) as ints, and what
        :meth:`_prepare_backend_state` made of the backend's fields.

        Raises:
            LoaderStateError: naming the first field that is wrong.
        """
        if not isinstance(state, Mapping):
            raise LoaderStateError(f"a loader state is a dict (from state_dict()), got {type(state).__name__}")
        if state.get("format") != STATE_FORMAT or state.get("loader") != type(self).__name__:
            raise LoaderStateError(f"not a {type(self).__name__} state (format {state.get('format')!r}, "
                                   f"loader {state.get('loader')!r})")
        mine = self._identity()
        differ = [f"{key}: saved {state.get(key)!r}, this loader {value!r}"
                  for key, value in mine.items() if state.get(key) != value]
        if differ:
            raise LoaderStateError("the state belongs to another loader: " + "; ".join(differ))
        counters = {"epoch": _state_int(state, "epoch", 0, MAX_STATE_COUNT),
                    "batches_done": _state_int(state, "batches_done", 0, len(self)),
                    "unknown_pixels": _state_int(state, "unknown_pixels", 0, MAX_STATE_COUNT)}
        _check_digests(state)
        return counters, self._prepare_backend_state(state)

    def close(self) -> None:
        """Release the loader's threads, worker processes and device memory. Idempotent."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> "SegmentationLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        shard = (f", shard {self.resolved.shard_id} of {self.resolved.num_shards}"
                 if self.resolved.num_shards > 1 else "")
        return (f"{type(self).__name__}({self.selection.describe(self.split, self.config.crop_size)}; "
                f"{len(self)} batches of {self.config.batch_size}{shard}; {self._where()})")

    # -- helpers for subclasses ---------------------------------------------------------------

    def _jittered(self, batch: Batch) -> Batch:
        """``batch`` with the image-only color jitter applied (the same code for every backend,
        on the batch's device) and its factors recorded; identity factors without jitter."""
        ranges = self.config.augmentation.jitter
        size = len(batch.ids)
        if ranges is None or size == 0:
            return batch._replace(jitter=torch.tensor([IDENTITY] * size, dtype=torch.float32).reshape(size, 4))
        factors = draw_jitter(self.config.seed, self.epoch, batch.ids.tolist(), ranges)
        scaled = batch.scaled.numpy()
        _, _, row_ok, col_ok = source_pixels(batch.windows.numpy(), scaled, self.config.crop_size, scaled,
                                             batch.flips.numpy())
        images = apply_jitter(batch.images, factors, row_ok, col_ok)
        return batch._replace(images=images, jitter=torch.from_numpy(factors))

    def _empty_batch(self, device: Union[str, torch.device] = "cpu") -> Batch:
        """A batch of no sample (see :func:`batches_per_epoch`), shaped like the others."""
        h, w = self.config.crop_size
        return Batch(torch.empty((0, 3, h, w), dtype=torch.float32, device=device),
                     torch.empty((0, h, w), dtype=getattr(torch, self.resolved.label_dtype), device=device),
                     torch.empty((0, 2), dtype=torch.int32), torch.empty(0, dtype=torch.int64),
                     torch.empty((0, 2), dtype=torch.int32), torch.empty(0, dtype=torch.bool))

    def _identity(self) -> dict[str, Any]:
        """What a saved state must match to be loaded here."""
        return {"dataset": self.config.dataset, "split": self.split, "shuffle": self.shuffle, "seed": self.config.seed,
                "batch_size": self.config.batch_size, "crop_size": list(self.config.crop_size),
                "shard": [self.resolved.shard_id, self.resolved.num_shards],
                "samples": [s.index for s in self.selection.samples]}

    def _check_batch_count(self) -> None:
        """Refuse a loader whose epochs would hold no batch, or with a shard holding no sample,
        or (whole images) an image larger than the canvas (same rules and messages on both
        backends)."""
        if self.config.whole_images:
            canvas_h, canvas_w = self.config.crop_size
            larger = [s for s in self.selection.samples if s.height > canvas_h or s.width > canvas_w]
            if larger:
                shown = ", ".join(f"{s.image} ({s.height}x{s.width})" for s in larger[:3])
                raise OptionError(f"{self.split}: {len(larger)} image(s) larger than the {canvas_h}x{canvas_w} canvas "
                                  f"of whole-image loading, e.g. {shown}; set a larger whole_canvas (or crop_size)")
        if self.selection.kept < self.resolved.num_shards:
            raise OptionError(f"{self.split}: {self.resolved.num_shards} shards but only {self.selection.kept} "
                              f"sample(s) ({self.selection.describe(self.split, self.config.crop_size)}): every "
                              f"shard needs at least one; use fewer ranks or a larger split")
        if len(self) == 0:
            sizes = shard_sizes(self.selection.kept, self.resolved.num_shards)
            where = (f"the smallest of {self.resolved.num_shards} shards holds {min(sizes)}"
                     if self.resolved.num_shards > 1 else f"it holds {self.selection.kept}")
            raise OptionError(f"{self.split}: batch_size={self.config.batch_size} is larger than the split's "
                              f"samples ({where}, {self.selection.describe(self.split, self.config.crop_size)}); "
                              f"with last_batch='drop' no epoch would hold a batch: use a smaller batch_size or "
                              f"last_batch='partial'")

    def _report_skips(self) -> None:
        at_decode = self._skipped_at_decode()
        if not (self.selection.skipped or at_decode):
            return
        skipped = [name for name, _ in self.selection.skipped] + at_decode
        names = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        say(self.config.verbose, f"{self.split}: epoch {self.epoch}: {len(skipped)} unreadable sample(s) skipped "
                                 f"({names}; {len(self.selection.skipped)} found at construction, "
                                 f"{len(at_decode)} while decoding)")
