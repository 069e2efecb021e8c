"""A corpus of broken trees: every fault gets the documented behaviour on every loader.

Documented behaviour (README "Bad input"):
* construction: a missing file, a file that is not an image (zero bytes, wrong magic), an
  image/label size mismatch -> an error naming the file; with ``on_error="skip"`` the sample
  is left out and reported.
* decode time: a truncated image or label -> an error naming the file (never a bare DALI
  trace); with ``on_error="skip"`` the split is verified at construction and the sample left out.
* handled: grayscale and CMYK JPEGs decode to RGB, PNG data under a .jpg name decodes, RGB
  (non-palette) labels map through the color table - identically on every path.
* refused from headers and sizes at construction, on every loader and in ``check`` (the scan is
  the one place): 16-bit labels, images of more than 8 bits per sample, data after a label's
  IEND, files larger than their image can need, directories or FIFOs in a file's place, split
  entries or listed file names that are no names (non-UTF-8, too long, paths).
"""

import io
import os
import re
import subprocess
import sys
import textwrap
import zlib

import pytest
import torch
from PIL import Image

from dali_voc import SampleDecodeError, VOCFormatError
from dali_voc.loaders.reference import VOCSegmentation
from dali_voc.datasets.voc import voc_palette
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


def _decodes_as_the_reference(root, backend):
    """One batch of the whole tree through ``backend``, re-created window by window on the
    reference path: the same labels exactly (and unknown-color counts), images within the
    decoders' bounds. Returns the loader's unknown-pixel count."""
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
    assert loader.unknown_pixels == reference.unknown_pixels
    return loader.unknown_pixels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(HANDLED))
def test_handled_inputs_decode_identically_on_every_path(tmp_path, backend, case):
    root = broken_tree(tmp_path, HANDLED[case])
    assert (_decodes_as_the_reference(root, backend) > 0) == (case in _UNKNOWN_IN)


def _same_size_and_time(path, data: bytes) -> None:
    """Overwrite ``path`` (a PNG) with ``data`` padded by a tEXt chunk to the old byte size,
    and give it the old mtime: what ``rsync -t`` or ``cp -p`` of another file leaves."""
    st = path.stat()
    pad = st.st_size - len(data) - 12
    assert pad >= 0
    payload = b"pad\x00" + b"x" * (pad - 4)
    chunk = len(payload).to_bytes(4, "big") + b"tEXt" + payload + zlib.crc32(b"tEXt" + payload).to_bytes(4, "big")
    path.write_bytes(data[:-12] + chunk + data[-12:])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_label_rewritten_with_the_same_size_and_time_is_read_afresh(tmp_path, backend):
    """A loader built, then a label replaced by a short-palette one of the same byte size and
    mtime: the next loader reads its facts afresh (no cache keyed by size and time) and decodes
    its indices without a palette entry as the reference does (unknown, counted)."""
    root = broken_tree(tmp_path, lambda voc: None)
    assert _decodes_as_the_reference(root, backend) == 0
    label = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{BROKEN}.png"
    index = class_stripes(2, *BROKEN_SHAPE)
    index[:40, :60] = 100
    img = Image.fromarray(index, mode="P")
    img.putpalette(voc_palette()[:21 * 3])
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    _same_size_and_time(label, buffer.getvalue())
    assert _decodes_as_the_reference(root, backend) > 0


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
    with pytest.raises(VOCFormatError, match=r"train\.txt names .* \(line 3\): it (holds a path|is a relative)"):
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


#: fault -> what its error must say beside the file's name, on every loader and in ``check``
_SAID = {
    "16-bit-gray-label": r"is a 16-bit PNG; labels hold at most 8 bits",
    "16-bit-rgb-label": r"is a 16-bit PNG; labels hold at most 8 bits",
    "16-bit-gray-png-image": r"is a 16-bit PNG; decoders reduce",
    "16-bit-rgb-png-image": r"is a 16-bit PNG; decoders reduce",
    "16-bit-gray-tiff-image": r"is a 16-bit TIFF; decoders reduce",
    "data-after-label-iend": r"67108864 bytes follow the IEND chunk",
    "data-after-jpeg-end": r"is \d+ bytes, more than a 330x490 image can need",
    "huge-chunk-in-label": r"is \d+ bytes, more than a 330x490 image can need",
    "image-is-a-directory": r"is a directory, not a regular file",
    "label-is-a-fifo": r"is a FIFO, not a regular file",
}


