"""GPU path: the CuPy kernel and the DALI loader on CUDA. Skipped without a CUDA device."""

import numpy as np
import pytest
import torch

from dali_voc.datasets.voc import voc_color_table
from dali_voc import DALILoader, resolve
from dali_voc.labels.tables import colors_to_indices
from dali_voc.labels.decoder import LabelBatch
from dali_voc.datasets.voc import VOC_COLORMAP, VOID_COLOR
from dali_voc.geometry.windows import BatchGeometry, CropWindow, valid_masks
from tests.helpers import (GPU_IMAGE_MAX_ABS_LEVELS, GPU_IMAGE_MEAN_ABS_LEVELS, class_stripes, config_for,
                           coordinate_rgb, image_levels, make_tree, raw_image, reference_label_indices, require_dali)

pytestmark = pytest.mark.gpu

JPEG_SHAPES = [(375, 500), (333, 500), (500, 375), (300, 500), (400, 520), (340, 490), (320, 480), (366, 500)]


@pytest.fixture(scope="module")
def jpeg_coord_tree(tmp_path_factory):
    """Real JPEGs (quality 95, 4:4:4) of coordinate-encoding images, so the GPU's JPEG decoders
    (nvJPEG, the hardware decoder) run, with palette labels of class stripes (the nvCOMP path
    takes them; none falls back to the CPU). Mixed sizes, some below the crop."""
    from PIL import Image

    from dali_voc.datasets.voc import IMAGE_DIR
    root = tmp_path_factory.mktemp("jpeg-coords")
    voc = make_tree(root, JPEG_SHAPES, label_fn=class_stripes)
    for i, (h, w) in enumerate(JPEG_SHAPES):
        Image.fromarray(coordinate_rgb(h, w, i)).save(voc / IMAGE_DIR / f"s_{i:04d}.jpg", format="JPEG", quality=95,
                                                      subsampling=0)
    return root


def assert_image_crop_at(image: np.ndarray, window, image_hw, crop_hw, flip: bool = False) -> int:
    """``image`` (float32 [3, h, w], normalized) is the crop at ``window`` of a JPEG coordinate
    image of size ``image_hw``: R and G read back ``y mod 256`` and ``x mod 256`` within the
    JPEG error, with an unbiased mean (a crop one pixel off shifts the mean by a whole level),
    and the padding is 0. Returns the pixels compared."""
    (top, left), (h, w), (ch, cw) = window, image_hw, crop_hw
    raw = raw_image(image).astype(np.int64)
    ty = top + np.arange(ch)[:, None]
    xs = np.arange(cw)[None, :]
    tx = left + (cw - 1 - xs if flip else xs)
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    usable = inside & (ty % 256 >= 4) & (ty % 256 <= 251) & (tx % 256 >= 4) & (tx % 256 <= 251)
    assert usable.sum() > 1000
    for channel, want in ((0, ty % 256), (1, tx % 256)):
        error = (raw[..., channel] - np.broadcast_to(want, raw.shape[:2]))[usable]
        assert np.abs(error).max() <= 6 and abs(error.mean()) < 0.5, (channel, window, error.mean())
    assert (image[:, ~inside] == 0).all()
    return int(usable.sum())


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8])
@pytest.mark.parametrize("void_index", [0, 255])
def test_kernel_matches_numpy_on_every_color_void_and_unknowns(dtype, void_index):
    from dali_voc.labels.cupy_decoder import CupyColorDecoder
    table = voc_color_table(void_index=void_index)
    rng = np.random.default_rng(0)
    known = np.array(list(VOC_COLORMAP) + [VOID_COLOR], dtype=np.uint8)
    batch, h, w = 4, 37, 53
    rgb = known[rng.integers(0, len(known), size=(batch, h, w))]
    unknown_spots = rng.random((batch, h, w)) < 0.1
    rgb[unknown_spots] = rng.integers(0, 256, size=(int(unknown_spots.sum()), 3), dtype=np.uint8)
    windows = np.array([[0, 0], [-3, 5], [2, -4], [10, 10]], dtype=np.int32)
    shapes = np.array([[37, 53], [30, 60], [40, 45], [20, 30]], dtype=np.int32)
    masks = valid_masks(windows, shapes, (h, w))
    expected = [colors_to_indices(rgb[b], table, valid=masks[b]) for b in range(batch)]
    convert = CupyColorDecoder(table, (h, w), dtype, torch.device("cuda", 0))
    paths = tuple(f"{b}.png" for b in range(batch))
    got = convert.decode(LabelBatch(torch.from_numpy(rgb).cuda(), BatchGeometry.of(windows, shapes), shapes, paths))
    assert got.labels.dtype == dtype and got.labels.is_cuda and got.unknown.is_cuda
    assert np.array_equal(got.labels.cpu().numpy().astype(np.int64), np.stack([e.indices for e in expected]))
    assert got.unknown.cpu().tolist() == [e.unknown_pixels for e in expected]


