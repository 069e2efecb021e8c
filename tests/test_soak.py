"""Soak: many epochs over a small tree; memory flat after the first epochs, exact coverage."""

import statistics

import pytest

from dali_voc.config import LoaderConfig
from tests.conftest import require_dali

EPOCHS = 60
WARMUP_EPOCHS = 20  # measured here: the reference path's RSS settles within ~20 epochs (allocator)
# Median of the last 15 epochs vs epochs 20-34. Epoch-to-epoch noise measured here: +-15 MiB
# (DALI); a leak of one batch per epoch (5.5 MiB) would add ~150 MiB over this window.
GROWTH_LIMIT_MIB = 20


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _soak(loader, epoch_ids, expected_ids):
    """Run the epochs; ``epoch_ids()`` returns the sample ids the epoch just delivered."""
    rss = []
    for epoch in range(EPOCHS):
        count = sum(x.shape[0] for x, _ in loader)
        ids = epoch_ids()
        assert sorted(ids) == expected_ids and count == len(ids), f"epoch {epoch}: {ids}"
        rss.append(_rss_mib())
    return rss


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_soak_memory_flat_and_every_epoch_complete(stripe_tree, backend):
    config = LoaderConfig(root=stripe_tree, batch_size=3, last_batch="partial", small_images="pad",
                          num_workers=0 if backend == "reference" else 2, verbose=False, device="cpu")
    if backend == "dali":
        require_dali()
        from dali_voc.loader import DALILoader
        loader = DALILoader(config, "train", shuffle=True)
        seen: list[int] = []
        check = loader._check_pairing

        def spy(image_ids, label_ids):  # the loader's own per-batch pairing check, recording ids
            check(image_ids, label_ids)
            seen.extend(image_ids.flatten().tolist())

        loader._check_pairing = spy

        def epoch_ids():
            ids = list(seen)
            seen.clear()
            return ids
    else:
        from dali_voc.reference import ReferenceLoader
        loader = ReferenceLoader(config, "train", shuffle=True)

        def epoch_ids():  # the epoch's order, as the sampler gave it to the DataLoader
            return [loader.dataset.samples[i].index for i in loader.sampler]
    rss = _soak(loader, epoch_ids, expected_ids=list(range(8)))
    early = statistics.median(rss[WARMUP_EPOCHS:WARMUP_EPOCHS + 15])
    late = statistics.median(rss[-15:])
    assert late - early < GROWTH_LIMIT_MIB, [round(r) for r in rss]


@pytest.mark.gpu
@pytest.mark.parametrize("decoder", ["dali", "nvcomp"])
def test_gpu_soak_cuda_memory_flat(stripe_tree, decoder):
    """On the GPU: device memory in use stays flat after warm-up, every epoch complete."""
    import torch
    require_dali()
    from dali_voc.loader import DALILoader
    config = LoaderConfig(root=stripe_tree, batch_size=3, last_batch="partial", small_images="pad",
                          verbose=False, device="gpu", label_decoder=decoder)
    loader = DALILoader(config, "train", shuffle=True)
    used = []
    for epoch in range(EPOCHS):
        assert sum(x.shape[0] for x, _ in loader) == 8, f"epoch {epoch}"
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        used.append((total - free) / 2**20)
    early = statistics.median(used[WARMUP_EPOCHS:WARMUP_EPOCHS + 15])
    late = statistics.median(used[-15:])
    assert late - early < GROWTH_LIMIT_MIB, [round(u) for u in used]
