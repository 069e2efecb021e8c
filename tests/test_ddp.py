"""Data parallel for real: the FCN example launched by torchrun as 2 ranks on the CPU (gloo),
with each loader. Checks what DDP needs of a loader: each epoch's samples seen exactly once
across ranks, equal step counts, per-rank crop windows, identical models after the steps, and
a run that ends (a hang fails the test after a bounded time, it never blocks CI)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import class_stripes, make_tree, require_dali

pytestmark = pytest.mark.slow  # two processes per backend, each training a ResNet-18 on the CPU

RANKS, SAMPLES, BATCH, EPOCHS = 2, 8, 2, 2
TIMEOUT_S = 300


def _run_torchrun(args: list[str], cwd, module: str = "dali_voc.examples.train_fcn") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={RANKS}",
               "-m", module, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        out, _ = proc.communicate()
        pytest.fail(f"the 2-rank run did not end within {TIMEOUT_S} s (a rank waiting for another?):\n{out[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out)


def _tree(root):
    shapes = [(330, 490)] * SAMPLES
    make_tree(root, shapes, label_fn=class_stripes)
    make_tree(root, shapes, split="val", label_fn=class_stripes)
    return root


@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_two_ranks_under_torchrun(tmp_path, backend):
    if backend == "dali":
        require_dali()
    _tree(tmp_path / "tree")
    record = tmp_path / "record"
    done = _run_torchrun(["--root", str(tmp_path / "tree"), "--backend", backend, "--batch-size", str(BATCH),
                          "--crop", "64x96", "--epochs", str(EPOCHS), "--workers", "1", "--record", str(record),
                          "--json", str(tmp_path / "reports.json")], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    ranks = [json.loads((tmp_path / f"record.rank{k}.json").read_text()) for k in range(RANKS)]
    assert [r["world_size"] for r in ranks] == [RANKS] * RANKS
    for epoch in range(EPOCHS):
        steps = [r["epochs"][epoch] for r in ranks]
        assert len({len(s) for s in steps}) == 1, "every rank steps the same number of times"
        ids = [i for s in steps for step in s for i in step["ids"]]
        assert sorted(ids) == list(range(SAMPLES)), f"epoch {epoch}: each sample once across ranks: {ids}"
        for a, b in zip(*steps):  # same step, two ranks: their own windows (never all equal)
            assert a["windows"] != b["windows"]
    assert ranks[0]["parameters_sha1"] == ranks[1]["parameters_sha1"], "DDP keeps the replicas identical"
    reports = json.loads((tmp_path / "reports.json").read_text())  # written by rank 0 alone
    assert [r["images"] for r in reports] == [SAMPLES] * EPOCHS  # summed over the ranks
    assert all(r["val_images"] == SAMPLES for r in reports)
    assert done.stdout.count("epoch 1:") == 1  # rank 0 alone prints


def test_the_training_benchmark_under_torchrun_reports_every_rank_and_the_total(tmp_path):
    require_dali()
    _tree(tmp_path / "tree")
    done = _run_torchrun(["--root", str(tmp_path / "tree"), "--batch-size", str(BATCH), "--crop", "64x96",
                          "--steps", "2", "--warmup", "1", "--out", str(tmp_path / "out")], cwd=tmp_path,
                         module="benchmarks.train_e2e")
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads((tmp_path / "out" / "train_e2e.json").read_text())
    assert result["world_size"] == RANKS and [r["backend"] for r in result["rows"]] == ["reference", "dali"]
    for row in result["rows"]:
        assert [r["rank"] for r in row["ranks"]] == list(range(RANKS))
        assert all(r["steps"] == 2 and r["images"] == 2 * BATCH for r in row["ranks"])
        assert row["images_per_s"] == pytest.approx(sum(r["images_per_s"] for r in row["ranks"]))
    assert done.stdout.count("wrote ") == 1  # rank 0 alone writes


def test_a_rank_that_fails_ends_the_whole_run(tmp_path):
    """One rank meets a damaged image mid-epoch while the other waits in an all-reduce:
    the error is named, and the run ends (torchrun stops the other rank), no hang."""
    require_dali()
    voc = _tree(tmp_path / "tree") / "VOCdevkit" / "VOC2012"
    image = voc / "JPEGImages" / "s_0003.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    done = _run_torchrun(["--root", str(tmp_path / "tree"), "--backend", "dali", "--batch-size", str(BATCH),
                          "--crop", "64x96", "--epochs", "1", "--workers", "1"], cwd=tmp_path)
    assert done.returncode != 0
    assert "SampleDecodeError" in done.stdout and "s_0003.jpg" in done.stdout