def _gpu_config(root, label_decoder="dali", **kw):
    return config_for(root, "dali-gpu-stock" if label_decoder == "dali" else "dali-gpu-nvcomp", **kw)


def test_gpu_pipeline_labels_equal_reference_and_images_within_tolerance(synth_root):
    require_dali()
    from dali_voc.labels.cupy_decoder import CupyColorDecoder
    from dali_voc.loaders.pipeline import build_pipeline
    from dali_voc.loaders.reference import VOCSegmentation
    from dali_voc.datasets.scan import load_selection
    config = _gpu_config(synth_root, batch_size=8, small_images="pad", void_label="ignore")
    selection = load_selection(config.root, "train", config.crop_size, config.small_image_policy)
    resolved = resolve(config)
    assert resolved.use_gpu and resolved.label_path == "dali"
    pipe = build_pipeline(config, resolved, selection.samples, shuffle=True)
    pipe.build()
    reference = VOCSegmentation(config, "train", selection)
    position = {s.index: i for i, s in enumerate(selection.samples)}
    convert = CupyColorDecoder(config.label_table(), config.crop_size, torch.int64, torch.device(resolved.device_name))
    mean_abs, max_abs = [], 0.0
    for _ in range(5):
        images, labels, windows, shapes, _, image_ids, label_ids = pipe.run()
        images, labels = images.as_cpu(), labels.as_cpu()
        labels_t = torch.stack([torch.from_numpy(np.array(labels[b])) for b in range(len(labels))]).cuda()
        win = np.stack([np.array(windows[b]) for b in range(len(windows))]).astype(np.int32)
        shp = np.stack([np.array(shapes[b]) for b in range(len(shapes))]).astype(np.int32)
        paths = tuple(str(b) for b in range(len(win)))
        y = convert.decode(LabelBatch(labels_t, BatchGeometry.of(win, shp), shp, paths)).labels.cpu().numpy()
        for b in range(len(images)):
            idx = int(np.array(image_ids[b])[0])
            assert idx == int(np.array(label_ids[b])[0])
            x_ref, y_ref = reference.load(position[idx], CropWindow(int(win[b, 0]), int(win[b, 1])))
            assert np.array_equal(y[b], y_ref.numpy())
            diff = np.abs(image_levels(np.array(images[b]) - x_ref.numpy()))
            mean_abs.append(float(diff.mean()))
            max_abs = max(max_abs, float(diff.max()))
    print(f"GPU vs reference image difference: mean {np.mean(mean_abs):.3f}, max {max_abs:.1f} uint8 levels")
    assert np.mean(mean_abs) <= GPU_IMAGE_MEAN_ABS_LEVELS and max_abs <= GPU_IMAGE_MAX_ABS_LEVELS


