"""The timing harness: warm-up, timed repetitions, medians, memory peaks.

A repetition consumes batches the way a training loop does: each batch is touched by a small
kernel on the current CUDA stream (so the stream waits for the batch's data, as a training step
would) and nothing waits for the device in between; the device is synchronized once at the
start and once at the end of the timed window, so all GPU work of the window's batches is
inside it. (Synchronizing after every batch would also wait for the decoding DALI has queued for
later batches, which a training loop never does, and serialize the loader.) Device memory is
read at the end of each repetition: DALI's and torch's pools only grow, so that is their peak.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Optional

import torch

from dali_voc.progress import progress_bar


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def touch(batch: object) -> None:
    """Queue a tiny read of each CUDA tensor of ``batch`` on the current stream (a training step
    reads its batch there); no host wait. Batches without torch tensors (a DALI TensorList) are
    covered by the synchronization at the end of the window."""
    items = batch if isinstance(batch, (tuple, list)) else (batch,)
    for item in items:
        if isinstance(item, torch.Tensor) and item.is_cuda and item.numel():
            item.reshape(-1)[-1:].sum()


def endless(make_epoch: Callable[[], Iterator]) -> Iterator:
    """Batches from consecutive epochs without ever breaking an epoch (a broken DALI epoch
    would be drained, i.e. timed, later)."""
    while True:
        yield from make_epoch()


def peak_rss_mb() -> float:
    """Peak resident memory of this process plus the largest peak of its finished children
    (DataLoader workers), in MiB. Linux reports the children's figure as a max, not a sum,
    so with several workers this is a lower bound of the row's total."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024.0  # ru_maxrss is KiB on Linux