@pytest.mark.parametrize("backend", ["reference", "dali"])
@pytest.mark.parametrize("fault", sorted(_SAID))
def test_refused_files_are_named_with_the_reason_everywhere(tmp_path, backend, fault):
    from dali_voc.tools.check import check_tree
    root = broken_tree(tmp_path, FAULTS[fault])
    with pytest.raises(VOCFormatError, match=rf"{BROKEN}\.(jpg|png):? {_SAID[fault]}"):
        loader_for(config_for(root, backend, batch_size=1))
    found = [p for p in check_tree(root, progress=False).problems if BROKEN in p.path]
    assert [p.severity for p in found] == ["error"] and re.search(_SAID[fault], found[0].detail), found


@pytest.mark.parametrize("backend", ["reference", "dali"])
@pytest.mark.parametrize("fault", ["missing-image", "missing-label"])
def test_a_missing_file_is_a_dali_voc_error_and_a_file_not_found_error(tmp_path, backend, fault):
    from dali_voc import DaliVocError, MissingFileError
    root = broken_tree(tmp_path, FAULTS[fault])
    with pytest.raises(MissingFileError, match=BROKEN) as caught:
        loader_for(config_for(root, backend, batch_size=1))
    assert isinstance(caught.value, DaliVocError) and isinstance(caught.value, FileNotFoundError)


def test_a_label_is_read_only_up_to_its_iend(tmp_path):
    """Whatever follows IEND is never read: the host decoder refuses the file with memory
    bounded by the image (tracemalloc peak), not by the 64 MiB that follow."""
    import tracemalloc
    from dali_voc import PNGFormatError
    from dali_voc.labels.host import read_label
    root = broken_tree(tmp_path, FAULTS["data-after-label-iend"])
    label = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{BROKEN}.png"
    table = config_for(root).label_table()
    tracemalloc.start()
    try:
        with pytest.raises(PNGFormatError, match="67108864 bytes follow the IEND chunk"):
            read_label(label, table)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


#: split-list entries that are no sample names, as bytes in the list -> what the error says
_BAD_ENTRIES = {
    "not-utf8": (b"s_\xff0002", "holds bytes that are not UTF-8 text"),
    "too-long": (b"s" * 300, "is 300 bytes long; file names end at 255 bytes"),
    "path": (b"../JPEGImages/s_0002", "holds a path separator"),
}


@pytest.mark.parametrize("entry", sorted(_BAD_ENTRIES))
@pytest.mark.parametrize("how", ["reference", "dali", "reference-skip", "dali-skip", "load_data_voc", "check"])
def test_split_entries_that_are_no_names_are_named_with_list_and_line(tmp_path, entry, how):
    """One name check (name_problem) for every path: the list and the line are named, with
    ``on_error="skip"`` too (a list is not a sample), and ``check`` reports it."""
    from dali_voc import load_data_voc
    from dali_voc.tools.check import check_tree
    root = broken_tree(tmp_path, lambda voc: None)
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    raw, said = _BAD_ENTRIES[entry]
    split.write_bytes(split.read_bytes().replace(BROKEN.encode(), raw))
    if how == "check":
        found = [p for p in check_tree(root, progress=False).problems if p.kind == "bad-name"]
        assert len(found) == 1 and found[0].path == str(split) and "line 3" in found[0].detail
        assert said in found[0].detail
        return
    with pytest.raises(VOCFormatError, match=rf"train\.txt names .* \(line 3\): it {said}"):
        if how == "load_data_voc":
            load_data_voc(1, (320, 480), root, test_split="train", verbose=False, backend="reference", num_workers=0)
        else:
            backend, _, skip = how.partition("-")
            loader_for(config_for(root, backend, batch_size=1, on_error="skip" if skip else "raise"))


def test_decoder_log_lines_are_dropped_and_other_lines_kept(capfd):
    from dali_voc.loaders.dali_verify import decoder_log_lines_dropped
    with decoder_log_lines_dropped():
        os.write(2, b"\x1b[0;31m[ERROR] \x1b[0m[jpeg_parser] Invalid marker\nlibpng error: PLTE: duplicate\n")
        os.write(2, b"a line of someone else\n")
    assert capfd.readouterr().err == "a line of someone else\n"