def test_gpu_loader_multi_epoch(synth_root):
    """Three epochs of the shipped GPU loader (labels through nvCOMP): every label equals the
    reference's at the reported window, every image is within the GPU bound of it, and each
    epoch yields each kept sample at most once."""
    require_dali()
    from dali_voc.loaders.reference import VOCSegmentation
    config = _gpu_config(synth_root, "nvcomp", batch_size=4, void_label="ignore", return_meta=True)
    loader = DALILoader(config, "train", shuffle=True)
    assert loader.resolved.use_gpu and loader.resolved.cuda_device == torch.cuda.current_device()
    reference = VOCSegmentation(config, "train", loader.selection)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    mean_abs, max_abs = [], 0.0
    for _ in range(3):
        seen = []
        for x, y, windows, ids, *_ in loader:
            assert x.is_cuda and y.is_cuda and x.dtype == torch.float32 and y.dtype == torch.int64
            assert x.shape == (4, 3, 320, 480) and y.shape == (4, 320, 480)
            x, y = x.cpu(), y.cpu()
            for b, (index, window) in enumerate(zip(ids.tolist(), windows.tolist())):
                x_ref, y_ref = reference.load(position[index], CropWindow(*window))
                assert torch.equal(y[b], y_ref), (index, window)
                diff = image_levels(x[b] - x_ref).abs()
                mean_abs.append(float(diff.mean()))
                max_abs = max(max_abs, float(diff.max()))
            seen += ids.tolist()
        assert len(seen) == len(loader) * 4 and len(set(seen)) == len(seen)
    assert loader.unknown_pixels == 0
    assert np.mean(mean_abs) <= GPU_IMAGE_MEAN_ABS_LEVELS and max_abs <= GPU_IMAGE_MAX_ABS_LEVELS


def test_gpu_crops_sit_at_the_windows_the_cpu_pipeline_draws(jpeg_coord_tree):
    """Same seed: the GPU pipeline yields the CPU pipeline's samples in the same order, and its
    crops (GPU operators) sit at the CPU pipeline's windows: the image crop, read back from the
    JPEG coordinates, and the label crop, equal to the CPU pipeline's. (The windows are CPU
    nodes in both graphs: comparing the window outputs alone would compare them with
    themselves.)"""
    from tests.helpers import run_pipeline

    def rows(backend):
        config = config_for(jpeg_coord_tree, backend, batch_size=4, seed=3, small_images="pad")
        return run_pipeline(config, iterations=4)

    selection, cpu = rows("dali")
    _, gpu = rows("dali-gpu-stock")
    sizes = {s.index: (s.height, s.width) for s in selection.samples}
    assert [int(r.image_ids[0]) for r in gpu] == [int(r.image_ids[0]) for r in cpu]
    for on_gpu, on_cpu in zip(gpu, cpu):
        window = tuple(int(v) for v in on_cpu.windows)
        assert_image_crop_at(on_gpu.images, window, sizes[int(on_cpu.image_ids[0])], (320, 480))
        assert np.array_equal(on_gpu.labels, on_cpu.labels), window