def _tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant (threads' children included), from /proc."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:  # gone meanwhile
            continue
    return pids


def tree_memory_mb(root: Optional[int] = None) -> tuple[float, float]:
    """``(PSS, RSS)`` in MiB summed over process ``root`` (default: this one) and its live
    descendants (DataLoader workers), from ``/proc/<pid>/smaps_rollup``. PSS shares each page
    among the processes mapping it, so forked workers' copy-on-write pages count once: the
    row's real footprint. RSS sums count shared pages once per process. (0, 0) off Linux."""
    usage = _tree_rollup(root)
    return usage.get("Pss", 0) / 1024.0, usage.get("Rss", 0) / 1024.0


def _tree_rollup(root: Optional[int] = None) -> dict[str, int]:
    """The ``smaps_rollup`` fields (KiB) summed over ``root`` and its live descendants."""
    total: dict[str, int] = {}
    for pid in _tree_pids(os.getpid() if root is None else root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in ("Pss", "Rss", "Pss_Shmem"):
                        total[key] = total.get(key, 0) + int(value.split()[0])
        except (OSError, ValueError):
            continue
    return total


def machine_shmem_mb() -> float:
    """The machine's shared memory in use (``Shmem`` of ``/proc/meminfo``), MiB; 0 off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Shmem:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def tree_footprint_mb(shmem_before_mb: float, root: Optional[int] = None) -> tuple[float, float]:
    """``(PSS, footprint)`` in MiB of ``root``'s process tree (see :func:`tree_memory_mb`).

    The footprint adds to the tree's PSS the shared memory that no process of the tree maps
    right now: a ``DataLoader``'s batches travel from workers to the main process as
    shared-memory files, and while one waits in the queue the worker has already unmapped it
    and the main process has not mapped it yet, so no process's PSS holds it, though it is in
    memory all the same. It is the growth of the machine's ``Shmem`` since
    ``shmem_before_mb`` less the shared memory the tree maps (its ``Pss_Shmem``): it assumes
    no other program on the machine grows its shared memory meanwhile."""
    pss, _, footprint = _tree_usage_mb(_tree_rollup(root), shmem_before_mb)
    return pss, footprint


def _tree_usage_mb(usage: dict[str, int], shmem_before_mb: float) -> tuple[float, float, float]:
    """``(PSS, RSS, footprint)`` in MiB from one :func:`_tree_rollup` reading."""
    pss, rss = usage.get("Pss", 0) / 1024.0, usage.get("Rss", 0) / 1024.0
    unmapped = max(0.0, machine_shmem_mb() - shmem_before_mb - usage.get("Pss_Shmem", 0) / 1024.0)
    return pss, rss, pss + unmapped


def descendant_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) so far of each live descendant of this process (DataLoader
    workers), from ``/proc/<pid>/stat``; empty off Linux."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for pid in _tree_pids(os.getpid())[1:]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            continue
    return cpu


class TreeCPU:
    """CPU seconds the whole process tree spends between :meth:`start` and :meth:`stop`: this
    process, the children it reaps meanwhile (``os.times``) and the descendants still alive
    at the end (``/proc``), each counted from the start only. (``os.times`` alone misses
    persistent DataLoader workers, which are never reaped while a row runs.)"""

    def start(self) -> "TreeCPU":
        self._times, self._live = os.times(), descendant_cpu_seconds()
        return self

    def stop(self) -> float:
        times, live = os.times(), descendant_cpu_seconds()
        own = (times.user - self._times.user) + (times.system - self._times.system)
        reaped = (times.children_user - self._times.children_user) + \
            (times.children_system - self._times.children_system)
        alive = sum(cpu - self._live.get(pid, 0.0) for pid, cpu in live.items())
        before = sum(cpu for pid, cpu in self._live.items() if pid not in live)  # reaped: counted whole above
        return own + reaped + alive - before


class TreeMemoryPeak:
    """Samples this process tree's memory on a daemon thread every ``interval`` seconds and
    keeps the peaks between :meth:`start` and :meth:`stop`: ``peak_pss_mb`` and
    ``peak_rss_mb`` (:func:`tree_memory_mb`), ``peak_footprint_mb`` (:func:`tree_footprint_mb`,
    shared memory counted from the machine's level at construction)."""

    def __init__(self, interval: float = 0.25):
        import threading
        self.interval, self.peak_pss_mb, self.peak_rss_mb, self.peak_footprint_mb = interval, 0.0, 0.0, 0.0
        self._shmem_before_mb = machine_shmem_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def _sample(self) -> None:
        pss, rss, footprint = _tree_usage_mb(_tree_rollup(), self._shmem_before_mb)  # one reading: consistent
        self.peak_pss_mb, self.peak_rss_mb = max(self.peak_pss_mb, pss), max(self.peak_rss_mb, rss)
        self.peak_footprint_mb = max(self.peak_footprint_mb, footprint)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> "TreeMemoryPeak":
        self._thread.start()
        return self

    def stop(self) -> "TreeMemoryPeak":
        self._stop.set()
        self._thread.join()
        self._sample()
        return self


def gpu_used_mb() -> Optional[float]:
    """Device memory in use by everyone on the current GPU (MiB), or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


@dataclass
class Measurement:
    """Figures of one benchmark row (one configuration, one process)."""

    images_per_s_median: float
    images_per_s_min: float
    images_per_s_max: float
    repetitions: list[float]
    first_batch_s: float
    peak_rss_mb: float
    peak_gpu_mb: Optional[float]
    cpu_threads: int
    cpu_busy_cores: float
    batches_timed: int
    #: peak PSS / RSS of the row's whole process tree (the loader's workers included), sampled
    #: from the first batch's request to the end of the last repetition (:class:`TreeMemoryPeak`)
    peak_tree_pss_mb: float = 0.0
    peak_tree_rss_mb: float = 0.0
    #: peak of the tree's PSS plus the shared memory in flight between its processes that none
    #: of them maps (:func:`tree_footprint_mb`: a DataLoader's queued batches), same samples
    peak_tree_footprint_mb: float = 0.0
    #: CPU milliseconds the row's process tree spent per image over the timed repetitions
    #: (:class:`TreeCPU`): what a loader costs, less sensitive than images/s to other work
    #: sharing the machine
    cpu_ms_per_image: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def measure(start: Callable[[], Callable[[], Iterator]], batch_images: Callable[[object], int], *,
            cuda: bool, threads: int, warmup_batches: int, repeats: int, seconds: float,
            progress: bool = True) -> Measurement:
    """Time a loader.

    Args:
        start: builds the loader (timed: it is part of the time to the first batch) and
            returns a callable that yields one epoch of batches.
        batch_images: images in a batch.
        cuda: touch every batch on the current stream; synchronize at the start and end of
            each timed window.
        threads: CPU threads/workers the configuration uses (reported as is).
        warmup_batches: batches consumed before timing.
        repeats, seconds: timed repetitions of at least ``seconds`` each.
    """
    gpu_base = gpu_used_mb()
    gpu_peak = gpu_base
    memory = TreeMemoryPeak().start()
    t0 = time.perf_counter()
    make_epoch = start()
    batches = endless(make_epoch)
    next(batches)
    _sync(cuda)
    first_batch_s = time.perf_counter() - t0
    for _ in progress_bar(range(warmup_batches), desc="warm-up", unit="batch", leave=False, disable=not progress):
        next(batches)
    rates = []
    timed = 0
    total_images = 0
    tree_cpu = TreeCPU().start()
    wall0 = time.perf_counter()
    for _ in range(repeats):
        _sync(cuda)
        begin = time.perf_counter()
        images = 0
        while True:
            batch = next(batches)
            images += batch_images(batch)
            total_images += batch_images(batch)
            timed += 1
            if cuda:
                touch(batch)
            if time.perf_counter() - begin >= seconds:  # host clock only: no wait for the device here
                break
        _sync(cuda)
        elapsed = time.perf_counter() - begin
        if cuda:
            gpu_peak = max(gpu_peak or 0.0, gpu_used_mb() or 0.0)
        rates.append(images / elapsed)
    cpu = tree_cpu.stop()
    wall = time.perf_counter() - wall0
    memory.stop()
    return Measurement(
        images_per_s_median=statistics.median(rates), images_per_s_min=min(rates), images_per_s_max=max(rates),
        repetitions=rates, first_batch_s=first_batch_s, peak_rss_mb=peak_rss_mb(),
        peak_gpu_mb=None if gpu_base is None else (gpu_peak or 0.0) - gpu_base,
        cpu_threads=threads, cpu_busy_cores=cpu / wall if wall > 0 else 0.0, batches_timed=timed,
        peak_tree_pss_mb=memory.peak_pss_mb, peak_tree_rss_mb=memory.peak_rss_mb,
        peak_tree_footprint_mb=memory.peak_footprint_mb,
        cpu_ms_per_image=1e3 * cpu / max(total_images, 1))
