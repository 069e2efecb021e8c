"""``python -m dali_voc check`` on a clean tree and on a tree holding every kind of fault."""

import json

import numpy as np
from PIL import Image

from dali_voc.tools.check import check_tree
from dali_voc.cli import main
from tests.helpers import BROKEN_SHAPE as SHAPE
from tests.helpers import FAULTS, HANDLED, class_stripes, jpeg_bytes, make_tree, textured


def _tree_with_everything(tmp_path):
    """One sample per fault/case (s_0000, ...), each broken in its own way, plus list faults."""
    cases = list(FAULTS.items()) + list(HANDLED.items()) + [("unknown-colors", None), ("clean", None)]
    voc = make_tree(tmp_path, [SHAPE] * len(cases), image_fn=textured, label_fn=class_stripes)
    expected = {}
    for i, (kind, fault) in enumerate(cases):
        name = f"s_{i:04d}"
        (voc / "JPEGImages" / f"{name}.jpg").write_bytes(jpeg_bytes(textured(i, *SHAPE)))
        if kind == "unknown-colors":
            rgb = np.asarray(Image.open(voc / "SegmentationClass" / f"{name}.png").convert("RGB")).copy()
            rgb[:10, :10] = (5, 6, 7)
            Image.fromarray(rgb).save(voc / "SegmentationClass" / f"{name}.png")
        elif fault is not None:
            fault(voc, name)
        expected[name] = kind
    split = voc / "ImageSets" / "Segmentation"
    (split / "val.txt").write_text("")  # empty list
    (split / "dup.txt").write_text("s_0000\ns_0001\ns_0000\n")  # duplicate name
    (split / "escape.txt").write_text("s_0000\n../../../etc/hostname\n")  # a path, not a name
    return voc, expected


KIND_OF_FAULT = {
    "missing-image": "missing-image", "missing-label": "missing-label", "zero-byte-image": "empty-image",
    "wrong-magic-image": "unreadable-image", "size-mismatch": "size-mismatch",
    "truncated-image": "truncated-image", "truncated-label": "truncated-label",
    "grayscale-jpeg": "grayscale-jpeg", "cmyk-jpeg": "cmyk-jpeg", "png-named-jpg": "not-jpeg",
    "rgb-label": "not-palette-label", "unknown-colors": "unknown-colors",
    "bomb-image": "oversized-image", "bomb-label": "oversized-label", "label-data-cut-short": "truncated-label",
    "two-palettes": "unreadable-label", "palette-after-data": "unreadable-label",
    "unknown-critical-chunk": "unreadable-label", "exif-orientation": "exif-orientation",
    "palette-index-without-entry": "unknown-colors", "palette-in-gray-label": "unreadable-label",
    "label-data-too-long": "unreadable-label", "image-is-a-directory": "not-a-file-image",
    "label-is-a-fifo": "not-a-file-label", "16-bit-gray-label": "16-bit-label",
    "16-bit-gray-label-scaled": "16-bit-label",
    "16-bit-rgb-label": "16-bit-label", "16-bit-gray-png-image": "16-bit-image", "16-bit-rgb-png-image": "16-bit-image",
    "16-bit-gray-tiff-image": "16-bit-image", "rgba-png-named-jpg": "not-jpeg", "1-bit-png-named-jpg": "not-jpeg",
    "interlaced-png-named-jpg": "not-jpeg", "tiff-named-jpg": "not-jpeg", "webp-named-jpg": "not-jpeg",
    "progressive-jpeg": None,
    "data-after-label-iend": "trailing-data-label", "data-after-jpeg-end": "oversized-image-file",
    "huge-chunk-in-label": "oversized-label-file",
}


def test_every_fault_is_reported_with_its_file(tmp_path):
    voc, expected = _tree_with_everything(tmp_path)
    report = check_tree(tmp_path, workers=2, progress=False)
    assert not report.clean
    by_file = {}
    for p in report.problems:
        by_file.setdefault(p.path.rsplit("/", 1)[-1].split(".")[0], set()).add(p.kind)
    for name, case in expected.items():
        if case == "clean" or KIND_OF_FAULT.get(case, "") is None:
            assert name not in by_file, (name, case, by_file.get(name))
        else:
            assert KIND_OF_FAULT[case] in by_file.get(name, set()), (name, case, by_file.get(name))
    kinds = {p.kind for p in report.problems}
    assert {"empty-list", "duplicate-name", "bad-name"} <= kinds
    details = {p.path.rsplit("/", 1)[-1].split(".")[0]: p.detail for p in report.problems}
    for case, words in (("two-palettes", "second PLTE"), ("palette-after-data", "PLTE chunk after the image data"),
                        ("unknown-critical-chunk", "unknown critical chunk 'ZZZZ'"),
                        ("label-data-cut-short", "ends early"), ("bomb-image", "decompression-bomb"),
                        ("palette-index-without-entry", "palette index 100 (no entry")):
        name = next(n for n, c in expected.items() if c == case)
        assert words in details[name], (case, details[name])
    unknown_sample = next(n for n, c in expected.items() if c == "unknown-colors")
    unknown = next(p for p in report.problems if p.kind == "unknown-colors" and unknown_sample in p.path)
    assert "100 px" in unknown.detail and "(5, 6, 7)" in unknown.detail


def test_cli_exit_codes_and_json(tmp_path, synth_root, capsys):
    assert main(["check", str(synth_root), "--workers", "2"]) == 0
    assert "clean" in capsys.readouterr().out
    _tree_with_everything(tmp_path / "bad")
    out = tmp_path / "report.json"
    assert main(["check", str(tmp_path / "bad"), "--json", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "truncated-image" in printed and "error(s)" in printed
    data = json.loads(out.read_text())
    assert data["clean"] is False and data["errors"] > 0 and data["warnings"] > 0
    assert all({"kind", "severity", "path", "detail"} <= set(p) for p in data["problems"])
