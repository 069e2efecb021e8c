"""Label colors -> class indices on the GPU: one CuPy elementwise kernel per batch.

Used when DALI decodes the label PNGs itself (``label_decoder="dali"`` on the GPU).

The kernel reads the same lookup table as everything else (:attr:`ColorTable.lut`, uploaded
once, 32 MiB), takes each sample's crop window and image size to mark padding, and writes
int64 (or uint8) indices straight into a torch tensor (DLPack, no copy) on torch's current
stream. With augmentation it reads the whole labels and resamples them by the formula of
:mod:`dali_voc.geometry.windows` (scale, crop, flip) in the same pass. Unknown colors become ``ignore_index`` and are counted per sample on the device; the
host reads the counts only when it must (strict mode, or end of epoch).
"""

from __future__ import annotations

import numpy as np
import torch

from .tables import LabelTable
from .decoder import DecodedLabels, LabelBatch, label_on_host
from ..geometry.windows import SOURCE_PIXEL_C

#: Elementwise-kernel prologue shared by the label kernels: output pixel ``i`` of a
#: ``[B, h, w]`` batch -> sample ``b``, row ``y``, column ``x``.
PIXEL_INDEX_PROLOGUE = r"""
const long long plane = (long long)h * w;
const int b = (int)(i / plane);
const long long rem = i - (long long)b * plane;
const int y = (int)(rem / w);
const int x = (int)(rem - (long long)y * w);
"""

#: ``geometry`` per sample: int32 ``[B, 5]``, the columns of
#: :data:`~dali_voc.geometry.windows.GEOMETRY_COLUMNS` (top, left, scaled height, scaled width,
#: flip); ``shapes``: int32 ``[B, 2]`` image height and width. ``src_h, src_w``: the size of the
#: whole labels in ``rgb`` (``[B, src_h, src_w, 3]``), or 0 when ``rgb`` holds them cropped
#: (``[B, h, w, 3]``, no scaling or flip: the formula then reduces to the crop).
_KERNEL_SOURCE = PIXEL_INDEX_PROLOGUE + r"""
const int top = geometry[5 * b + 0], left = geometry[5 * b + 1];
const int sh = geometry[5 * b + 2], sw = geometry[5 * b + 3], flip = geometry[5 * b + 4];
const int H = shapes[2 * b + 0], W = shapes[2 * b + 1];
""" + SOURCE_PIXEL_C + r"""
int v;
if (!inside) {
    v = ignore;  // padding outside the (scaled) image
} else {
    const long long p = src_h > 0 ? 3 * (((long long)b * src_h + sy) * src_w + sx) : 3 * i;
    v = lut[((int)rgb[p] << 16) | ((int)rgb[p + 1] << 8) | (int)rgb[p + 2]];
    if (v < 0) {
        v = ignore;
        atomicAdd(&unknown[b], 1ULL);
    }
}
out = (T)v;
"""


class _StreamPointer:
    """A raw ``cudaStream_t`` (an int) with the CUDA stream protocol, ``(version 0, pointer)``."""

    def __init__(self, pointer: int):
        self.pointer = int(pointer)

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.pointer)


def cupy_stream(torch_stream: torch.cuda.Stream):
    """``torch_stream`` as a CuPy stream (no new stream; CuPy launches on torch's), through
    ``cupy.cuda.Stream.from_external`` (CuPy 14 deprecates ``ExternalStream``, which warns on
    every use); CuPy 13, which lacks it, gets ``ExternalStream``. Use it inside
    ``cupy.cuda.Device(torch_stream.device.index)``."""
    import cupy as cp
    if hasattr(cp.cuda.Stream, "from_external"):
        return cp.cuda.Stream.from_external(_StreamPointer(torch_stream.cuda_stream))
    return cp.cuda.ExternalStream(torch_stream.cuda_stream, torch_stream.device.index)  # pragma: no cover


def _kernel():
    import cupy as cp
    return cp.ElementwiseKernel(
        "raw uint8 rgb, raw int16 lut, raw int32 geometry, raw int32 shapes, int32 h, int32 w, int32 src_h, "
        "int32 src_w, int32 ignore",
        "T out, raw uint64 unknown",
        _KERNEL_SOURCE, name="dali_voc_colors_to_indices")


class CupyColorDecoder:
    """Label colors on the GPU -> class indices, one CuPy kernel per batch (a
    :class:`~dali_voc.labels.decoder.LabelDecoder`).

    Args:
        table: the color table (its ``lut`` is uploaded once to ``device``).
        crop_hw: output ``(height, width)``.
        dtype: ``torch.int64`` or ``torch.uint8``.
        device: the CUDA device the batches arrive on. (CuPy keeps its own current device, 0
            unless set: the table is uploaded under this one, or rank 1 of a multi-GPU job
            would read a table that lives on GPU 0.)
    """

    description = "labels decoded by DALI, mapped on the GPU (CuPy)"
    fallback_images = 0

    def __init__(self, table: LabelTable, crop_hw: tuple[int, int], dtype: torch.dtype, device: torch.device):
        import cupy as cp
        self.table = table
        self.crop_hw = crop_hw
        self.dtype = dtype
        self.device = device
        with cp.cuda.Device(self.device.index):
            self._lut = cp.asarray(table.lut)
        self._kernel = _kernel()

    def decode(self, batch: LabelBatch) -> DecodedLabels:
        """Convert one batch on torch's current stream (no host synchronisation).

        ``batch.data``: uint8 ``[B, h, w, 3]`` label colors on ``device`` (cropped), or
        ``[B, Hmax, Wmax, 3]`` whole labels when ``batch.whole``. Returns int64/uint8
        ``[B, h, w]`` and the per-sample unknown-color counts, both on ``device``.
        """
        import cupy as cp
        rgb = batch.data
        if rgb.dtype != torch.uint8 or rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.device != self.device:
            raise ValueError(f"expected uint8 [B, h, w, 3] on {self.device}, got {rgb.dtype} {tuple(rgb.shape)} "
                             f"on {rgb.device}")
        size = rgb.shape[0]
        h, w = self.crop_hw
        src_h, src_w = (rgb.shape[1], rgb.shape[2]) if batch.whole else (0, 0)
        geometry = torch.from_numpy(np.ascontiguousarray(batch.geometry.table, dtype=np.int32)).to(self.device,
                                                                                                non_blocking=True)
        shapes = torch.from_numpy(np.ascontiguousarray(batch.shapes, dtype=np.int32)).to(self.device, non_blocking=True)
        out = torch.empty((size, h, w), dtype=self.dtype, device=self.device)
        unknown = torch.zeros(size, dtype=torch.int64, device=self.device)
        stream = torch.cuda.current_stream(self.device)
        with cp.cuda.Device(self.device.index), cupy_stream(stream):
            self._kernel(cp.from_dlpack(rgb.contiguous()), self._lut, cp.from_dlpack(geometry), cp.from_dlpack(shapes),
                         np.int32(h), np.int32(w), np.int32(src_h), np.int32(src_w),
                         np.int32(self.table.ignore_index),
                         cp.from_dlpack(out), cp.from_dlpack(unknown).view(cp.uint64))
        for slot in batch.host_slots:  # rare (short palettes): synchronous host copies are fine
            exact = label_on_host(batch, slot, (h, w), self.table)
            out[slot].copy_(torch.from_numpy(exact.indices).to(self.dtype))
            unknown[slot] = exact.unknown_pixels
        return DecodedLabels(out, unknown)

    def finish(self) -> None:
        return None
