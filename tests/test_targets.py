"""``python -m benchmarks.targets``: the GPU label targets read from a throughput result."""

import json

from benchmarks.targets import check, main


def _result(**medians):
    rows = []
    for name, value in medians.items():
        name = name.replace("_", "-")
        threads = 8 if name.endswith("8t") or name == "jpeg-ceiling-dali" else 4
        if value is None:
            rows.append({"name": name, "threads": threads, "status": "skipped", "reason": "no CUDA device"})
        else:
            rows.append({"name": name, "threads": threads, "status": "ok",
                         "figures": {"images_per_s_median": float(value)}})
    return {"machine": {"gpu": "NVIDIA H100 80GB HBM3", "cpu": "x", "cpu_cores_usable": 16},
            "settings": {"batch_size": 64, "crop": "320x480"}, "rows": rows}


def _write(tmp_path, result):
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(result))
    return str(path)


def test_all_targets_met(tmp_path, capsys):
    result = _result(dali_gpu_4t=6600, dali_gpu_8t=9000, dali_gpu_stockpng_8t=2900, jpeg_ceiling_dali=11700)
    verdicts, missing = check(result)
    assert not missing and all(v.met for v in verdicts) and len(verdicts) == 3
    assert [round(v.value, 3) for v in verdicts] == [round(9000 / 2900, 3), round(9000 / 11700, 3), 6600]
    assert main([_write(tmp_path, result)]) == 0
    assert capsys.readouterr().out.count("MET    ") == 3


def test_one_target_missed_fails(tmp_path, capsys):
    # 3.1x the stock decoder, 6,600 at 4 threads, but only 70% of the ceiling
    result = _result(dali_gpu_4t=6600, dali_gpu_8t=8190, dali_gpu_stockpng_8t=2640, jpeg_ceiling_dali=11700)
    assert main([_write(tmp_path, result)]) == 1
    out = capsys.readouterr().out
    assert "NOT MET 8 threads: GPU labels / JPEG-only ceiling: 0.70 (target >= 0.75)" in out


def test_rows_that_did_not_run_are_reported_missing(tmp_path, capsys):
    result = _result(dali_gpu_4t=None, dali_gpu_8t=None, dali_gpu_stockpng_8t=None, jpeg_ceiling_dali=None)
    result["machine"]["gpu"] = None
    assert main([_write(tmp_path, result)]) == 2
    out = capsys.readouterr().out
    assert out.count("MISSING") == 4 and "this run used no GPU" in out


def test_a_ceiling_measured_with_other_threads_does_not_count(tmp_path):
    result = _result(dali_gpu_4t=6600, dali_gpu_8t=9000, dali_gpu_stockpng_8t=2900, jpeg_ceiling_dali=11700)
    result["rows"][-1]["threads"] = 16
    _, missing = check(result)
    assert missing and "run with --threads 4 8" in missing[0]
    assert main([_write(tmp_path, result)]) == 2