@pytest.mark.parametrize("fault", ["truncated-image", "truncated-label", "two-palettes", "unknown-critical-chunk"])
def test_dalis_own_log_lines_stay_off_the_terminal_when_it_verifies(tmp_path, fault, capfd):
    """``on_error="skip"`` verifies the split with DALI's decoder, which prints a line of its own
    for every file it refuses: the user reads only our report naming the file."""
    root = broken_tree(tmp_path, FAULTS[fault])
    loader = loader_for(config_for(root, "dali", batch_size=1, on_error="skip", verbose=True))
    assert sum(x.shape[0] for x, _ in loader) == 4
    err = capfd.readouterr().err
    assert "1 unreadable sample(s) skipped" in err and BROKEN in err
    assert "libpng" not in err and "[ERROR]" not in err, err


@pytest.mark.parametrize("how", ["reference", "dali", "reference-skip", "dali-skip", "check"])
def test_a_file_name_that_is_not_utf8_in_a_listed_folder_is_named(tmp_path, how, capsys):
    """ADE20K's splits are folder listings: the same name check applies to their file names
    (DALI cannot take a path that is not text; the reference path could open it)."""
    from dali_voc.cli import main as cli_main
    from dali_voc.tools.synth import Ade20kSpec, synthesize_ade20k
    synthesize_ade20k(tmp_path, Ade20kSpec(num_train=4, num_val=2), workers=1, progress=False)
    images = tmp_path / "ADEChallengeData2016" / "images" / "training"
    labels = tmp_path / "ADEChallengeData2016" / "annotations" / "training"
    first = sorted(images.iterdir())[0].stem
    bad = os.fsdecode(first.encode() + b"\xff")
    (images / f"{first}.jpg").rename(images / f"{bad}.jpg")
    (labels / f"{first}.png").rename(labels / f"{bad}.png")
    if how == "check":
        assert cli_main(["check", str(tmp_path), "--dataset", "ade20k"]) == 1
        out = capsys.readouterr().out
        assert f"bad-name: {images}/{first}\\xff.jpg" in out and "not UTF-8" in out
        return
    backend, _, skip = how.partition("-")
    config = config_for(tmp_path, backend, dataset="ade20k", batch_size=1, crop_size=(64, 64),
                        on_error="skip" if skip else "raise")
    if skip:
        loader = loader_for(config, "training")
        assert [n for n, _ in loader.selection.skipped] == [bad] and sum(len(x) for x, _ in loader) == 3
        return
    with pytest.raises(VOCFormatError, match=rf"{first}\\xff\.jpg\) cannot be loaded: it holds bytes that are not UTF"):
        loader_for(config, "training")


@pytest.mark.parametrize("how", ["reference", "dali", "check"])
def test_a_split_list_too_large_to_be_a_list_is_not_read(tmp_path, how):
    from dali_voc.tools.check import check_tree
    root = broken_tree(tmp_path, lambda voc: None)
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    with open(split, "r+b") as f:
        f.truncate(65 << 20)  # a sparse hole after the names
    said = rf"split list {split} is {65 << 20} bytes, over the {64 << 20} a list of names can need"
    if how == "check":
        found = check_tree(root, progress=False).problems
        assert [(p.kind, p.path) for p in found] == [("oversized-list", str(split))] and re.search(said, found[0].detail)
        return
    with pytest.raises(VOCFormatError, match=said):
        loader_for(config_for(root, how, batch_size=1))


@pytest.mark.parametrize("how", ["reference", "dali", "check"])
def test_a_split_list_with_a_byte_order_mark_loads(tmp_path, how):
    from dali_voc.tools.check import check_tree
    root = broken_tree(tmp_path, lambda voc: None)
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    split.write_bytes(b"\xef\xbb\xbf" + split.read_bytes().replace(b"\n", b"\r\n"))  # as Windows' Notepad saves
    if how == "check":
        assert check_tree(root, progress=False).clean
        return
    assert sum(len(x) for x, _ in loader_for(config_for(root, how, batch_size=1))) == 5
