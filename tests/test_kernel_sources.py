"""The CUDA kernel sources' arithmetic, run on the host (see tests/kernel_host.py), against NumPy.

These run in CI without a GPU. They check what the kernel text computes, including the
split of work across threads and its barriers; they do not check CuPy/nvCOMP calls, streams
or speed, which only the ``gpu`` tests in tests/test_gpu.py exercise.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from dali_voc.datasets.voc import voc_color_table
from dali_voc.labels.tables import colors_to_indices
from dali_voc.labels.cupy_decoder import _KERNEL_SOURCE as COLORS_BODY
from dali_voc.labels.nvcomp_decoder import _MAP_SOURCE as MAP_BODY
from dali_voc.labels.nvcomp_decoder import _UNFILTER_SOURCE
from dali_voc.labels.nvcomp_plan import FLAG_BAD_CHECKSUM, FLAG_BAD_FILTER, decode_plan_numpy, inflate_plan_numpy, plan_labels
from dali_voc.labels.png import parse_png
from dali_voc.geometry.windows import BatchGeometry, source_pixels, valid_masks
from dali_voc.datasets.voc import VOC_COLORMAP
from tests import kernel_host
from tests.pngtools import damaged_pngs, encode_png

pytestmark = pytest.mark.skipif(kernel_host.compiler() is None, reason="no C++ compiler to run kernel sources on")

UNFILTER_MAIN = r"""
    std::vector<unsigned char> data = load<unsigned char>("inflated");
    std::vector<long long> offsets = load<long long>("offsets");
    std::vector<int> widths = load<int>("widths"), heights = load<int>("heights");
    std::vector<unsigned int> adlers = load<unsigned int>("adlers");
    std::vector<int> threads = load<int>("threads");
    std::vector<int> bad(offsets.size(), 0);
    launch((unsigned int)offsets.size(), (unsigned int)threads[0], [&] {
        dali_voc_png_unfilter(data.data(), offsets.data(), widths.data(), heights.data(), adlers.data(), bad.data());
    });
    save("unfiltered", data);
    save("flags", bad);
