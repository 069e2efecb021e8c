"""Label colors -> class indices on the GPU: one CuPy elementwise kernel per batch.

The kernel reads the same lookup table as everything else (:attr:`ColorTable.lut`, uploaded
once, 32 MiB), takes each sample's crop window and image size to mark padding, and writes
int64 (or uint8) indices straight into a torch tensor (DLPack, no copy) on torch's current
stream. Unknown colors become ``ignore_index`` and are counted per sample on the device; the
host reads the counts only when it must (strict mode, or end of epoch).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .colors import ColorTable

#: Elementwise-kernel prologue shared by the label kernels: output pixel ``i`` of a
#: ``[B, h, w]`` batch -> sample ``b``, row ``y``, column ``x``.
PIXEL_INDEX_PROLOGUE = r"""
const long long plane = (long long)h * w;
const int b = (int)(i / plane);
const long long rem = i - (long long)b * plane;
const int y = (int)(rem / w);
const int x = (int)(rem - (long long)y * w);
"""

_KERNEL_SOURCE = PIXEL_INDEX_PROLOGUE + r"""
const int sy = geom[4 * b + 0] + y;
const int sx = geom[4 * b + 1] + x;
int v;
if (sy < 0 || sy >= geom[4 * b + 2] || sx < 0 || sx >= geom[4 * b + 3]) {
    v = ignore;  // padding outside the image
} else {
    const long long p = 3 * i;
    v = lut[((int)rgb[p] << 16) | ((int)rgb[p + 1] << 8) | (int)rgb[p + 2]];
    if (v < 0) {
        v = ignore;
        atomicAdd(&unknown[b], 1ULL);
    }
}
out = (T)v;
"""


def _kernel():
    import cupy as cp
    return cp.ElementwiseKernel(
        "raw uint8 rgb, raw int16 lut, raw int32 geom, int32 h, int32 w, int32 ignore",
        "T out, raw uint64 unknown",
        _KERNEL_SOURCE, name="dali_voc_colors_to_indices")


class GPULabelConverter:
    """Callable: uint8 RGB ``[B, h, w, 3]`` CUDA tensor -> class indices ``[B, h, w]``.

    Args:
        table: the color table (its ``lut`` is uploaded once to ``device``).
        dtype: ``torch.int64`` or ``torch.uint8``.
        device: the CUDA device the batches arrive on; default: torch's current device.
            (CuPy keeps its own current device, 0 unless set: without this, rank 1 of a
            multi-GPU job would read a table that lives on GPU 0.)
    """

    def __init__(self, table: ColorTable, dtype: torch.dtype = torch.int64, device: Optional[torch.device] = None):
        import cupy as cp
        self.table = table
        self.dtype = dtype
        self.device = device if device is not None else torch.device("cuda", torch.cuda.current_device())
        with cp.cuda.Device(self.device.index):
            self._lut = cp.asarray(table.lut)
        self._kernel = _kernel()
        self.last_unknown: Optional[torch.Tensor] = None

    def __call__(self, rgb: torch.Tensor, windows: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
        """Convert one batch on torch's current stream (no host synchronisation).

        Args:
            rgb: uint8 ``[B, h, w, 3]`` label colors, CUDA.
            windows: int ``[B, 2]`` crop anchors ``(top, left)``, any device.
            shapes: int ``[B, 2]`` full image ``(height, width)``, any device.

        Returns int64/uint8 ``[B, h, w]`` on ``rgb``'s device. Per-sample unknown-color counts
        of this batch stay on the device in :attr:`last_unknown` (uint64 ``[B]`` as int64).
        """
        import cupy as cp
        if rgb.dtype != torch.uint8 or rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.device != self.device:
            raise ValueError(f"expected uint8 [B, h, w, 3] on {self.device}, got {rgb.dtype} {tuple(rgb.shape)} "
                             f"on {rgb.device}")
        batch, h, w, _ = rgb.shape
        geom = torch.cat([windows.to(torch.int32), shapes.to(torch.int32)], dim=1).contiguous()
        geom = geom.to(rgb.device, non_blocking=True)
        out = torch.empty((batch, h, w), dtype=self.dtype, device=rgb.device)
        unknown = torch.zeros(batch, dtype=torch.int64, device=rgb.device)
        stream = torch.cuda.current_stream(rgb.device)
        with cp.cuda.Device(rgb.device.index), cp.cuda.ExternalStream(stream.cuda_stream):
            self._kernel(cp.from_dlpack(rgb.contiguous()), self._lut, cp.from_dlpack(geom),
                         np.int32(h), np.int32(w), np.int32(self.table.ignore_index),
                         cp.from_dlpack(out), cp.from_dlpack(unknown).view(cp.uint64))
        self.last_unknown = unknown
        return out
