"""``python -m dali_voc doctor`` in CPU mode: the paths available here agree on its tree, the
report and JSON say so, and a deliberately wrong path (a fault injected into the loader, run
in-process) makes it exit non-zero and shows where."""

from __future__ import annotations

import json

import pytest
import torch

from dali_voc.cli import main as cli_main
from dali_voc.tools import doctor
from tests.helpers import require_dali


@pytest.fixture(scope="module")
def doctor_tree(tmp_path_factory):
    """The doctor's tree, written once for the module (``--tree`` keeps it)."""
    root = tmp_path_factory.mktemp("doctor")
    return root, doctor.make_doctor_tree(root)


def _run(tree, tmp_path, *paths, seconds="0"):
    out = tmp_path / "doctor.json"
    code = cli_main(["doctor", "--tree", str(tree), "--seconds", seconds, "--no-progress", "--json", str(out),
                     "--paths", *paths])
    return code, json.loads(out.read_text())


def test_the_tree_holds_the_awkward_cases(doctor_tree):
    _, info = doctor_tree
    assert info["train"] == 12 and info["val"] == 6
    assert info["train_below_crop"] >= 1 and info["train_at_or_above_crop"] >= 1
    assert {"grayscale JPEG", "CMYK JPEG", "RGB label", "21-entry palette"} <= set(info["awkward"])


def test_cpu_paths_agree_and_the_report_says_so(doctor_tree, tmp_path, capsys):
    require_dali()
    code, report = _run(doctor_tree[0], tmp_path, "reference", "dali-cpu", seconds="0.5")
    text = capsys.readouterr().out
    assert code == 0 and report["agrees"] is True, text
    assert [p["name"] for p in report["paths"]] == ["reference", "dali-cpu"]
    for path in report["paths"]:
        assert path["available"] and path["images_per_s"] > 0
        assert [c["check"] for c in path["checks"]] == [c.name for c in doctor.CHECKS]
        for check in path["checks"]:
            assert check["samples"] > 0 and check["label_pixels_differ"] == 0 and check["verdict"] == "agrees"
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["dali"] and env["cpu_cores"] >= 1
    assert report["default_loader"]["backend"] == "dali" and "verdict: every path agrees" in text
    if not torch.cuda.is_available():
        assert report["default_loader"]["device"] == "cpu" and "no CUDA device" in report["hints"][0]


def test_gpu_paths_are_listed_as_not_run_without_cuda(doctor_tree, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the GPU paths run (tests/test_gpu.py runs the doctor there)")
    code, report = _run(doctor_tree[0], tmp_path, "reference", "dali-gpu", "dali-gpu-nvcomp")
    assert code == 0
    gpu = [p for p in report["paths"] if p["name"].startswith("dali-gpu")]
    assert len(gpu) == 2 and all(not p["available"] and p["reason"] for p in gpu)


def test_a_label_shifted_by_one_pixel_makes_the_doctor_fail(doctor_tree, tmp_path, monkeypatch, capsys):
    """The fault: DALI's CPU path returns every label rolled one pixel to the right. The
    doctor must report label pixels that differ for that path (and only that path) and exit 1."""
    require_dali()
    from dali_voc.labels.zlib_decoder import ZlibLabelDecoder  # the dali-cpu path's label decoder
    real_decode = ZlibLabelDecoder.decode

    def shifted(self, batch):
        decoded = real_decode(self, batch)
        return decoded._replace(labels=torch.roll(decoded.labels, 1, dims=-1))

    monkeypatch.setattr(ZlibLabelDecoder, "decode", shifted)
    code, report = _run(doctor_tree[0], tmp_path, "reference", "dali-cpu")
    text = capsys.readouterr().out
    assert code == 1 and report["agrees"] is False
    by_name = {p["name"]: p for p in report["paths"]}
    assert by_name["reference"]["agrees"] is True
    assert all(c["label_pixels_differ"] > 0 and c["verdict"] == "DIFFERS" for c in by_name["dali-cpu"]["checks"])
    assert "DIFFERS" in text and "SOME PATH DISAGREES" in text


def test_images_off_by_a_few_levels_make_the_doctor_fail(doctor_tree, tmp_path, monkeypatch):
    """The fault: the DALI loader's images brightened by ~2 levels (labels intact): over the
    CPU bound, so the doctor names the image difference."""
    require_dali()
    from dali_voc.loaders.dali import DALILoader
    real_batches = DALILoader._batches

    def brighter(self, start):
        for batch in real_batches(self, start):
            yield batch._replace(images=batch.images + 0.04)

    monkeypatch.setattr(DALILoader, "_batches", brighter)
    code, report = _run(doctor_tree[0], tmp_path, "dali-cpu")
    assert code == 1
    checks = report["paths"][0]["checks"]
    assert all(c["label_pixels_differ"] == 0 and c["max_image_levels"] > 2 and not c["agrees"] for c in checks)


def test_a_path_that_crashes_is_reported_and_fails(doctor_tree, tmp_path, monkeypatch):
    require_dali()
    from dali_voc.loaders.dali import DALILoader

    def broken(self, start):
        raise RuntimeError("injected failure")
        yield  # pragma: no cover

    monkeypatch.setattr(DALILoader, "_batches", broken)
    code, report = _run(doctor_tree[0], tmp_path, "dali-cpu")
    assert code == 1
    assert all(c["verdict"] == "ERROR" and "injected failure" in c["error"] for c in report["paths"][0]["checks"])
