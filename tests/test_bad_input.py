"""A corpus of broken trees: every fault gets the documented behaviour on every loader.

Documented behaviour (README "Bad input"):
* construction: a missing file, a file that is not an image (zero bytes, wrong magic), an
  image/label size mismatch -> an error naming the file; with ``on_error="skip"`` the sample
  is left out and reported.
* decode time: a truncated image or label -> an error naming the file (never a bare DALI
  trace); with ``on_error="skip"`` the split is verified at construction and the sample left out.
* handled: grayscale and CMYK JPEGs decode to RGB, PNG data under a .jpg name decodes, RGB
  (non-palette) labels map through the color table - identically on every path.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from dali_voc import SampleDecodeError, VOCFormatError
from dali_voc.colors import ColorTable, colors_to_indices
from dali_voc.reference import VOCSegmentation
from dali_voc.windows import CropWindow, valid_masks
from tests.helpers import (BROKEN, CONSTRUCTION_FAULTS, CPU_IMAGE_TOLERANCE, DECODE_FAULTS, FAULTS, HANDLED,
                           broken_tree, config_for, loader_for, run_pipeline)

_GPU = pytest.mark.gpu
BACKENDS = ["reference", "dali", pytest.param("dali-gpu-stock", marks=_GPU),
            pytest.param("dali-gpu-nvcomp", marks=_GPU)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", CONSTRUCTION_FAULTS)
def test_cheap_faults_fail_at_construction_naming_the_file(tmp_path, backend, fault):
    root = broken_tree(tmp_path, FAULTS[fault])
    with pytest.raises((FileNotFoundError, VOCFormatError), match=BROKEN):
        loader_for(config_for(root, backend, batch_size=1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", DECODE_FAULTS)
def test_decode_faults_raise_naming_the_file(tmp_path, backend, fault):
    root = broken_tree(tmp_path, FAULTS[fault])
    loader = loader_for(config_for(root, backend, batch_size=1))  # headers are fine: construction succeeds
    with pytest.raises(SampleDecodeError, match=BROKEN):
        for _ in loader:
            pass
    if backend != "reference":  # the dead pipeline is never touched again
        with pytest.raises(RuntimeError, match="stopped after an error"):
            next(iter(loader))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_failing_in_the_first_batch_is_named(tmp_path, backend):
    """The first batch is fetched in the first loop, inside the code that names files, not
    while the loader is built (DALI's iterator would fetch it outside)."""
    root = broken_tree(tmp_path, FAULTS["truncated-image"])
    loader = loader_for(config_for(root, backend, batch_size=5))  # the broken sample is in batch one
    with pytest.raises(SampleDecodeError, match=BROKEN):
        next(iter(loader))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", CONSTRUCTION_FAULTS + DECODE_FAULTS)
def test_skip_leaves_the_sample_out_and_reports_it(tmp_path, backend, fault, capsys):
    root = broken_tree(tmp_path, FAULTS[fault])
    loader = loader_for(config_for(root, backend, batch_size=1, on_error="skip", verbose=True))
    assert loader.selection.kept == 4 and [n for n, _ in loader.selection.skipped] == [BROKEN]
    for _ in range(2):
        assert sum(x.shape[0] for x, _ in loader) == 4
    err = capsys.readouterr().err
    assert "1 unreadable sample(s) skipped" in err and BROKEN in err
    assert err.count("epoch") >= 2  # reported at the end of every epoch


@pytest.mark.parametrize("case", sorted(HANDLED))
def test_handled_inputs_decode_identically_on_both_paths(tmp_path, case):
    root = broken_tree(tmp_path, HANDLED[case])
    config = config_for(root, "dali", batch_size=5, void_label="ignore", num_workers=1)
    selection, rows = run_pipeline(config, shuffle=False, iterations=1)
    reference = VOCSegmentation(config, "train", selection)
    table = ColorTable.from_config(config)
    for image, label, window, shape, image_id, _ in rows:
        x_ref, y_ref = reference.load(int(image_id[0]), CropWindow(int(window[0]), int(window[1])))
        mask = valid_masks(window, shape, config.crop_size)[0]
        assert np.array_equal(colors_to_indices(label, table, valid=mask).indices, y_ref.numpy())
        assert np.abs(image - x_ref.numpy()).max() <= CPU_IMAGE_TOLERANCE
        assert image.shape[0] == 3  # gray/CMYK became RGB


_NO_HANG = textwrap.dedent("""
    import os, sys
    from dali_voc import LoaderConfig, SampleDecodeError, make_loader
    config = LoaderConfig(root=sys.argv[1], batch_size=2, num_workers=2, verbose=False, backend=sys.argv[2],
                          device="cpu")
    loader = make_loader(config, "train", shuffle=True)
    try:
        for _ in range(3):
            for _ in loader:
                pass
        print("NO ERROR")
    except SampleDecodeError as err:
        print("ERROR", err)
    loader.close()
    del loader
    import gc; gc.collect()
    me = str(os.getpid())
    children = [p for p in os.listdir("/proc") if p.isdigit() and
                open(f"/proc/{p}/stat").read().split(")")[1].split()[1] == me]
    print("CHILDREN", len(children))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_no_hang_and_no_process_left_behind(tmp_path, backend):
    root = broken_tree(tmp_path, FAULTS["truncated-image"])
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", _NO_HANG, str(root), backend], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR" in done.stdout and BROKEN in done.stdout and "NO ERROR" not in done.stdout
    assert "CHILDREN 0" in done.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["dali-gpu-stock", "dali-gpu-nvcomp"])
@pytest.mark.parametrize("case", sorted(HANDLED))
def test_handled_inputs_on_the_gpu_match_the_reference_labels(tmp_path, case, backend):
    """Gray/CMYK/PNG-named JPEGs and RGB labels on the GPU path: labels equal the reference's
    at the windows the GPU loader reports."""
    root = broken_tree(tmp_path, HANDLED[case])
    config = config_for(root, backend, batch_size=5, void_label="ignore", return_meta=True)
    gpu = loader_for(config)
    reference = VOCSegmentation(config, "train", gpu.selection)
    position = {s.index: i for i, s in enumerate(gpu.selection.samples)}
    (batch,) = list(gpu)
    assert batch.images.is_cuda and batch.labels.is_cuda and tuple(batch.labels.shape) == (5, 320, 480)
    labels = batch.labels.cpu()
    for b, (index, window) in enumerate(zip(batch.ids.tolist(), batch.windows.tolist())):
        _, y_ref = reference.load(position[index], CropWindow(*window))
        assert torch.equal(labels[b], y_ref), (case, index)
    if backend == "dali-gpu-nvcomp" and case == "rgb-label":
        assert gpu.fallback_images == 1  # counted, decoded on the CPU
