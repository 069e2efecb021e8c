"""Packed data in object storage, against a real S3 server (SeaweedFS on 127.0.0.1, see
tests/s3server.py): pack to ``s3://``, load both backends from it, two ranks under torchrun,
and the ways a store fails (credentials, bucket, endpoint, truncated objects), each named and
bounded in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dali_voc import load_data_voc
from dali_voc.storage import members as packed_module
from dali_voc.datasets.packed import MANIFEST_NAME, load_manifest
from dali_voc.errors import SampleDecodeError, StorageError
from dali_voc.geometry.windows import CropWindow
from dali_voc.tools.pack import pack_tree
from tests import s3server
from tests.helpers import config_for, loader_for, require_dali

SHARD = 600_000
CROP = (200, 240)
BUCKET = "voc"
URL = f"s3://{BUCKET}/packed"
TORCHRUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server, with its endpoint and test keys in the environment for this module."""
    proc, server = s3server.start(tmp_path_factory.mktemp("seaweedfs"))
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    packed_module._STORES.clear()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        s3server.stop(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        packed_module._STORES.clear()
    assert proc.poll() is not None, "the server was stopped"


@pytest.fixture(scope="module")
def packed_s3(s3, synth_root):
    pack_tree(synth_root, URL, splits=["train", "val"], shard_bytes=SHARD, workers=2, progress=False)
    return URL


@pytest.fixture
def fresh_clients(monkeypatch):
    """Stores made anew in the test (so a changed environment is seen), and forgotten after."""
    monkeypatch.setattr(packed_module, "_STORES", {})


def test_pack_to_s3_writes_what_a_local_pack_writes(packed_s3, synth_root, tmp_path):
    pack_tree(synth_root, str(tmp_path), splits=["train", "val"], shard_bytes=SHARD, workers=2, progress=False)
    local, remote = load_manifest(tmp_path), load_manifest(packed_s3)
    assert remote["splits"] == local["splits"]  # same samples, offsets, shards and SHA-256 (deterministic tars)
    listed = s3server_keys(packed_s3)
    for split in ("train", "val"):
        for shard in remote["splits"][split]["shards"]:
            assert {shard["name"], shard["index"]} <= listed
    assert MANIFEST_NAME in listed


def s3server_keys(url: str) -> set[str]:
    store = packed_module.store_of(url)
    response = store._client().list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
    return {item["Key"][len(store.prefix) + 1:] for item in response.get("Contents", [])}


def test_reference_from_s3_gives_the_trees_batches(packed_s3, synth_root):
    options = dict(batch_size=4, crop_size=CROP, return_meta=True)
    tree = loader_for(config_for(synth_root, "reference", **options), shuffle=True)
    remote = loader_for(config_for(packed_s3, "reference", num_workers=2, **options), shuffle=True)
    want, got = list(tree), list(remote)
    assert len(want) == len(got) > 0
    for a, b in zip(want, got):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_dali_from_s3_labels_equal_the_tree_at_the_same_windows(packed_s3, synth_root):
    """``load_data_voc(..., root="s3://...", backend="dali")``: DALI reads the shards from the
    server itself; two epochs, each sample once, labels equal to the reference path's."""
    require_dali()
    train, val = load_data_voc(4, CROP, root=packed_s3, backend="dali", device="cpu", num_workers=2, verbose=False,
                               return_meta=True, last_batch="partial")
    reference = loader_for(config_for(synth_root, "reference", batch_size=4, crop_size=CROP), shuffle=True).dataset
    position = {s.index: i for i, s in enumerate(reference.samples)}
    for epoch in range(2):
        seen = []
        for batch in train:
            for k, index in enumerate(batch.ids.tolist()):
                _, y = reference.load(position[index], CropWindow(*batch.windows[k].tolist()))
                assert torch.equal(batch.labels[k], y), (epoch, index)
            seen += batch.ids.tolist()
        assert sorted(seen) == [s.index for s in reference.samples]
    assert sum(len(b.ids) for b in val) == val.selection.kept


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_two_ranks_under_torchrun_over_s3_see_each_sample_once_per_epoch(packed_s3, tmp_path, backend):
    if backend == "dali":
        require_dali()
    epochs = 2
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "tests.ranks_over_s3", packed_s3, backend, str(epochs), str(tmp_path / "record")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TORCHRUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the 2-rank run did not end within {TORCHRUN_TIMEOUT_S} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    ranks = [json.loads((tmp_path / f"record.rank{k}.json").read_text()) for k in range(2)]
    kept = load_manifest(packed_s3)["splits"]["train"]["listed"]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for epoch in range(epochs):
        steps = [r["epochs"][epoch] for r in ranks]
        assert len(steps[0]) == len(steps[1]) == ranks[0]["batches"], "every rank steps the same number of times"
        ids = [i for s in steps for batch in s for i in batch]
        assert sorted(ids) == list(range(kept)), f"epoch {epoch}: each sample once across ranks"


def _refused(url: str, env: dict, monkeypatch, backend: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        load_data_voc(4, CROP, root=url, backend=backend, device="cpu" if backend == "dali" else "auto",
                      num_workers=0 if backend == "reference" else 1, verbose=False)
    assert time.monotonic() - started < 60, "bounded: no hang"
    return str(caught.value)


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_store_failures_are_named(packed_s3, s3, monkeypatch, fresh_clients, backend):
    if backend == "dali":
        require_dali()
    message = _refused(packed_s3, {"AWS_SECRET_ACCESS_KEY": "wrong"}, monkeypatch, backend)
    assert "refused the credentials" in message and MANIFEST_NAME in message
    packed_module._STORES.clear()
    message = _refused("s3://no-such-bucket/packed", {"AWS_SECRET_ACCESS_KEY": s3.env["AWS_SECRET_ACCESS_KEY"]},
                       monkeypatch, backend)
    assert "'no-such-bucket' does not exist" in message
    message = _refused(f"s3://{BUCKET}/nothing-here", {}, monkeypatch, backend)
    assert "no such object" in message and f"s3://{BUCKET}/nothing-here/{MANIFEST_NAME}" in message
    packed_module._STORES.clear()
    port = s3server.free_ports(1)[0]  # nothing listens there
    message = _refused(packed_s3, {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}, monkeypatch, backend)
    assert "cannot reach the endpoint" in message and str(port) in message


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_a_truncated_shard_in_the_store_is_named(s3, synth_root, monkeypatch, fresh_clients, backend):
    if backend == "dali":
        require_dali()
    url = f"s3://{BUCKET}/truncated-{backend}"
    pack_tree(synth_root, url, splits=["train"], shard_bytes=SHARD, workers=2, progress=False)
    shard = load_manifest(url)["splits"]["train"]["shards"][0]
    store = packed_module.store_of(url)
    store.write(shard["name"], store.read(shard["name"])[: shard["bytes"] // 2])
    options = dict(backend=backend, verbose=False, num_workers=0 if backend == "reference" else 1)
    if backend == "dali":
        options["device"] = "cpu"
    train, _ = load_data_voc(4, CROP, root=url, train_split="train", test_split="train", **options)
    with pytest.raises(SampleDecodeError) as caught:
        for _ in range(2):
            for _ in train:
                pass
    assert shard["name"] in str(caught.value)


@pytest.mark.slow
def test_packed_sources_benchmark_reports_every_row(synth_root, tmp_path):
    """``python -m benchmarks.packed_sources`` on a tiny tree (structure, not speed): six rows,
    positive figures, the packing times and the machine's load recorded; the server it starts
    is gone afterwards."""
    if s3server.weed_path() is None:
        s3server.start(tmp_path)  # skips (or fails under CI) with the reason
    from benchmarks.packed_sources import main as packed_sources
    assert packed_sources(["--root", str(synth_root), "--batch-size", "4", "--crop", "200x200", "--seconds", "0.3",
                           "--repeats", "1", "--warmup", "1", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "packed_sources.json").read_text())
    assert [(r["backend"], r["source"]) for r in result["rows"]] == [
        (b, s) for b in ("reference", "dali-cpu") for s in ("tree", "local-shards", "s3-shards")]
    assert all(r["images_per_s_median"] > 0 and r["first_batch_s"] > 0 for r in result["rows"])
    assert result["packing"]["local_s"] > 0 and result["packing"]["s3_s"] > 0
    assert set(result["load_average_1_5_15_min"]) == {"before", "after"}


def test_an_endpoint_that_never_answers_times_out_with_a_named_error(monkeypatch, fresh_clients):
    """A server that accepts connections and never answers: the read timeout ends the request
    (shortened here to 1 s, one attempt) with an error naming the endpoint; no hang."""
    import socket
    import threading
    from dali_voc.storage import stores as storage
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop_accepting = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop_accepting.is_set():
            try:
                held.append(listener.accept()[0])  # and say nothing
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setattr(storage, "S3_READ_TIMEOUT_S", 1)
        monkeypatch.setattr(storage, "S3_ATTEMPTS", 1)
        for key, value in dict(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
                               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true").items():
            monkeypatch.setenv(key, value)
        started = time.monotonic()
        with pytest.raises(StorageError, match=f"{endpoint} did not answer within 1 s"):
            load_data_voc(4, CROP, root="s3://silent/packed", backend="reference", num_workers=0, verbose=False)
        assert time.monotonic() - started < 15
    finally:
        stop_accepting.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_check_verifies_a_pack_in_the_store(packed_s3, capsys):
    from dali_voc.cli import main
    assert main(["check", packed_s3]) == 0
    assert f"{packed_s3}: clean" in capsys.readouterr().out