"""

MAP_KERNEL = r"""
typedef long long T;
static void crop_map(std::ptrdiff_t i, T& out, const unsigned char* inflated, const long long* offsets,
                     const int* widths, const int* heights, const short* luts, const int* geometry,
                     const int* bad, int h, int w, int ignore, unsigned long long* unknown) {
""" + MAP_BODY + "\n}\n"

MAP_MAIN = r"""
    std::vector<unsigned char> inflated = load<unsigned char>("unfiltered");
    std::vector<long long> offsets = load<long long>("offsets");
    std::vector<int> widths = load<int>("widths"), heights = load<int>("heights");
    std::vector<short> luts = load<short>("luts");
    std::vector<int> geometry = load<int>("geometry"), bad = load<int>("flags"), dims = load<int>("dims");
    const int batch = dims[0], h = dims[1], w = dims[2], ignore = dims[3];
    std::vector<T> out((size_t)batch * h * w);
    std::vector<unsigned long long> unknown(batch, 0);
    for (std::ptrdiff_t i = 0; i < (std::ptrdiff_t)out.size(); ++i) {
        crop_map(i, out[i], inflated.data(), offsets.data(), widths.data(), heights.data(), luts.data(),
                 geometry.data(), bad.data(), h, w, ignore, unknown.data());
    }
    save("out", out);
    save("unknown", unknown);
"""

COLORS_KERNEL = r"""
typedef long long T;
static void colors(std::ptrdiff_t i, T& out, const unsigned char* rgb, const short* lut, const int* geometry,
                   const int* shapes, int h, int w, int src_h, int src_w, int ignore, unsigned long long* unknown) {
""" + COLORS_BODY + "\n}\n"

COLORS_MAIN = r"""
    std::vector<unsigned char> rgb = load<unsigned char>("rgb");
    std::vector<short> lut = load<short>("lut");
    std::vector<int> geometry = load<int>("geometry"), shapes = load<int>("shapes"), dims = load<int>("dims");
    const int batch = dims[0], h = dims[1], w = dims[2], ignore = dims[3], src_h = dims[4], src_w = dims[5];
    std::vector<T> out((size_t)batch * h * w);
    std::vector<unsigned long long> unknown(batch, 0);
    for (std::ptrdiff_t i = 0; i < (std::ptrdiff_t)out.size(); ++i) {
        colors(i, out[i], rgb.data(), lut.data(), geometry.data(), shapes.data(), h, w, src_h, src_w, ignore,
               unknown.data());
    }
    save("out", out);
    save("unknown", unknown);
"""


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    work = tmp_path_factory.mktemp("kernels")
    sources = {"unfilter": ("unfilter", _UNFILTER_SOURCE, UNFILTER_MAIN), "map": ("crop_map", MAP_KERNEL, MAP_MAIN),
               "colors": ("colors", COLORS_KERNEL, COLORS_MAIN)}
    with ThreadPoolExecutor(len(sources)) as pool:  # three compiler processes at once
        built = {key: pool.submit(kernel_host.build, *args, work) for key, args in sources.items()}
        return {key: future.result() for key, future in built.items()}


def _label_batch():
    """PNGs covering every filter type, odd and >128-pixel widths, gray, damage and a fallback."""
    rng = np.random.default_rng(11)
    values = np.array(list(range(21)) + [255, 77], dtype=np.uint8)  # 77: no VOC color
    encoded, names = [], []
    for k, (h, w, filters) in enumerate([(9, 17, [0]), (7, 129, [1]), (8, 300, [2]), (6, 33, [3]), (5, 41, [4]),
                                         (12, 131, [0, 1, 2, 3, 4]), (10, 1, [4, 2, 3, 1])]):
        encoded.append(encode_png(values[rng.integers(0, len(values), size=(h, w))], 3, filters, idat_size=40))
        names.append(f"filters{k}.png")
    gray = rng.integers(0, 256, size=(6, 20)).astype(np.uint8)
    encoded.append(encode_png(gray, 0, [2, 4]))
    names.append("gray.png")
    for name, data in damaged_pngs().items():
        encoded.append(data)
        names.append(f"{name}.png")
    rgb = io.BytesIO()
    Image.new("RGB", (7, 5), (128, 0, 0)).save(rgb, format="PNG")
    encoded.append(rgb.getvalue())
    names.append("rgb.png")
    return encoded, names


def _tables(plan) -> dict[str, np.ndarray]:
    """The plan's buffer from each table's start (what the kernels get as pointers)."""
    return {key: plan.buffer[start:] for key, start in plan.table_offsets.items()}


def _unfilter_inputs(plan, threads: int) -> dict[str, np.ndarray]:
    """The unfilter kernel's arguments: nvCOMP's output (emulated with zlib) and the tables."""
    tables, batch = _tables(plan), len(plan.widths)
    return {
        "inflated": inflate_plan_numpy(plan),
        "offsets": tables["inflated_offsets"][:8 * batch].view(np.int64),
        "widths": tables["widths"][:4 * batch].view(np.int32),
        "heights": tables["heights"][:4 * batch].view(np.int32),
        "adlers": tables["adlers"][:4 * batch].view(np.uint32),
        "threads": np.array([threads], dtype=np.int32),
    }


def _augment_geometry(encoded, windows) -> tuple[np.ndarray, np.ndarray]:
    """Scaled sizes (up, down, exactly 2x and 0.5x, odd factors) and alternating flips."""
    rng = np.random.default_rng(3)
    sizes = []
    for k, data in enumerate(encoded):
        try:
            info = parse_png(data, "x")
            h, w = info.height, info.width
        except Exception:
            h, w = 5, 5
        factor = [2.0, 0.5, 1.37, 0.61, 3.0][k % 5]
        sizes.append((max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))))
    flips = (np.arange(len(encoded)) % 2).astype(np.int32)
    windows[:] = rng.integers(-3, 4, size=windows.shape)
    return np.array(sizes, dtype=np.int32), flips


@pytest.mark.parametrize("threads", [128, 7])
@pytest.mark.parametrize("augmented", [False, True], ids=["crop", "scale-crop-flip"])
def test_png_kernels_match_the_numpy_mirror(binaries, tmp_path, threads, augmented):
    """Unfilter (with its Adler-32 check and flags) then crop+map, run from the kernel text,
    equal :func:`decode_plan_numpy` on every pixel, count and flag. Windows start above and
    left of each image and the crop is larger than any image, so every pixel and padding is
    compared; augmented, each label is also scaled (2x, 0.5x, odd factors) and every other
    one flipped, through the resampling formula in the kernel."""
    encoded, names = _label_batch()
    table = voc_color_table(void_index=255)
    batch = len(encoded)
    windows = np.tile(np.array([[-2, -3]], dtype=np.int32), (batch, 1))
    windows[3] = (1, 4)  # and one window inside its image
    scaled, flips = _augment_geometry(encoded, windows) if augmented else (None, None)
    plan = plan_labels(encoded, names, table, BatchGeometry.of(windows, scaled, flips))
    crop = (16, 310)
    want, want_unknown, want_flags = decode_plan_numpy(plan, crop, table.ignore_index)
    assert want_flags.tolist().count(FLAG_BAD_CHECKSUM) == 3 and want_flags.tolist().count(FLAG_BAD_FILTER) == 1
    assert want_unknown.sum() > 0 and plan.fallback  # the batch exercises unknown colors and a fallback slot

    got = kernel_host.run(binaries["unfilter"], tmp_path, _unfilter_inputs(plan, threads),
                          {"unfiltered": np.uint8, "flags": np.int32})
    assert got["flags"].tolist() == want_flags.tolist()

    tables = _tables(plan)
    inputs = {
        "luts": tables["luts"][:512 * batch].view(np.int16),
        "geometry": tables["geometry"][:20 * batch].view(np.int32),
        "dims": np.array([batch, crop[0], crop[1], table.ignore_index], dtype=np.int32),
    }
    out = kernel_host.run(binaries["map"], tmp_path, inputs, {"out": np.int64, "unknown": np.uint64})
    indices = out["out"].reshape(batch, *crop)
    for slot in plan.fast_slots:  # fallback slots are the host's to fill
        assert np.array_equal(indices[slot], want[slot]), names[slot]
    assert out["unknown"].tolist() == want_unknown.tolist()


def test_unfilter_kernel_without_threads_to_spare_still_checks_sums(binaries, tmp_path):
    """One thread per block: the same flags (the reduction does not depend on blockDim)."""
    encoded, names = _label_batch()
    plan = plan_labels(encoded, names, voc_color_table(), BatchGeometry.of(np.zeros((len(encoded), 2))))
    _, _, want_flags = decode_plan_numpy(plan, (4, 4), 255)
    got = kernel_host.run(binaries["unfilter"], tmp_path, _unfilter_inputs(plan, 1),
                          {"unfiltered": np.uint8, "flags": np.int32})
    assert got["flags"].tolist() == want_flags.tolist()


def test_colors_kernel_resamples_whole_labels_like_numpy(binaries, tmp_path):
    """With whole labels in the buffer, the colors kernel scales, crops and flips them by the
    formula of dali_voc.geometry.windows: equal to :func:`source_pixels` + :func:`colors_to_indices`."""
    rng = np.random.default_rng(8)
    table = voc_color_table(void_index=255)
    batch, src_h, src_w, h, w = 4, 23, 31, 20, 26
    palette = np.array(list(VOC_COLORMAP) + [(224, 224, 192), (1, 2, 3)], dtype=np.uint8)
    rgb = palette[rng.integers(0, len(palette), size=(batch, src_h, src_w))]
    windows = np.array([[0, 0], [-3, -5], [4, 6], [-1, 30]], dtype=np.int32)
    shapes = np.array([[23, 31], [11, 17], [20, 30], [23, 8]], dtype=np.int32)
    scaled = np.array([[46, 62], [5, 9], [27, 41], [23, 8]], dtype=np.int32)
    flips = np.array([0, 1, 1, 0], dtype=np.int32)
    inputs = {"rgb": rgb, "lut": table.lut, "geometry": BatchGeometry.of(windows, scaled, flips).table, "shapes": shapes,
              "dims": np.array([batch, h, w, table.ignore_index, src_h, src_w], dtype=np.int32)}
    got = kernel_host.run(binaries["colors"], tmp_path, inputs, {"out": np.int64, "unknown": np.uint64})
    indices = got["out"].reshape(batch, h, w)
    rows, cols, row_ok, col_ok = source_pixels(windows, shapes, (h, w), scaled, flips)
    for b in range(batch):
        colors = rgb[b][rows[b][:, None], cols[b][None, :]]
        want = colors_to_indices(colors, table, valid=row_ok[b][:, None] & col_ok[b][None, :])
        assert np.array_equal(indices[b], want.indices.astype(np.int64)), b
        assert int(got["unknown"][b]) == want.unknown_pixels, b
    assert int(got["unknown"].sum()) > 0 and (indices == table.ignore_index).any()


def test_colors_kernel_matches_the_numpy_table_on_every_color_void_unknowns_and_padding(binaries, tmp_path):
    """gpu_labels' kernel text against :func:`colors_to_indices`: all 21 colormap colors, the
    void color, random unknown colors, and windows that reach past the image (padding)."""
    rng = np.random.default_rng(5)
    table = voc_color_table(void_index=0)
    batch, h, w = 4, 20, 30
    palette = np.array(list(VOC_COLORMAP) + [(224, 224, 192)], dtype=np.uint8)
    rgb = palette[rng.integers(0, len(palette), size=(batch, h, w))]
    rgb[0, :2, :22] = palette[:, None].transpose(1, 0, 2)[0]  # every color at least once
    unknown_colors = rng.integers(0, 256, size=(7, 3)).astype(np.uint8)
    rgb[1, 5, :7] = unknown_colors
    windows = np.array([[0, 0], [-3, -5], [4, 6], [-1, 2]], dtype=np.int32)
    shapes = np.array([[20, 30], [25, 40], [21, 33], [12, 20]], dtype=np.int32)
    masks = valid_masks(windows, shapes, (h, w))
    inputs = {
        "rgb": rgb,
        "lut": table.lut,
        "geometry": BatchGeometry.of(windows, shapes).table,
        "shapes": shapes,
        "dims": np.array([batch, h, w, table.ignore_index, 0, 0], dtype=np.int32),
    }
    got = kernel_host.run(binaries["colors"], tmp_path, inputs, {"out": np.int64, "unknown": np.uint64})
    indices = got["out"].reshape(batch, h, w)
    for b in range(batch):
        want = colors_to_indices(rgb[b], table, valid=masks[b])
        assert np.array_equal(indices[b], want.indices.astype(np.int64)), b
        assert int(got["unknown"][b]) == want.unknown_pixels, b
    assert int(got["unknown"][1]) >= 1 and (indices[1][~masks[1]] == table.ignore_index).all()


CUDA_WRAPPERS = r"""
#include <cstddef>
template <typename X>
struct Raw {  // stands in for CuPy's CArray as a raw argument: operator[] on a flat index
    X* data;
    __device__ X& operator[](std::ptrdiff_t k) const { return data[k]; }
};
typedef long long T;
extern "C" __global__ void crop_map(Raw<unsigned char> inflated, Raw<long long> offsets, Raw<int> widths,
                                    Raw<int> heights, Raw<short> luts, Raw<int> geometry, Raw<int> bad, int h,
                                    int w, int ignore, Raw<T> out_array, Raw<unsigned long long> unknown,
                                    std::ptrdiff_t size) {
    for (std::ptrdiff_t i = blockIdx.x * (std::ptrdiff_t)blockDim.x + threadIdx.x; i < size;
         i += (std::ptrdiff_t)blockDim.x * gridDim.x) {
        T& out = out_array[i];
        {
""" + MAP_BODY + r"""
        }
    }
}
extern "C" __global__ void colors(Raw<unsigned char> rgb, Raw<short> lut, Raw<int> geometry, Raw<int> shapes,
                                  int h, int w, int src_h, int src_w, int ignore, Raw<T> out_array, Raw<unsigned long long> unknown,
                                  std::ptrdiff_t size) {
    for (std::ptrdiff_t i = blockIdx.x * (std::ptrdiff_t)blockDim.x + threadIdx.x; i < size;
         i += (std::ptrdiff_t)blockDim.x * gridDim.x) {
        T& out = out_array[i];
        {
""" + COLORS_BODY + r"""
        }
    }
}
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc (CUDA toolkit) on this machine")
def test_kernel_sources_compile_as_cuda_for_hopper(tmp_path):
    """The raw kernel and both elementwise bodies (in a wrapper shaped like CuPy's) compile
    with nvcc for sm_90 with warnings as errors. On a GPU, CuPy compiles them with NVRTC."""
    for name, source in (("unfilter", _UNFILTER_SOURCE), ("elementwise", CUDA_WRAPPERS)):
        path = tmp_path / f"{name}.cu"
        path.write_text(source)
        done = subprocess.run(["nvcc", "-arch=sm_90", "-std=c++17", "-Werror", "all-warnings", "-c", str(path),
                               "-o", str(tmp_path / f"{name}.o")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stderr}"
