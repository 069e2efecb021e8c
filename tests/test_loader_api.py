"""What both loaders offer a PyTorch user, checked the same way on the reference path and on
DALI's CPU operators: resuming mid-epoch, ``set_epoch``, ``return_meta``, ``repr``,
``close`` / ``with``, per-shard windows, equal batch counts, and options refused."""

import json
from dataclasses import replace

import pytest
import torch

from dali_voc import Batch, LoaderStateError, OptionError, load_data_voc, resolve
from dali_voc.loaders.base import batches_per_epoch, shard_sizes
from tests.helpers import class_stripes, config_for, loader_for, make_tree

BACKENDS = ["reference", "dali"]


def _batches(loader, epochs: int) -> list[Batch]:
    """Every batch of ``epochs`` loops, copied (DALI may reuse its buffers)."""
    return [Batch(*(t.clone() for t in batch)) for _ in range(epochs) for batch in loader]


def _same(a: list[Batch], b: list[Batch]) -> bool:
    return len(a) == len(b) and all(all(torch.equal(s, t) for s, t in zip(x, y)) for x, y in zip(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stop_after", [1, pytest.param(3, marks=pytest.mark.slow), 4])  # mid-epoch, the end
def test_resume_mid_epoch_gives_the_remaining_batches_of_an_uninterrupted_run(stripe_tree, backend, stop_after):
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", return_meta=True)
    full = _batches(loader_for(config, shuffle=True), epochs=2)  # 4 batches per epoch
    first = loader_for(config, shuffle=True)
    done = []
    for batch in first:
        done.append(Batch(*(t.clone() for t in batch)))
        if len(done) == stop_after:
            state = first.state_dict()
            break
    first.close()
    assert state["epoch"] == 0 and state["batches_done"] == stop_after
    resumed = loader_for(config, shuffle=True)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # the state survives JSON
    rest = _batches(resumed, epochs=2 if stop_after == 4 else 1)
    rest += [] if stop_after == 4 else _batches(resumed, epochs=1)
    assert _same(done + rest, full[:len(done) + len(rest)]) and len(done) + len(rest) == len(full)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_training_loop_that_sets_the_epoch_resumes_where_the_state_stopped(stripe_tree, backend):
    """The DistributedSampler-style loop after a restart: set_epoch(saved epoch) continues it."""
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", return_meta=True)
    full = _batches(loader_for(config, shuffle=True), epochs=2)
    first = loader_for(config, shuffle=True)
    first.set_epoch(0)
    first_two = [Batch(*(t.clone() for t in b)) for _, b in zip(range(2), first)]
    resumed = loader_for(config, shuffle=True)
    resumed.load_state_dict(first.state_dict())
    rest = []
    for epoch in range(resumed.state_dict()["epoch"], 2):
        resumed.set_epoch(epoch)
        rest += [Batch(*(t.clone() for t in b)) for b in resumed]
    assert _same(first_two + rest, full)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_from_another_loader_is_refused_naming_the_difference(stripe_tree, backend):
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad")
    state = loader_for(config, shuffle=True).state_dict()
    other = loader_for(replace(config, seed=9), shuffle=True)
    with pytest.raises(LoaderStateError, match="seed: saved 0, this loader 9"):
        other.load_state_dict(state)


def test_a_dali_state_from_another_graph_version_is_refused(stripe_tree):
    """A DALI checkpoint restores generator states operator by operator: one saved by a graph
    whose random operators differ (or by a release that did not record the version) would
    resume with other windows, so it is refused, naming both versions."""
    from dali_voc.loaders.pipeline import GRAPH_VERSION
    config = config_for(stripe_tree, "dali", batch_size=2, small_images="pad")
    state = loader_for(config, shuffle=True).state_dict()
    assert state["dali_graph"] == GRAPH_VERSION
    resumed = loader_for(config, shuffle=True)
    resumed.load_state_dict(dict(state))  # the same version is accepted
    older = {**state, "dali_graph": GRAPH_VERSION - 1}
    with pytest.raises(LoaderStateError, match=f"dali_graph: saved {GRAPH_VERSION - 1}, this loader {GRAPH_VERSION}"):
        loader_for(config, shuffle=True).load_state_dict(older)
    unrecorded = {k: v for k, v in state.items() if k != "dali_graph"}  # saved before 2026-12-02
    with pytest.raises(LoaderStateError, match=f"dali_graph: saved None, this loader {GRAPH_VERSION}"):
        loader_for(config, shuffle=True).load_state_dict(unrecorded)


def test_the_reference_loader_runs_any_epoch_set_before_a_loop(stripe_tree):
    config = config_for(stripe_tree, "reference", batch_size=2, small_images="pad", return_meta=True)
    in_order = _batches(loader_for(config, shuffle=True), epochs=3)
    jumping = loader_for(config, shuffle=True)
    jumping.set_epoch(2)
    assert _same(_batches(jumping, epochs=1), in_order[8:])
    jumping.set_epoch(0)
    assert _same(_batches(jumping, epochs=1), in_order[:4])


def test_the_dali_loader_takes_only_its_next_epoch(stripe_tree):
    loader = loader_for(config_for(stripe_tree, "dali", batch_size=2, small_images="pad"), shuffle=True)
    loader.set_epoch(0)  # the DistributedSampler-style call before each epoch is fine
    list(loader)
    loader.set_epoch(1)
    with pytest.raises(LoaderStateError, match="next epoch is 1, not 5.*state_dict"):
        loader.set_epoch(5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_breaking_early_moves_on_to_the_next_epoch(stripe_tree, backend):
    config = config_for(stripe_tree, backend, batch_size=2, small_images="pad", return_meta=True)
    in_order = _batches(loader_for(config, shuffle=True), epochs=2)
    loader = loader_for(config, shuffle=True)
    for _ in loader:
        break
    assert loader.epoch == 0
    assert _same(_batches(loader, epochs=1), in_order[4:]) and loader.epoch == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_shards_draw_their_own_windows_and_a_rerun_repeats_them(tmp_path, backend):
    """All images the same size: with one random stream for every rank, slot k of every rank
    would get the same window."""
    make_tree(tmp_path, [(400, 560)] * 8, label_fn=class_stripes)

    def windows(shard_id):
        config = config_for(tmp_path, backend, batch_size=2, shard_id=shard_id, num_shards=2, return_meta=True)
        return [batch.windows.clone() for _ in range(2) for batch in loader_for(config, shuffle=True)]

    zero, one = windows(0), windows(1)
    assert all(torch.equal(a, b) for a, b in zip(zero, windows(0)))
    assert sum(torch.equal(a, b) for a, b in zip(zero, one)) == 0
    assert resolve(config_for(tmp_path, backend, shard_id=0, num_shards=2)).window_seed != \
        resolve(config_for(tmp_path, backend, shard_id=1, num_shards=2)).window_seed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size, shards, batch", [
    (10, 3, 1),  # shards of 3, 3, 4: under "partial" the shorter shards' last batch is empty
    pytest.param(10, 3, 2, marks=pytest.mark.slow), pytest.param(7, 2, 3, marks=pytest.mark.slow),
    pytest.param(11, 4, 2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("policy", ["drop", "partial"])
def test_every_rank_steps_the_same_number_of_times(tmp_path, backend, size, shards, batch, policy):
    make_tree(tmp_path, [(330, 490)] * size, label_fn=class_stripes)
    expected = batches_per_epoch(size, shards, batch, policy)
    seen = []
    for k in range(shards):
        config = config_for(tmp_path, backend, batch_size=batch, last_batch=policy, shard_id=k, num_shards=shards,
                            return_meta=True)
        loader = loader_for(config, shuffle=True)
        sizes = [len(b.ids) for b in loader]
        assert len(loader) == len(sizes) == expected, (k, sizes)
        seen.append(sizes)
    if policy == "partial":  # nothing left out: each shard's samples, in as many steps as the largest needs
        assert [sum(s) for s in seen] == shard_sizes(size, shards)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_larger_than_the_split_is_refused_the_same_way(stripe_tree, backend):
    config = config_for(stripe_tree, backend, batch_size=64)
    with pytest.raises(OptionError, match=r"train: batch_size=64 is larger than the split's samples .*last_batch="):
        loader_for(config)
    partial = loader_for(replace(config, last_batch="partial"))
    assert [len(x) for x, _ in partial] == [6]  # one short batch


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_shards_than_samples_is_refused_the_same_way(tmp_path, backend):
    """16 ranks over 10 samples: some rank would hold nothing (DALI's bare error before)."""
    make_tree(tmp_path, [(330, 490)] * 10, label_fn=class_stripes)
    for policy in ("drop", "partial"):
        config = config_for(tmp_path, backend, batch_size=1, shard_id=3, num_shards=16, last_batch=policy)
        with pytest.raises(OptionError, match=r"train: 16 shards but only 10 sample\(s\).*every shard needs"):
            loader_for(config)


@pytest.mark.parametrize("backend", BACKENDS)
def test_repr_close_and_context_manager(stripe_tree, backend):
    config = config_for(stripe_tree, backend, batch_size=2)
    with loader_for(config, shuffle=True) as loader:
        text = repr(loader)
        assert text.startswith(type(loader).__name__ + "(train: kept 6 of 8") and "3 batches of 2" in text
        assert next(iter(loader))[0].shape == (2, 3, 320, 480)
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(loader))
    loader.close()  # idempotent


@pytest.mark.parametrize("options, complaint", [
    (dict(backend="reference", device="gpu"), "device='gpu'"),
    (dict(backend="reference", label_decoder="nvcomp"), "label_decoder='nvcomp'"),
    (dict(backend="reference", hw_decoder_load=0.5), "hw_decoder_load=0.5"),
    (dict(backend="dali", device="cpu", label_decoder="nvcomp"), "label_decoder='nvcomp'"),
    (dict(backend="dali", device="cpu", hw_decoder_load=0.5), "hw_decoder_load"),
    (dict(backend="reference", nvcomp_known_sizes=True), "nvcomp_known_sizes=True"),
    (dict(backend="dali", device="cpu", nvcomp_known_sizes=True), "nvcomp_known_sizes"),
    (dict(backend="dali", label_decoder="dali", nvcomp_known_sizes=True), "nvcomp_known_sizes"),
])
def test_options_a_backend_cannot_honour_are_refused(stripe_tree, options, complaint):
    if options["backend"] == "dali":
        pytest.importorskip("nvidia.dali")
    with pytest.raises(OptionError, match=complaint):
        load_data_voc(2, (320, 480), root=stripe_tree, verbose=False, **options)


def test_device_gpu_without_cuda_is_refused(stripe_tree):
    pytest.importorskip("nvidia.dali")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the refusal is about machines without it
    with pytest.raises(OptionError, match="no CUDA device"):
        load_data_voc(2, (320, 480), root=stripe_tree, verbose=False, backend="dali", device="gpu")


def test_reference_batches_per_rank_for_every_small_split_rank_count_and_batch_size():
    """Exhaustive over small splits: every rank of the reference path steps ``len(loader)``
    times; under "partial" the ranks' batches partition the epoch, under "drop" they hold only
    full batches, no sample twice, and the left-out samples are fewer than a batch per rank."""
    from dali_voc.loaders.reference import EpochBatches
    for size in range(1, 31):
        for shards in range(1, min(size, 8) + 1):
            for batch in range(1, 9):
                for policy in ("drop", "partial"):
                    count = batches_per_epoch(size, shards, batch, policy)
                    if count == 0:
                        continue  # refused at construction (a test above)
                    ranks = [list(EpochBatches(size, True, 3, (k, shards), batch, count)) for k in range(shards)]
                    assert all(len(r) == count for r in ranks), (size, shards, batch, policy)
                    seen = [i for r in ranks for b in r for i in b]
                    assert len(seen) == len(set(seen)), (size, shards, batch, policy)
                    if policy == "partial":
                        assert sorted(seen) == list(range(size))
                    else:
                        assert all(len(b) == batch for r in ranks for b in r)
                        assert size - len(seen) < shards * batch


@pytest.mark.slow
def test_dalis_iterator_steps_as_many_times_as_the_loaders_say():
    """DALI's own reader + iterator, sharded as the DALI loader shards (no decoding): the
    number of batches per rank is :func:`batches_per_epoch` for every small case."""
    pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, pipeline_def
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    for size in range(1, 12):
        for shards in range(1, min(size, 4) + 1):
            for batch in range(1, 5):
                for policy in ("drop", "partial"):
                    count = batches_per_epoch(size, shards, batch, policy)
                    if count == 0:
                        continue
                    for k in range(shards):
                        @pipeline_def(batch_size=batch, num_threads=1, device_id=None)
                        def ids():
                            _, label = fn.readers.file(files=[__file__] * size, labels=list(range(size)), name="r",
                                                       shard_id=k, num_shards=shards, pad_last_batch=True)
                            return label
                        it = DALIGenericIterator([ids()], ["ids"], reader_name="r", auto_reset=True,
                                                 last_batch_policy=getattr(LastBatchPolicy, policy.upper()))
                        assert len(it) == count == sum(1 for _ in it), (size, shards, batch, policy, k)


@pytest.mark.parametrize("backend, asked, depth", [("dali", None, 1), ("dali", 3, 3), ("reference", None, 2),
                                                   ("reference", 1, 1)])
def test_prefetch_default_is_one_batch_for_dali_on_the_cpu_and_two_elsewhere(stripe_tree, backend, asked, depth):
    """DALI on the CPU hands out views of its own buffers: each batch queued ahead would keep
    one more image batch alive, so its default queue is 1 deep; the DataLoader keeps its 2. The
    depth resolved is the one the pipeline / DataLoader is built with."""
    config = config_for(stripe_tree, backend, prefetch=asked, num_workers=1, batch_size=2)
    assert resolve(config).prefetch == depth
    with loader_for(config) as loader:
        built = loader.pipeline.prefetch_queue_depth if backend == "dali" else loader._loader.prefetch_factor
        assert built == depth