@pytest.mark.parametrize("known_sizes", [False, True])
def test_gpu_png_decoder_matches_pil_on_synthetic_labels_and_every_filter_type(synth_root, known_sizes):
    from dali_voc.labels.nvcomp_decoder import NvcompLabelDecoder
    from dali_voc.datasets.voc import VOCLayout, read_split
    from tests.pngtools import encode_png
    table = voc_color_table(void_index=255)
    layout = VOCLayout.locate(synth_root)
    names = read_split(layout, "train")[:16]
    encoded = [layout.label_path(n).read_bytes() for n in names]
    from dali_voc.datasets.scan import png_size
    shapes = np.array([png_size(layout.label_path(n)) for n in names])
    rng = np.random.default_rng(1)
    for filters in ([1], [2], [3], [4], [0, 1, 2, 3, 4]):  # forced filter types, odd sizes
        h, w = int(rng.integers(330, 380)), int(rng.integers(481, 501))
        values = np.array(list(range(21)) + [255], dtype=np.uint8)
        encoded.append(encode_png(values[rng.integers(0, 22, size=(h, w))], 3, filters, idat_size=4096))
        names.append(f"forced{filters}.png")
        shapes = np.vstack([shapes, [h, w]])
    windows = np.stack([rng.integers(-5, np.maximum(shapes[:, 0] - 320, 0) + 1),
                        rng.integers(-5, np.maximum(shapes[:, 1] - 480, 0) + 1)], axis=1)
    decoder = NvcompLabelDecoder(table, (320, 480), torch.int64, torch.device("cuda", 0), known_sizes=known_sizes)
    y = decoder.decode_files(encoded, names, BatchGeometry.of(windows, shapes), shapes).labels.cpu().numpy()
    decoder.finish()
    for k in range(len(names)):
        want = reference_label_indices(encoded[k], tuple(windows[k]), tuple(shapes[k]), (320, 480), table)
        assert np.array_equal(y[k], want.indices), names[k]
    assert decoder.fallback_images == 0


def test_gpu_loader_with_nvcomp_labels_equals_stock_labels(synth_root):
    """Same seed, same windows: labels through nvCOMP equal labels through DALI's decoder."""
    require_dali()
    def run(decoder):
        loader = DALILoader(_gpu_config(synth_root, batch_size=4, void_label="ignore", seed=4,
                                        label_decoder=decoder, small_images="pad"), "train", shuffle=True)
        assert loader.resolved.label_path == decoder
        return [y.cpu() for _ in range(2) for _, y in loader]

    nvcomp, stock = run("nvcomp"), run("dali")
    assert len(nvcomp) == len(stock) > 0
    assert all(torch.equal(a, b) for a, b in zip(nvcomp, stock))


@pytest.mark.parametrize("decoder", ["dali", "nvcomp", "nvcomp-known-sizes"])
def test_gpu_loader_labels_equal_reference_batch_by_batch(synth_root, decoder):
    """load_data_voc-style GPU batches: labels exactly the reference's at the same windows
    (nvCOMP also with the sizes from the headers, over batches of different sizes)."""
    require_dali()
    from dali_voc.loaders.reference import VOCSegmentation
    known_sizes = decoder.endswith("known-sizes")
    config = _gpu_config(synth_root, batch_size=6, void_label="ignore", small_images="pad", last_batch="partial",
                         label_decoder=decoder.removesuffix("-known-sizes"), nvcomp_known_sizes=known_sizes,
                         return_meta=True)
    loader = DALILoader(config, "train", shuffle=True)
    assert loader.resolved.nvcomp_known_sizes == known_sizes
    assert loader.selection.kept % 6, "the split must end in a short batch"
    sizes = []
    reference = VOCSegmentation(config, "train", loader.selection)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    for _ in range(2):
        for x, y, windows, ids, *_ in loader:
            assert x.is_cuda and y.is_cuda
            y = y.cpu()
            sizes.append(len(ids))
            for b, (index, window) in enumerate(zip(ids.tolist(), windows.tolist())):
                _, y_ref = reference.load(position[index], CropWindow(*window))
                assert torch.equal(y[b], y_ref), (decoder, index, window)
    assert set(sizes) == {6, loader.selection.kept % 6} and sum(sizes) == 2 * loader.selection.kept
    assert loader.unknown_pixels == 0 and loader.fallback_images == 0


