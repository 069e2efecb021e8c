"""The timing harness's structure (not its speed): repetitions, counts, and that batches are
consumed in order across epochs without breaking one."""

import mmap
import os

import pytest
import torch

from benchmarks.measure import machine_shmem_mb, measure, touch, tree_footprint_mb


def test_repetitions_consume_batches_across_epochs_in_order():
    seen = []

    def start():
        def epoch():
            for k in range(3):
                seen.append(k)
                yield torch.zeros(2, 3), torch.zeros(2)
        return epoch

    result = measure(start, lambda batch: int(batch[0].shape[0]), cuda=False, threads=1, warmup_batches=2,
                     repeats=3, seconds=0.0, progress=False)
    assert len(result.repetitions) == 3 and result.batches_timed == 3  # one batch fills a 0-second window
    assert result.images_per_s_min <= result.images_per_s_median <= result.images_per_s_max
    assert seen == [0, 1, 2, 0, 1, 2]  # first batch, 2 warm-up, 3 timed: whole epochs in order
    touch((torch.zeros(2), "not a tensor", torch.zeros(0)))  # CPU tensors and others: nothing to queue


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="reads Linux's /proc")
def test_the_footprint_counts_shared_memory_no_process_maps_once_and_mapped_memory_once():
    """A DataLoader batch waiting in the queue is a shared-memory file that no process maps:
    PSS misses it, the footprint counts it; once mapped (and touched) it counts once."""
    size = 64 << 20
    before = machine_shmem_mb()
    fd = os.memfd_create("footprint-test")
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as view:  # written, then unmapped: in memory, mapped by nobody
            view[:] = b"\1" * size
        pss, footprint = tree_footprint_mb(before)
        assert abs((footprint - pss) - 64) < 8, (pss, footprint)
        with mmap.mmap(fd, size) as view:
            view.read()  # mapped and touched: in this process's PSS now, not counted twice
            pss_mapped, footprint_mapped = tree_footprint_mb(before)
        assert pss_mapped - pss > 56 and abs(footprint_mapped - footprint) < 8, (pss_mapped, footprint_mapped)
    finally:
        os.close(fd)
