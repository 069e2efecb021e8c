"""Label PNGs decoded on the GPU: one copy, one batched nvCOMP inflate, two CuPy kernels.

Per batch (all on torch's current stream, no per-image synchronisation):

1. host: :func:`dali_voc.label_plan.plan_labels` parses the PNGs and packs their raw Deflate
   streams and the per-sample tables into one pinned buffer (two buffers alternate, each
   reused only after an event says its previous copy finished);
2. one host-to-device copy of that buffer;
3. one batched nvCOMP Deflate (RAW bitstream) decode into one inflated buffer;
4. kernel ``unfilter``: one block per image undoes the PNG row filters in place (rows of
   type 0 and 2 in parallel across the row, types 1/3/4 sequentially by one thread);
5. kernel ``crop + map``: one thread per output pixel reads the palette index at the
   sample's shared crop window and maps it through the per-image palette -> class table
   (built from the one color table), writing ``ignore_index`` in padding and at unknown
   colors (counted per sample).

PNGs that are not 8-bit palette/gray (RGB labels, 16-bit, interlaced) are decoded per image
on the CPU and copied in; :attr:`GPUPNGLabelDecoder.fallback_images` counts them.

nvCOMP's batched decode without a prepared config synchronizes its stream once per batch to
size the outputs (documented by nvCOMP); the figures in the closing notes include that.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .colors import ColorTable, colors_to_indices
from .gpu_labels import PIXEL_INDEX_PROLOGUE
from .label_plan import LabelPlan, plan_labels
from .png import PNGFormatError
from .windows import CropWindow, crop_with_pad, valid_mask

_UNFILTER_SOURCE = r"""
extern "C" __global__ void dali_voc_png_unfilter(unsigned char* data, const long long* offsets,
                                                 const int* widths, const int* heights, int* bad) {
    const int img = blockIdx.x;
    const long long base = offsets[img];
    if (base < 0) return;  // not on the GPU path
    const int w = widths[img];
    const int h = heights[img];
    const long long stride = (long long)w + 1;
    for (int y = 0; y < h; ++y) {
        unsigned char* row = data + base + y * stride;
        const unsigned char* prev = (y > 0) ? row - stride : (const unsigned char*)0;
        const unsigned char kind = row[0];
        if (kind == 2) {  // Up: independent per byte
            if (prev) {
                for (int x = threadIdx.x; x < w; x += blockDim.x) row[1 + x] = (unsigned char)(row[1 + x] + prev[1 + x]);
            }
        } else if (kind == 1 || kind == 3 || kind == 4) {  // Sub, Average, Paeth: left-to-right
            if (threadIdx.x == 0) {
                for (int x = 0; x < w; ++x) {
                    const int a = (x > 0) ? row[x] : 0;  // reconstructed byte to the left
                    const int b = prev ? prev[1 + x] : 0;
                    const int c = (prev && x > 0) ? prev[x] : 0;
                    int pred;
                    if (kind == 1) {
                        pred = a;
                    } else if (kind == 3) {
                        pred = (a + b) >> 1;
                    } else {
                        const int p = a + b - c;
                        const int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                        pred = (pa <= pb && pa <= pc) ? a : ((pb <= pc) ? b : c);
                    }
                    row[1 + x] = (unsigned char)(row[1 + x] + pred);
                }
            }
        } else if (kind != 0) {
            if (threadIdx.x == 0) bad[img] = 1;  // not a PNG filter type
        }
        __syncthreads();  // the next row reads this one
    }
}
"""

_MAP_SOURCE = PIXEL_INDEX_PROLOGUE + r"""
const int sy = windows[2 * b] + y;
const int sx = windows[2 * b + 1] + x;
const long long base = offsets[b];
int v = ignore;
if (base >= 0 && !bad[b] && sy >= 0 && sy < heights[b] && sx >= 0 && sx < widths[b]) {
    const unsigned char index = inflated[base + (long long)sy * (widths[b] + 1) + 1 + sx];
    v = luts[256 * b + index];
    if (v < 0) {
        v = ignore;
        atomicAdd(&unknown[b], 1ULL);
    }
}
out = (T)v;
"""


class GPUPNGLabelDecoder:
    """Callable: a batch of encoded label PNGs -> class indices ``[B, crop_h, crop_w]`` on the GPU.

    Args:
        table: the color table (palette entries map through it).
        crop_hw: output ``(height, width)``.
        dtype: ``torch.int64`` or ``torch.uint8``.
        device: the CUDA device.
    """

    def __init__(self, table: ColorTable, crop_hw: tuple[int, int], dtype: torch.dtype, device: torch.device):
        import cupy as cp
        self.table, self.crop_hw, self.dtype, self.device = table, crop_hw, dtype, device
        self._unfilter = cp.RawKernel(_UNFILTER_SOURCE, "dali_voc_png_unfilter")
        self._map = cp.ElementwiseKernel(
            "raw uint8 inflated, raw int64 offsets, raw int32 widths, raw int32 heights, raw int16 luts, "
            "raw int32 windows, raw int32 bad, int32 h, int32 w, int32 ignore",
            "T out, raw uint64 unknown", _MAP_SOURCE, name="dali_voc_png_crop_map")
        self._codecs: dict[int, object] = {}
        self._pinned: list[Optional[torch.Tensor]] = [None, None]
        self._copied: list[Optional[torch.cuda.Event]] = [None, None]
        self._turn = 0
        self._pending: Optional[tuple[torch.Tensor, list[str]]] = None
        self.fallback_images = 0
        self.last_unknown: Optional[torch.Tensor] = None

    def _codec(self, stream: torch.cuda.Stream):
        from nvidia import nvcomp
        key = stream.cuda_stream
        if key not in self._codecs:
            self._codecs[key] = nvcomp.Codec(algorithm="Deflate", bitstream_kind=nvcomp.BitstreamKind.RAW,
                                             device_id=self.device.index, cuda_stream=key)
        return self._codecs[key]

    def _upload(self, plan: LabelPlan, stream: torch.cuda.Stream) -> torch.Tensor:
        """The plan's buffer on the device, through a pinned buffer not in flight."""
        k = self._turn
        self._turn ^= 1
        n = plan.buffer.nbytes
        if self._copied[k] is not None:
            self._copied[k].synchronize()  # its previous copy must be done before we overwrite it
        if self._pinned[k] is None or self._pinned[k].numel() < n:
            self._pinned[k] = torch.empty(max(n, 2 * (self._pinned[k].numel() if self._pinned[k] is not None else 0)),
                                          dtype=torch.uint8, pin_memory=True)
        host = self._pinned[k][:n]
        host.numpy()[:] = plan.buffer
        dev = host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(stream)
        self._copied[k] = event
        return dev

    def check_pending(self) -> None:
        """Raise for an invalid filter type seen in the previous batch (checked one batch late,
        when its kernels have long finished, so no batch waits for its own)."""
        if self._pending is None:
            return
        bad, names = self._pending
        self._pending = None
        flags = bad.cpu().numpy()
        if flags.any():
            raise PNGFormatError(f"{names[int(np.flatnonzero(flags)[0])]}: a row has a filter type outside 0-4")

    def __call__(self, encoded: Sequence[bytes], names: Sequence[str], windows: np.ndarray,
                 shapes: np.ndarray) -> torch.Tensor:
        """Decode one batch.

        Args:
            encoded: PNG bytes per slot (zero padding after IEND allowed).
            names: label path per slot (for errors).
            windows: int ``[B, 2]`` crop anchors (top, left).
            shapes: int ``[B, 2]`` image (height, width); labels must match.

        Returns int64/uint8 ``[B, crop_h, crop_w]`` on the device; per-slot unknown-color counts
        stay on the device in :attr:`last_unknown`.
        """
        import cupy as cp
        from nvidia import nvcomp
        self.check_pending()
        plan = plan_labels(encoded, names, self.table, windows, expected_hw=shapes)
        batch = len(encoded)
        crop_h, crop_w = self.crop_hw
        stream = torch.cuda.current_stream(self.device)
        dev = self._upload(plan, stream)
        inflated = torch.empty(plan.inflated_total, dtype=torch.uint8, device=self.device)
        out = torch.empty((batch, crop_h, crop_w), dtype=self.dtype, device=self.device)
        unknown = torch.zeros(batch, dtype=torch.int64, device=self.device)
        bad = torch.zeros(batch, dtype=torch.int32, device=self.device)
        t = plan.table_offsets
        with cp.cuda.Device(self.device.index), cp.cuda.ExternalStream(stream.cuda_stream):
            dev_cp, inflated_cp = cp.from_dlpack(dev), cp.from_dlpack(inflated)
            offsets = dev_cp[t["inflated_offsets"]:t["inflated_offsets"] + 8 * batch].view(cp.int64)
            widths = dev_cp[t["widths"]:t["widths"] + 4 * batch].view(cp.int32)
            heights = dev_cp[t["heights"]:t["heights"] + 4 * batch].view(cp.int32)
            luts = dev_cp[t["luts"]:t["luts"] + 2 * 256 * batch].view(cp.int16)
            wins = dev_cp[t["windows"]:t["windows"] + 8 * batch].view(cp.int32)
            bad_cp = cp.from_dlpack(bad)
            if plan.fast_slots:
                sizes = [int(plan.heights[s]) * (int(plan.widths[s]) + 1) for s in plan.fast_slots]
                srcs = nvcomp.as_arrays([dev_cp[o:o + n] for o, n in zip(plan.comp_offsets, plan.comp_sizes)],
                                        cuda_stream=stream.cuda_stream)
                dsts = [inflated_cp[int(plan.inflated_offsets[s]):int(plan.inflated_offsets[s]) + n]
                        for s, n in zip(plan.fast_slots, sizes)]
                results = self._codec(stream).decode(srcs, data_type="|u1", out=dsts)
                for result, slot, n in zip(results, plan.fast_slots, sizes):
                    if result.buffer_size != n:
                        raise PNGFormatError(f"{names[slot]}: image data inflates to {result.buffer_size} bytes "
                                             f"on the GPU, expected {n}")
                self._unfilter((batch,), (128,), (inflated_cp, offsets, widths, heights, bad_cp))
            self._map(inflated_cp, offsets, widths, heights, luts, wins, bad_cp,
                      np.int32(crop_h), np.int32(crop_w), np.int32(self.table.ignore_index),
                      cp.from_dlpack(out), cp.from_dlpack(unknown).view(cp.uint64))
        for slot, data in plan.fallback:
            self._fallback(slot, data, names[slot], windows, shapes, out, unknown)
        self._pending = (bad, list(names))
        self.last_unknown = unknown
        return out

    def _fallback(self, slot: int, data: bytes, name: str, windows: np.ndarray, shapes: np.ndarray,
                  out: torch.Tensor, unknown: torch.Tensor) -> None:
        """Decode one PNG the GPU path does not take (PIL on the CPU) into ``out[slot]``."""
        import io

        from PIL import Image
        self.fallback_images += 1
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:
            raise PNGFormatError(f"{name}: cannot decode ({err})") from err
        window = CropWindow(int(windows[slot, 0]), int(windows[slot, 1]))
        image_hw = (int(shapes[slot, 0]), int(shapes[slot, 1]))
        mask = valid_mask(window, image_hw, self.crop_hw)
        result = colors_to_indices(crop_with_pad(rgb, window, self.crop_hw), self.table, valid=mask)
        out[slot].copy_(torch.from_numpy(result.indices).to(self.dtype))
        if result.unknown_pixels:
            unknown[slot] += result.unknown_pixels