@pytest.mark.parametrize("known_sizes", [False, True])
def test_gpu_png_decoder_names_labels_with_damaged_image_data(known_sizes):
    """Valid chunk CRCs, wrong image data. Either nvCOMP refuses the batch (documented for an
    output that does not fit: the too-long stream) and the label is named at once, or the
    kernels flag it (bad checksum, short stream, bad filter type): ignore_index over that
    label, the others intact, and the next check names it."""
    from dali_voc.labels.nvcomp_decoder import NvcompLabelDecoder
    from dali_voc.errors import PNGFormatError
    from tests.pngtools import damaged_pngs
    files = damaged_pngs()
    table = voc_color_table(void_index=255)
    zeros, shape = np.zeros((2, 2), np.int64), np.array([[6, 11], [6, 11]])
    refused = []
    for kind in ("long", "checksum", "short", "filter"):
        decoder = NvcompLabelDecoder(table, (6, 11), torch.int64, torch.device("cuda", 0), known_sizes=known_sizes)
        try:
            y = decoder.decode_files([files["good"], files[kind]], ["good.png", f"{kind}.png"],
                                     BatchGeometry.of(zeros, shape), shape)
            y = y.labels.cpu()
        except PNGFormatError as err:
            assert str(err).startswith(f"{kind}.png: image data"), err
            refused.append(kind)
            continue
        assert (y[1] == 255).all() and (y[0] != 255).all(), kind
        with pytest.raises(PNGFormatError, match=rf"{kind}\.png: "):
            decoder.finish()
    print(f"nvCOMP refused at once: {refused or 'none'}; the rest were flagged by the kernels")
    assert set(refused) <= {"long", "short"}, refused


