"""A corpus of broken trees: every fault gets the documented behaviour on both loaders.

Documented behaviour (README "Bad input"):
* construction: a missing file, a file that is not an image (zero bytes, wrong magic), an
  image/label size mismatch -> an error naming the file; with ``on_error="skip"`` the sample
  is left out and reported.
* decode time: a truncated image or label -> an error naming the file (never a bare DALI
  trace); with ``on_error="skip"`` the split is verified at construction and the sample left out.
* handled: grayscale and CMYK JPEGs decode to RGB, PNG data under a .jpg name decodes, RGB
  (non-palette) labels map through the color table - identically on both paths.
"""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from dali_voc.config import LoaderConfig
from dali_voc.reference import ReferenceLoader, SampleDecodeError
from dali_voc.voc import VOCFormatError, voc_palette
from tests.conftest import class_stripes, make_tree, require_dali

SHAPE = (330, 490)
BROKEN = "s_0002"


def _jpeg(array: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _textured(i: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]


def _palette_png(index: np.ndarray) -> bytes:
    img = Image.fromarray(index, mode="P")
    img.putpalette(voc_palette())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# fault name -> function(voc_dir, sample name) that breaks that sample
def _image(voc, name=BROKEN):
    return voc / "JPEGImages" / f"{name}.jpg"


def _label(voc, name=BROKEN):
    return voc / "SegmentationClass" / f"{name}.png"


def _cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


FAULTS = {
    "missing-image": lambda voc, n=BROKEN: _image(voc, n).unlink(),
    "missing-label": lambda voc, n=BROKEN: _label(voc, n).unlink(),
    "zero-byte-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(b""),
    "wrong-magic-image": lambda voc, n=BROKEN: _image(voc, n).write_bytes(b"this is a text file, not a JPEG\n" * 50),
    "size-mismatch": lambda voc, n=BROKEN: _label(voc, n).write_bytes(_palette_png(np.zeros((100, 100), np.uint8))),
    "truncated-image": lambda voc, n=BROKEN: _cut(_image(voc, n)),
    "truncated-label": lambda voc, n=BROKEN: _cut(_label(voc, n)),
}
CONSTRUCTION_FAULTS = ["missing-image", "missing-label", "zero-byte-image", "wrong-magic-image", "size-mismatch"]
DECODE_FAULTS = ["truncated-image", "truncated-label"]

HANDLED = {
    "grayscale-jpeg": lambda voc, n=BROKEN: _image(voc, n).write_bytes(_jpeg(_textured(2, *SHAPE), "L")),
    "cmyk-jpeg": lambda voc, n=BROKEN: _image(voc, n).write_bytes(_jpeg(_textured(2, *SHAPE), "CMYK")),
    "png-named-jpg": lambda voc, n=BROKEN: Image.fromarray(_textured(2, *SHAPE)).save(_image(voc, n), format="PNG"),
    "rgb-label": lambda voc, n=BROKEN: Image.open(_label(voc, n)).convert("RGB").save(_label(voc, n)),
}


def build(tmp_path, fault):
    voc = make_tree(tmp_path, [SHAPE] * 5, image_fn=_textured, label_fn=class_stripes)
    for i in range(5):  # real JPEG images, as VOC has
        path = voc / "JPEGImages" / f"s_{i:04d}.jpg"
        path.write_bytes(_jpeg(_textured(i, *SHAPE)))
    fault(voc)
    return tmp_path


def _config(root, **kw):
    kw.setdefault("verbose", False)
    kw.setdefault("num_workers", 0)
    kw.setdefault("batch_size", 1)
    kw.setdefault("device", "cpu")
    return LoaderConfig(root=root, **kw)


def _make(backend, config):
    """``reference``, ``dali`` (CPU operators), ``dali-gpu-stock`` / ``dali-gpu-nvcomp`` (CUDA)."""
    if backend.startswith("dali"):
        require_dali()
        from dataclasses import replace

        from dali_voc.loader import DALILoader
        if backend != "dali":
            config = replace(config, device="gpu", label_decoder=backend.rsplit("-", 1)[1].replace("stock", "dali"))
        return DALILoader(config, "train", shuffle=False)
    return ReferenceLoader(config, "train", shuffle=False)


_GPU = pytest.mark.gpu
BACKENDS = ["reference", "dali", pytest.param("dali-gpu-stock", marks=_GPU),
            pytest.param("dali-gpu-nvcomp", marks=_GPU)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", CONSTRUCTION_FAULTS)
def test_cheap_faults_fail_at_construction_naming_the_file(tmp_path, backend, fault):
    root = build(tmp_path, FAULTS[fault])
    with pytest.raises((FileNotFoundError, VOCFormatError), match=BROKEN):
        _make(backend, _config(root))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", DECODE_FAULTS)
def test_decode_faults_raise_naming_the_file(tmp_path, backend, fault):
    root = build(tmp_path, FAULTS[fault])
    loader = _make(backend, _config(root))  # headers are fine: construction succeeds
    with pytest.raises(SampleDecodeError, match=BROKEN):
        for _ in loader:
            pass
    if backend != "reference":  # the dead pipeline is never touched again
        with pytest.raises(RuntimeError, match="stopped after an error"):
            next(iter(loader))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", CONSTRUCTION_FAULTS + DECODE_FAULTS)
def test_skip_leaves_the_sample_out_and_reports_it(tmp_path, backend, fault, capsys):
    root = build(tmp_path, FAULTS[fault])
    loader = _make(backend, _config(root, on_error="skip", verbose=True))
    assert loader.selection.kept == 4 and [n for n, _ in loader.selection.skipped] == [BROKEN]
    for _ in range(2):
        assert sum(x.shape[0] for x, _ in loader) == 4
    err = capsys.readouterr().err
    assert "1 unreadable sample(s) skipped" in err and BROKEN in err
    assert err.count("epoch") >= 2  # reported at the end of every epoch


@pytest.mark.parametrize("case", sorted(HANDLED))
def test_handled_inputs_decode_identically_on_both_paths(tmp_path, case):
    require_dali()
    from tests.test_dali_cpu import _run_pipeline
    from dali_voc.colors import ColorTable, colors_to_indices
    from dali_voc.loader import batch_valid_masks
    from dali_voc.reference import VOCSegmentation
    from dali_voc.windows import CropWindow
    root = build(tmp_path, HANDLED[case])
    config = _config(root, batch_size=5, void_label="ignore", num_workers=1)
    selection, rows = _run_pipeline(config, shuffle=False, iterations=1)
    reference = VOCSegmentation(config, "train", selection)
    table = ColorTable.from_config(config)
    for image, label, window, shape, image_id, _ in rows:
        x_ref, y_ref = reference.load(int(image_id[0]), CropWindow(int(window[0]), int(window[1])))
        mask = batch_valid_masks(window[None], shape[None], config.crop_size)[0]
        assert np.array_equal(colors_to_indices(label, table, valid=mask).indices, y_ref.numpy())
        assert np.abs(image - x_ref.numpy()).max() <= 1e-5
        assert image.shape[0] == 3  # gray/CMYK became RGB


_NO_HANG = textwrap.dedent("""
    import os, sys
    from dali_voc.config import LoaderConfig
    from dali_voc.reference import SampleDecodeError
    backend = sys.argv[2]
    config = LoaderConfig(root=sys.argv[1], batch_size=2, num_workers=2, verbose=False, device="cpu")
    if backend == "dali":
        from dali_voc.loader import DALILoader as L
    else:
        from dali_voc.reference import ReferenceLoader as L
    loader = L(config, "train", shuffle=True)
    try:
        for _ in range(3):
            for _ in loader:
                pass
        print("NO ERROR")
    except SampleDecodeError as err:
        print("ERROR", err)
    del loader
    import gc; gc.collect()
    me = str(os.getpid())
    children = [p for p in os.listdir("/proc") if p.isdigit() and
                open(f"/proc/{p}/stat").read().split(")")[1].split()[1] == me]
    print("CHILDREN", len(children))
""")


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_hang_and_no_process_left_behind(tmp_path, backend):
    if backend == "dali":
        require_dali()
    root = build(tmp_path, FAULTS["truncated-image"])
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", _NO_HANG, str(root), backend], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR" in done.stdout and BROKEN in done.stdout and "NO ERROR" not in done.stdout
    assert "CHILDREN 0" in done.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("decoder", ["dali", "nvcomp"])
@pytest.mark.parametrize("case", sorted(HANDLED))
def test_handled_inputs_on_the_gpu_match_the_reference_labels(tmp_path, case, decoder):
    """Gray/CMYK/PNG-named JPEGs and RGB labels on the GPU path: labels equal the reference's."""
    require_dali()
    from dataclasses import replace

    from dali_voc.loader import DALILoader
    root = build(tmp_path, HANDLED[case])
    config = _config(root, batch_size=5, void_label="ignore")
    gpu = DALILoader(replace(config, device="gpu", label_decoder=decoder), "train", shuffle=False)
    (x, y), = list(gpu)
    assert x.is_cuda and y.is_cuda and tuple(y.shape) == (5, 320, 480)
    assert set(torch.unique(y).tolist()) <= set(range(21)) | {255}
    if decoder == "nvcomp" and case == "rgb-label":
        assert gpu.fallback_images == 1  # counted, decoded on the CPU
