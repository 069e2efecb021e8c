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

import pytest
import torch
from PIL import Image

from dali_voc import SampleDecodeError, VOCFormatError
from dali_voc.loaders.reference import VOCSegmentation
from dali_voc.geometry.windows import CropWindow
from tests.helpers import (BROKEN, BROKEN_SHAPE, CONSTRUCTION_FAULTS, CPU_IMAGE_TOLERANCE, DECODE_FAULTS, FAULTS,
                           GPU_IMAGE_MAX_ABS_LEVELS, HANDLED, broken_tree, class_stripes, config_for, image_levels,
                           jpeg_bytes, loader_for, palette_png, textured)

_GPU = pytest.mark.gpu
BACKENDS = ["reference", "dali", "dali-stock", pytest.param("dali-gpu-stock", marks=_GPU),
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
    """Headers are fine, so most loaders are built and name the file when it is decoded; the
    DALI loader with DALI's own PNG decoder checks the labels' PNG rules when it is built."""
    root = broken_tree(tmp_path, FAULTS[fault])
    loader = None
    with pytest.raises(SampleDecodeError, match=BROKEN):
        loader = loader_for(config_for(root, backend, batch_size=1))
        for _ in loader:
            pass
    if loader is not None and backend != "reference":  # the dead pipeline is never touched again
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


#: Unknown-color pixels the loaders count in the broken sample of each handled case, at the
#: windows they draw: only the short palette has any (pixels of indices without an entry).
_UNKNOWN_IN = {"palette-index-without-entry"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(HANDLED))
def test_handled_inputs_decode_identically_on_every_path(tmp_path, backend, case):
    """Each loader's batches, re-created window by window on the reference path: the same
    labels exactly (and unknown-color counts), images within the decoders' bounds."""
    root = broken_tree(tmp_path, HANDLED[case])
    config = config_for(root, backend, batch_size=5, void_label="ignore", return_meta=True)
    loader = loader_for(config)
    reference = VOCSegmentation(config, "train", loader.selection)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    (batch,) = list(loader)
    labels, images = batch.labels.cpu(), batch.images.cpu()
    for b, (index, window) in enumerate(zip(batch.ids.tolist(), batch.windows.tolist())):
        x_ref, y_ref = reference.load(position[index], CropWindow(*window))
        assert torch.equal(labels[b], y_ref), (case, index)
        if backend in ("reference", "dali", "dali-stock"):  # all decode JPEG with libjpeg-turbo
            assert (images[b] - x_ref).abs().max() <= CPU_IMAGE_TOLERANCE
        else:
            assert image_levels(images[b] - x_ref).abs().max() <= GPU_IMAGE_MAX_ABS_LEVELS
    assert (loader.unknown_pixels > 0) == (case in _UNKNOWN_IN) == (reference.unknown_pixels > 0)
    assert loader.unknown_pixels == reference.unknown_pixels


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["image", "label"])
def test_a_file_replaced_by_one_of_another_size_after_the_scan_is_named(tmp_path, backend, which):
    """Sizes are scanned once, at construction; a file that changes size afterwards is named
    when it is loaded (never cropped out of step with its pair)."""
    root = broken_tree(tmp_path, lambda voc: None)
    loader = loader_for(config_for(root, backend, batch_size=1))
    bigger = (400, 560)
    voc = root / "VOCdevkit" / "VOC2012"
    if which == "image":
        (voc / "JPEGImages" / f"{BROKEN}.jpg").write_bytes(jpeg_bytes(textured(9, *bigger)))
    else:
        (voc / "SegmentationClass" / f"{BROKEN}.png").write_bytes(palette_png(class_stripes(9, *bigger)))
    with pytest.raises(SampleDecodeError, match=rf"{BROKEN}\.(jpg|png)"):
        for _ in loader:
            pass


@pytest.mark.parametrize("backend", ["reference", "dali"])
@pytest.mark.parametrize("entry", ["../JPEGImages/s_0002", "/etc/hostname", ".."])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_split_entries_that_are_paths_are_refused(tmp_path, backend, entry, on_error):
    root = broken_tree(tmp_path, lambda voc: None)
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    split.write_text(split.read_text().replace(BROKEN, entry))
    with pytest.raises(VOCFormatError, match=r"train\.txt names .* \(entry 3\): it (holds a path|is a relative)"):
        loader_for(config_for(root, backend, batch_size=1, on_error=on_error))


def _gif_named_jpg(voc, name=BROKEN):
    Image.fromarray(textured(2, *BROKEN_SHAPE)).convert("P").save(voc / "JPEGImages" / f"{name}.jpg", format="GIF")


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_the_dali_loader_verifies_files_with_dalis_own_decoder(tmp_path, backend):
    """GIF data under a .jpg name: PIL (the reference path) decodes it, DALI's decoder does
    not. The DALI loader names it (raise) or leaves it out at construction (skip), instead of
    trusting PIL's verdict and stopping mid-epoch."""
    root = broken_tree(tmp_path, _gif_named_jpg)
    assert sum(len(x) for x, _ in loader_for(config_for(root, "reference", batch_size=1))) == 5
    with pytest.raises(SampleDecodeError, match=rf"{BROKEN}\.jpg: DALI's decoder .* cannot decode it"):
        list(loader_for(config_for(root, backend, batch_size=1)))
    skipping = loader_for(config_for(root, backend, batch_size=1, on_error="skip"))
    assert [n for n, _ in skipping.selection.skipped] == [BROKEN]
    assert sum(len(x) for x, _ in skipping) == 4