def _labels_and_two_window_sets(synth_root, n=8):
    """``n`` synthetic label files, their shapes, two different sets of windows and what the
    reference makes of the labels at the second set (int64 ``[n, 320, 480]``)."""
    from dali_voc.datasets.scan import png_size
    from dali_voc.datasets.voc import VOCLayout, read_split
    layout = VOCLayout.locate(synth_root)
    names = read_split(layout, "train")[:n]
    encoded = [layout.label_path(n).read_bytes() for n in names]
    shapes = np.array([png_size(layout.label_path(n)) for n in names])
    first = np.zeros((len(names), 2), np.int64)
    second = np.stack([np.maximum(shapes[:, 0] - 320, 0) // 2 + 3, np.maximum(shapes[:, 1] - 480, 0) // 2 - 7], axis=1)
    table = voc_color_table(void_index=255)
    want = np.stack([reference_label_indices(encoded[k], tuple(second[k]), tuple(shapes[k]), (320, 480), table).indices
                     for k in range(len(names))])
    return names, encoded, shapes, first, second, torch.from_numpy(want)


def _late(decoder):
    """Make the decoder's private stream ~1 s late: a sleep queued just before its kernels, after
    nvCOMP's own synchronisation (see NvcompLabelDecoder._decode)."""
    real_unfilter = decoder._unfilter

    def late_unfilter(*args, **kwargs):  # runs with the private stream current
        torch.cuda._sleep(2_000_000_000)
        return real_unfilter(*args, **kwargs)

    decoder._unfilter = late_unfilter


def test_gpu_png_decoder_consumer_waits_for_a_late_producer(synth_root):
    """The hand-off must not be trusted to timing: the private stream is made late and the
    caller copies the labels at once on its (default) stream. The second call uses other
    windows than the first, so a copy that ran before the kernels cannot pass by reading the
    first call's result from a reused block; it is compared with the reference. Without
    ``consumer.wait_event`` the copy reads the output before the kernels wrote it."""
    from dali_voc.labels.nvcomp_decoder import NvcompLabelDecoder
    names, encoded, shapes, first, second, want = _labels_and_two_window_sets(synth_root)
    decoder = NvcompLabelDecoder(voc_color_table(void_index=255), (320, 480), torch.int64, torch.device("cuda", 0))
    warm = decoder.decode_files(encoded, names, BatchGeometry.of(first, shapes), shapes).labels.cpu()  # kernels compiled, codec made
    assert not torch.equal(warm, want)  # the two window sets give different labels
    _late(decoder)
    y = decoder.decode_files(encoded, names, BatchGeometry.of(second, shapes), shapes).labels
    copy = y.clone()  # on the caller's stream, queued immediately
    torch.cuda.synchronize()
    decoder.finish()
    assert torch.equal(copy.cpu(), want)


def test_gpu_png_decoder_output_is_ready_on_the_callers_side_stream(synth_root):
    """The caller works on a side stream (not the default one) and the producer is late: the
    labels copied at once on the side stream are the finished ones, so the decoder made the
    caller's CURRENT stream wait (waiting on the default stream would not do)."""
    from dali_voc.labels.nvcomp_decoder import NvcompLabelDecoder
    names, encoded, shapes, first, second, want = _labels_and_two_window_sets(synth_root)
    decoder = NvcompLabelDecoder(voc_color_table(void_index=255), (320, 480), torch.int64, torch.device("cuda", 0))
    decoder.decode_files(encoded, names, BatchGeometry.of(first, shapes), shapes).labels.cpu()
    _late(decoder)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = decoder.decode_files(encoded, names, BatchGeometry.of(second, shapes), shapes).labels
        copy = y.clone()
    side.synchronize()
    copied = copy.cpu()  # the side stream is done: whatever the clone read is final
    torch.cuda.synchronize()
    decoder.finish()
    assert torch.equal(copied, want)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_color_table_lives_on_the_resolved_device(synth_root):
    """CuPy's current device is not torch's: the table must be uploaded to the batch's GPU,
    the one ``resolve`` chose (torch's current device when the loader is built)."""
    import cupy as cp

    from dali_voc.labels.cupy_decoder import CupyColorDecoder
    with torch.cuda.device(1):
        resolved = resolve(_gpu_config(synth_root))
    assert resolved.cuda_device == 1
    convert = CupyColorDecoder(voc_color_table(), (4, 4), torch.int64, torch.device(resolved.device_name))
    assert convert._lut.device.id == 1
    rgb = torch.zeros((1, 4, 4, 3), dtype=torch.uint8, device="cuda:1")
    y = convert.decode(LabelBatch(rgb, BatchGeometry.of(np.zeros((1, 2)), np.array([[4, 4]])), np.array([[4, 4]], np.int32),
                                   ("x.png",))).labels
    assert y.device == torch.device("cuda", 1) and (y == 0).all()
    assert cp.cuda.Device().id == 0  # CuPy's own current device was left alone


@pytest.mark.parametrize("decoder", ["dali", "nvcomp"])
@pytest.mark.parametrize("preset", ["torchvision", "mmseg"])
def test_gpu_augmented_batches_equal_the_reference_at_the_drawn_parameters(jpeg_coord_tree, decoder, preset):
    """Scale, crop, flip and jitter on the GPU (real JPEGs, palette labels), both label
    decoders: every label equals the reference's at DALI's drawn parameters, pixel for pixel;
    images within the GPU bounds (GPU JPEG decoding, resize and jitter differ)."""
    require_dali()
    from dali_voc.loaders.reference import VOCSegmentation
    from tests.test_augment import recreate
    config = _gpu_config(jpeg_coord_tree, label_decoder=decoder, batch_size=4, augment=preset, void_label="ignore",
                         return_meta=True)
    loader = DALILoader(config, "train", shuffle=True)
    reference = VOCSegmentation(config, "train", loader.selection)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    flips, mean_abs, max_abs = set(), [], 0.0
    for _ in range(3):
        for batch in loader:
            assert batch.images.is_cuda and batch.labels.is_cuda
            labels, images = batch.labels.cpu(), batch.images.cpu()
            for k in range(len(batch.ids)):
                x_ref, y_ref = recreate(reference, position, batch, k)
                assert torch.equal(labels[k], y_ref), (decoder, preset, int(batch.ids[k]))
                diff = image_levels(images[k] - x_ref).abs()
                mean_abs.append(float(diff.mean()))
                max_abs = max(max_abs, float(diff.max()))
                flips.add(bool(batch.flips[k]))
    print(f"GPU augmented ({decoder}, {preset}) vs reference: mean {np.mean(mean_abs):.3f}, max {max_abs:.1f} levels")
    assert flips == {False, True} and loader.fallback_images == 0
    assert np.mean(mean_abs) <= GPU_IMAGE_MEAN_ABS_LEVELS and max_abs <= GPU_IMAGE_MAX_ABS_LEVELS


@pytest.mark.parametrize("decoder", ["dali", "nvcomp"])
def test_gpu_images_are_cropped_at_the_reported_window(jpeg_coord_tree, decoder):
    """Real JPEGs through the GPU loader (nvJPEG / the hardware decoder): the coordinates read
    back from X are the reported window's within the JPEG error and without bias, padding is 0,
    and the palette labels equal the reference's at that window (none decoded on the CPU)."""
    require_dali()
    from dali_voc.loaders.reference import VOCSegmentation
    config = _gpu_config(jpeg_coord_tree, label_decoder=decoder, batch_size=2, small_images="pad", return_meta=True,
                         void_label="ignore")
    loader = DALILoader(config, "train", shuffle=True)
    reference = VOCSegmentation(config, "train", loader.selection)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    sizes = {s.index: (s.height, s.width) for s in loader.selection.samples}
    checked = 0
    for _ in range(2):
        for batch in loader:
            images, labels = batch.images.cpu().numpy(), batch.labels.cpu()
            for k in range(len(batch.ids)):
                index, window = int(batch.ids[k]), tuple(batch.windows[k].tolist())
                assert_image_crop_at(images[k], window, sizes[index], config.crop_size)
                assert torch.equal(labels[k], reference.load(position[index], CropWindow(*window))[1]), (index, window)
                checked += 1
    assert checked == 2 * len(JPEG_SHAPES) and loader.fallback_images == 0


@pytest.mark.parametrize("decoder", ["dali", "nvcomp"])
def test_gpu_loader_resumes_from_its_state(jpeg_coord_tree, decoder):
    """state_dict() mid-epoch on the GPU, load_state_dict() into a new loader: the rest of the
    run equals an uninterrupted one (hw_decoder_load=0: every JPEG on the same decoder, so the
    images are bit-identical too)."""
    require_dali()
    from dali_voc.batch import Batch
    config = _gpu_config(jpeg_coord_tree, label_decoder=decoder, batch_size=2, small_images="pad", return_meta=True,
                         hw_decoder_load=0.0, augment="mmseg")
    def copied(batch):
        return Batch(*(t.cpu().clone() for t in batch))  # DALI may reuse its buffers

    uninterrupted = DALILoader(config, "train", shuffle=True)
    whole = [copied(b) for _ in range(2) for b in uninterrupted]  # two epochs
    first = DALILoader(config, "train", shuffle=True)
    it = iter(first)
    done = [copied(next(it)) for _ in range(2)]
    state = first.state_dict()
    resumed = DALILoader(config, "train", shuffle=True)
    resumed.load_state_dict(state)
    rest = [copied(b) for b in resumed] + [copied(b) for b in resumed]  # the rest of epoch 0, then epoch 1
    assert len(done) + len(rest) == len(whole) == 2 * len(resumed)
    for got, want in zip(done + rest, whole):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_the_doctor_finds_every_path_agrees_on_this_gpu(tmp_path, capsys):
    """python -m dali_voc doctor on the GPU: every path available here runs and agrees."""
    require_dali()
    import json

    from dali_voc.cli import main
    out = tmp_path / "doctor.json"
    code = main(["doctor", "--seconds", "0", "--no-progress", "--json", str(out)])
    print(capsys.readouterr().out)
    report = json.loads(out.read_text())
    ran = [p["name"] for p in report["paths"] if p["available"]]
    assert "dali-gpu" in ran and code == 0 and report["agrees"], ran
