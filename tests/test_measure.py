"""The timing harness's structure (not its speed): repetitions, counts, and that batches are
consumed in order across epochs without breaking one."""

import torch

from benchmarks.measure import measure, touch


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
