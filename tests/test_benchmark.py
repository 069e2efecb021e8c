"""Smoke test of ``python -m benchmarks.throughput`` on a tiny tree (structure, not speed)."""

import json
import math

from PIL import Image

import pytest

from benchmarks.throughput import main

pytestmark = pytest.mark.slow  # each row runs in its own process


def test_benchmark_smoke(synth_root, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["--root", str(synth_root), "--batch-size", "4", "--seconds", "0.2", "--repeats", "2",
                 "--warmup", "1", "--threads", "1", "--out", str(out), "--no-progress",
                 "--only", "reference-textbook", "dali-cpu", "dali-gpu", "peer", "aug", "tune", "jpeg"])
    assert code == 0
    result = json.loads((out / "throughput.json").read_text())
    assert set(result) == {"machine", "settings", "rows", "load_average_at_end"}
    assert result["machine"]["cpu_cores_usable"] >= 1 and result["machine"]["versions"]["torch"]
    names = [r["name"] for r in result["rows"]]
    assert names == ["reference-textbook", "dali-cpu", "dali-cpu-stockpng", "peer-torchvision-textbook",
                     "peer-torchvision-allcores", "dali-gpu-1t", "dali-gpu-stockpng-1t", "aug-reference-textbook",
                     "aug-reference-allcores", "aug-dali-cpu", "aug-dali-cpu-stockpng", "aug-dali-gpu-1t",
                     "aug-peer-torchvision-textbook", "aug-peer-torchvision-allcores", "tune-cpu-prefetch2",
                     "tune-cpu-aug-prefetch2", "jpeg-ceiling-dali",
                     "jpeg-torchvision-gpu", "tune-prefetch3-1t", "tune-knownsizes-1t"]
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    assert {r["name"] for r in ok} >= {"reference-textbook", "dali-cpu", "aug-reference-textbook", "aug-dali-cpu"}
    for r in ok:
        f = r["figures"]
        for key in ("images_per_s_median", "images_per_s_min", "images_per_s_max", "first_batch_s",
                    "peak_rss_mb", "cpu_busy_cores"):
            assert math.isfinite(f[key]) and f[key] > 0, (r["name"], key, f[key])
        assert f["images_per_s_min"] <= f["images_per_s_median"] <= f["images_per_s_max"]
        assert len(f["repetitions"]) == 2 and r["speedup"] > 0
    for r in result["rows"]:
        if r["status"] == "skipped":
            assert r["reason"]  # never dropped silently
    table = capsys.readouterr().out
    assert "reference-textbook" in table and "images/s median" in table
    assert Image.open(out / "throughput.png").size[0] > 0
    assert not (out / "throughput.partial.json").exists()


def test_rows_finished_before_an_interruption_are_kept(synth_root, tmp_path, monkeypatch):
    """A run cut short (e.g. a time limit on a lent GPU machine) leaves the finished rows in
    throughput.partial.json; a complete run removes that file."""
    import subprocess

    import benchmarks.throughput as throughput
    figures = {"images_per_s_median": 10.0}
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the second row never finishes
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(figures) + "\n")

    monkeypatch.setattr(throughput.subprocess, "run", fake_run)
    out = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        main(["--root", str(synth_root), "--out", str(out), "--no-progress", "--only", "reference"])
    partial = json.loads((out / "throughput.partial.json").read_text())
    assert partial["complete"] is False and [r["name"] for r in partial["rows"]] == ["reference-textbook"]
    assert partial["rows"][0]["figures"] == figures and partial["machine"]["cpu_cores_usable"] >= 1
    assert not (out / "throughput.json").exists()


def test_label_host_benchmark_smoke(synth_root, tmp_path, capsys):
    """``python -m benchmarks.label_host``: figures present, positive and consistent."""
    from benchmarks.label_host import main as label_host
    out = tmp_path / "label_host.json"
    assert label_host(["--root", str(synth_root), "--batch-size", "8", "--batches", "2", "--repeats", "3",
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["per_batch_ms"]) == 3 and all(t > 0 for t in data["per_batch_ms"])
    assert math.isclose(data["labels_per_s"], 8e3 / data["median_ms"])
    assert len(data["parse_per_batch_ms"]) == 3 and 0 < data["parse_median_ms"]
    assert "labels/s" in capsys.readouterr().out
    assert label_host(["--root", str(synth_root), "--batch-size", "4096"]) == 2  # fewer samples than a batch


def test_geometry_graph_benchmark_smoke(synth_root, tmp_path, capsys):
    """``python -m benchmarks.geometry_graph``: both graphs timed, operators counted, the
    geometry graph holding more of them than the read+peek one."""
    pytest.importorskip("nvidia.dali")
    from benchmarks.geometry_graph import main as geometry_graph
    out = tmp_path / "geometry.json"
    assert geometry_graph(["--root", str(synth_root), "--batch-size", "4", "--batches", "2", "--repeats", "2",
                           "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["presets"]) == {"textbook", "mmseg"}
    for preset in data["presets"].values():
        assert preset["operators"]["geometry"] > preset["operators"]["base"] >= 2
        assert all(len(v) == 2 and min(v) > 0 for v in preset["per_batch_ms"].values())
    assert (data["presets"]["mmseg"]["operators"]["geometry"] > data["presets"]["textbook"]["operators"]["geometry"])
    assert "geometry operators" in capsys.readouterr().out


def test_profile_loader_names_every_phase_of_the_main_thread(synth_root, tmp_path, capsys):
    """``python -m benchmarks.profile_loader`` on the DALI CPU row: each named phase of the
    loader's main thread ran once per profiled batch, and the trace and tables are written."""
    pytest.importorskip("nvidia.dali")
    from benchmarks.profile_loader import PHASES, main as profile_loader
    out = tmp_path / "profile"
    assert profile_loader(["--root", str(synth_root), "--row", "dali-cpu", "--batch-size", "4", "--batches", "3",
                           "--warmup", "1", "--out", str(out)]) == 0
    data = json.loads((out / "profile.json").read_text())
    assert [p["phase"] for p in data["phases"]] == list(PHASES)
    assert all(p["calls"] == 3 and p["total_ms"] > 0 for p in data["phases"])
    assert (out / "trace.json").stat().st_size > 0 and "Self CPU" in (out / "ops_cpu.txt").read_text()
    assert "dali_voc::decode_labels" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown row 'no-such-row'"):
        profile_loader(["--root", str(synth_root), "--row", "no-such-row"])
