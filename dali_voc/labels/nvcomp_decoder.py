"""Label PNGs decoded on the GPU: one copy, one batched nvCOMP inflate, two CuPy kernels.

Per batch, on a private CUDA stream that the caller's current stream then waits for (no
per-image synchronisation):

1. host: :class:`dali_voc.labels.nvcomp_plan.LabelPlanner` parses the PNGs and packs their raw Deflate
   streams and the per-sample tables straight into one pinned buffer (two buffers alternate,
   each reused only after an event says its previous copy finished); each distinct palette
   is mapped to classes once per run;
2. one host-to-device copy of that buffer;
3. one batched nvCOMP Deflate (RAW bitstream) decode into one inflated buffer;
4. kernel ``unfilter``: one block per image checks the inflated bytes against the Adler-32
   of the zlib trailer, then undoes the PNG row filters in place (rows of type 0 and 2 in
   parallel across the row, types 1/3/4 sequentially by one thread);
5. kernel ``crop + map``: one thread per output pixel reads the palette index at the
   sample's shared crop window and maps it through the per-image palette -> class table
   (built from the one color table), writing ``ignore_index`` in padding and at unknown
   colors (counted per sample).

PNGs that are not 8-bit palette/gray (RGB labels, 16-bit, interlaced) are decoded per image
on the CPU and copied in; :attr:`NvcompLabelDecoder.fallback_images` counts them.

nvCOMP's batched decode without a prepared config synchronizes its stream once per batch to
size the outputs (documented by nvCOMP). That stream is the private one, so the wait covers
the label work just queued, not a training step on the caller's stream. With ``known_sizes``
the config is built from the sizes the PNG headers state (nvCOMP documents that path as
sync-free); a stream that inflates to another size then fails the Adler-32 check.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .tables import LabelTable
from .cupy_decoder import PIXEL_INDEX_PROLOGUE, cupy_stream
from .nvcomp_plan import FLAG_BAD_CHECKSUM, FLAG_BAD_FILTER, LabelPlan, LabelPlanner, stream_problem
from ..errors import LabelDecoderError, PNGFormatError
from .decoder import DecodedLabels, LabelBatch
from .host import crop_label, decode_label_of_image
from ..geometry.windows import SOURCE_PIXEL_C, BatchGeometry

_UNFILTER_SOURCE = r"""
extern "C" __global__ void dali_voc_png_unfilter(unsigned char* data, const long long* offsets,
                                                 const int* widths, const int* heights,
                                                 const unsigned int* adlers, int* bad) {
    __shared__ unsigned long long sums[2];
    const int img = blockIdx.x;
    const long long base = offsets[img];
    if (base < 0) return;  // not on the GPU path (the whole block leaves)
    const int w = widths[img];
    const int h = heights[img];
    const long long stride = (long long)w + 1;
    const long long n = stride * h;
    // Adler-32 of the inflated rows, to compare with the zlib trailer (the PNG's own check of
    // its image data): A = 1 + sum d[i], B = n + sum (n - i) d[i], both mod 65521. It also
    // catches a stream that inflates short (the buffer is zeroed, the check then fails).
    if (threadIdx.x == 0) {
        sums[0] = 0;
        sums[1] = 0;
    }
    __syncthreads();
    unsigned long long s1 = 0, s2 = 0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        const unsigned long long d = data[base + i];
        s1 += d;
        s2 += ((unsigned long long)(n - i) % 65521ULL) * d;
    }
    atomicAdd(&sums[0], s1 % 65521ULL);
    atomicAdd(&sums[1], s2 % 65521ULL);
    __syncthreads();
    const unsigned int a = (unsigned int)((1ULL + sums[0]) % 65521ULL);
    const unsigned int b = (unsigned int)(((unsigned long long)n + sums[1]) % 65521ULL);
    if (((b << 16) | a) != adlers[img]) {  // same values in every thread: the block leaves together
        if (threadIdx.x == 0) bad[img] = 2;
        return;
    }
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

#: Crop+map, with the resampling formula of :mod:`dali_voc.geometry.windows` (scale, crop, flip);
#: ``geometry`` per slot: the columns of :data:`~dali_voc.geometry.windows.GEOMETRY_COLUMNS`.
_MAP_SOURCE = PIXEL_INDEX_PROLOGUE + r"""
const int top = geometry[5 * b + 0], left = geometry[5 * b + 1];
const int sh = geometry[5 * b + 2], sw = geometry[5 * b + 3], flip = geometry[5 * b + 4];
const int H = heights[b], W = widths[b];
""" + SOURCE_PIXEL_C + r"""
const long long base = offsets[b];
int v = ignore;
if (base >= 0 && !bad[b] && inside) {
    const unsigned char index = inflated[base + (long long)sy * (W + 1) + 1 + sx];
    v = luts[256 * b + index];
    if (v < 0) {
        v = ignore;
        atomicAdd(&unknown[b], 1ULL);
    }
}
out = (T)v;
"""


def deflate_codec(device_index: int, stream_pointer: int):
    """nvCOMP's raw-Deflate ``Codec`` on CUDA device ``device_index`` working on the stream
    ``stream_pointer`` (a ``cudaStream_t`` as int).

    Raises:
        LabelDecoderError: nvCOMP does not import (naming the package) or cannot create the
            codec here (with nvCOMP's own words), both with the way round it.
    """
    from ..resolve import gpu_package
    try:
        from nvidia import nvcomp
    except ImportError as err:
        raise LabelDecoderError(f"labels are inflated on the GPU with nvCOMP, which does not import ({err}): "
                                f"pip install {gpu_package('nvcomp')}, or label_decoder='dali'") from err
    try:
        return nvcomp.Codec(algorithm="Deflate", bitstream_kind=nvcomp.BitstreamKind.RAW, device_id=device_index,
                            cuda_stream=stream_pointer)
    except Exception as err:  # nvCOMP raises RuntimeError for CUDA failures, ValueError for arguments
        raise LabelDecoderError(f"nvCOMP could not create its Deflate decoder on CUDA device {device_index} "
                                f"({type(err).__name__}: {err}); label_decoder='dali' loads labels without "
                                f"nvCOMP") from err


class NvcompLabelDecoder:
    """A batch of encoded label PNGs -> class indices ``[B, crop_h, crop_w]`` on the GPU (a
    :class:`~dali_voc.labels.decoder.LabelDecoder`).

    The work runs on a private CUDA stream; the caller's current stream waits for it through
    an event, so nvCOMP's per-batch synchronisation waits for label work only, never for a
    training step queued on the caller's stream.

    Args:
        table: the color table (palette entries map through it).
        crop_hw: output ``(height, width)``.
        dtype: ``torch.int64`` or ``torch.uint8``.
        device: the CUDA device.
        known_sizes: give nvCOMP each stream's inflated size from its PNG header (no size pass,
            no synchronization; :attr:`dali_voc.config.LoaderConfig.nvcomp_known_sizes`).
    """

    def __init__(self, table: LabelTable, crop_hw: tuple[int, int], dtype: torch.dtype, device: torch.device,
                 known_sizes: bool = False):
        import cupy as cp
        self.table, self.crop_hw, self.dtype, self.device = table, crop_hw, dtype, device
        self.known_sizes = known_sizes
        self._unfilter = cp.RawKernel(_UNFILTER_SOURCE, "dali_voc_png_unfilter")
        self._map = cp.ElementwiseKernel(
            "raw uint8 inflated, raw int64 offsets, raw int32 widths, raw int32 heights, raw int16 luts, "
            "raw int32 geometry, raw int32 bad, int32 h, int32 w, int32 ignore",
            "T out, raw uint64 unknown", _MAP_SOURCE, name="dali_voc_png_crop_map")
        self._stream = torch.cuda.Stream(device)
        # Kept across batches: a dataset's palette is mapped once; plans are written into pinned memory.
        self._planner = LabelPlanner(table, host_buffer=self._staging)
        self._codec = None
        self._pinned: list[Optional[torch.Tensor]] = [None, None]
        self._copied: list[Optional[torch.cuda.Event]] = [None, None]
        self._turn = 0
        self._staged: Optional[torch.Tensor] = None  # the pinned slice the current plan is written in
        #: Flags of the last batch, copied to pinned host memory on the private stream, and
        #: the event that says the copy is done (read one batch late: never a wait in practice).
        self._pending: Optional[tuple[torch.Tensor, torch.cuda.Event, list[str]]] = None
        self.fallback_images = 0

    def _get_codec(self):
        """The codec, made on first use (:func:`deflate_codec`; raises LabelDecoderError)."""
        if self._codec is None:
            self._codec = deflate_codec(self.device.index, self._stream.cuda_stream)
        return self._codec

    def _staging(self, nbytes: int) -> np.ndarray:
        """Pinned host memory for the next plan's buffer (the planner writes it in place):
        uint8 ``[nbytes]``, from the pinned buffer whose previous copy has finished."""
        k = self._turn
        if self._copied[k] is not None:
            self._copied[k].synchronize()  # its previous copy must be done before we overwrite it
        if self._pinned[k] is None or self._pinned[k].numel() < nbytes:
            self._pinned[k] = torch.empty(max(nbytes, 2 * (self._pinned[k].numel() if self._pinned[k] is not None else 0)),
                                          dtype=torch.uint8, pin_memory=True)
        self._staged = self._pinned[k][:nbytes]
        return self._staged.numpy()

    def _upload(self, plan: LabelPlan) -> torch.Tensor:
        """The plan's buffer (written in the pinned memory :meth:`_staging` gave last) on the
        device, copied on the private stream, which must be current."""
        k = self._turn
        self._turn ^= 1
        dev = self._staged.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(self._stream)
        self._copied[k] = event
        return dev

    description = "labels inflated on the GPU (nvCOMP)"

    def finish(self) -> None:
        """Raise for a label the previous batch flagged (a filter type outside 0-4, or image
        data failing its Adler-32 check); that batch's labels hold ``ignore_index`` there.
        Checked one batch late, when the flags have long reached the host."""
        if self._pending is None:
            return
        flags, ready, names = self._pending
        self._pending = None
        ready.synchronize()
        values = flags.numpy()
        if values.any():
            slot = int(np.flatnonzero(values)[0])
            what = {FLAG_BAD_FILTER: "a row has a filter type outside 0-4",
                    FLAG_BAD_CHECKSUM: "image data fails its Adler-32 check after inflating on the GPU"}
            raise PNGFormatError(f"{names[slot]}: {what.get(int(values[slot]), f'flag {int(values[slot])}')}")

    def decode(self, batch: LabelBatch) -> DecodedLabels:
        """Decode one batch; ``batch.data`` holds the PNG files' bytes, zero-padded (CPU)."""
        encoded = list(batch.data.numpy())  # views of the rows: the planner copies what it keeps
        return self.decode_files(encoded, batch.paths, batch.geometry, batch.shapes)

    def decode_files(self, encoded: Sequence[bytes], names: Sequence[str], geometry: BatchGeometry,
                     shapes: np.ndarray) -> DecodedLabels:
        """Decode one batch of PNG files.

        Args:
            encoded: PNG bytes per slot, bytes-like (zero padding after IEND allowed).
            names: label path per slot (for errors).
            geometry: each slot's window, scaled size and flip (:class:`BatchGeometry`).
            shapes: int ``[B, 2]`` image (height, width); labels must match.

        Returns int64/uint8 ``[B, crop_h, crop_w]`` on the device, ready for work queued on the
        caller's current stream, and the per-slot unknown-color counts (int64 ``[B]``, device).

        Raises:
            PNGFormatError: naming a damaged label (parse errors at once; flagged rows or
                checksums of this batch at the next call or :meth:`finish`).
        """
        self.finish()
        plan = self._planner.plan(encoded, names, geometry, expected_hw=shapes)
        consumer = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):
            out, unknown, flags = self._decode(plan, names, shapes)
            host_flags = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
            host_flags.copy_(flags, non_blocking=True)
        done = torch.cuda.Event()
        done.record(self._stream)
        consumer.wait_event(done)
        for tensor in (out, unknown):  # made on the private stream, used on the caller's
            tensor.record_stream(consumer)
        self._pending = (host_flags, done, list(names))
        return DecodedLabels(out, unknown)

    def _decode(self, plan: LabelPlan, names: Sequence[str],
                shapes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The GPU work of one batch, on the private stream (current): indices, per-slot
        unknown counts (int64 ``[B]``) and flags (int32 ``[B]``), all on the device."""
        import cupy as cp
        batch = len(plan.widths)
        crop_h, crop_w = self.crop_hw
        stream = self._stream
        dev = self._upload(plan)
        inflated = torch.zeros(plan.inflated_total, dtype=torch.uint8, device=self.device)  # see the kernel
        out = torch.empty((batch, crop_h, crop_w), dtype=self.dtype, device=self.device)
        unknown = torch.zeros(batch, dtype=torch.int64, device=self.device)
        flags = torch.zeros(batch, dtype=torch.int32, device=self.device)
        t = plan.table_offsets
        with cp.cuda.Device(self.device.index), cupy_stream(stream):
            dev_cp, inflated_cp = cp.from_dlpack(dev), cp.from_dlpack(inflated)
            offsets = dev_cp[t["inflated_offsets"]:t["inflated_offsets"] + 8 * batch].view(cp.int64)
            widths = dev_cp[t["widths"]:t["widths"] + 4 * batch].view(cp.int32)
            heights = dev_cp[t["heights"]:t["heights"] + 4 * batch].view(cp.int32)
            luts = dev_cp[t["luts"]:t["luts"] + 2 * 256 * batch].view(cp.int16)
            geometry = dev_cp[t["geometry"]:t["geometry"] + 20 * batch].view(cp.int32)
            adlers = dev_cp[t["adlers"]:t["adlers"] + 4 * batch].view(cp.uint32)
            flags_cp = cp.from_dlpack(flags)
            if plan.fast_slots:
                sizes = [int(plan.heights[s]) * (int(plan.widths[s]) + 1) for s in plan.fast_slots]
                dsts = [inflated_cp[int(plan.inflated_offsets[s]):int(plan.inflated_offsets[s]) + n]
                        for s, n in zip(plan.fast_slots, sizes)]
                codec = self._get_codec()  # LabelDecoderError, named, when nvCOMP cannot be set up
                from nvidia import nvcomp
                srcs = nvcomp.as_arrays([dev_cp[o:o + n] for o, n in zip(plan.comp_offsets, plan.comp_sizes)],
                                        cuda_stream=stream.cuda_stream)
                try:
                    # Known sizes: nvCOMP takes them from a config built from the headers instead
                    # of reading them off the streams (which synchronizes the stream). nvCOMP
                    # documents that config for buffers it encoded itself; the gpu tests check it
                    # on zlib's streams.
                    sizes_config = (codec.decompression_config(codec.compression_config(sizes)) if self.known_sizes
                                    else None)
                    # Outputs are our fixed-size slices: a stream that inflates longer is an
                    # error here (or, with known sizes, cut short); one that inflates to another
                    # size fails the kernel's Adler-32 check.
                    codec.decode(srcs, data_type="|u1", out=dsts, decompression_config=sizes_config)
                except (ValueError, RuntimeError) as err:
                    raise self._explain_inflate_failure(plan, names, err) from err
                self._unfilter((batch,), (128,), (inflated_cp, offsets, widths, heights, adlers, flags_cp))
            self._map(inflated_cp, offsets, widths, heights, luts, geometry, flags_cp,
                      np.int32(crop_h), np.int32(crop_w), np.int32(self.table.ignore_index),
                      cp.from_dlpack(out), cp.from_dlpack(unknown).view(cp.uint64))
        self._fallback(plan, names, shapes, out, unknown)
        return out, unknown, flags

    @staticmethod
    def _explain_inflate_failure(plan: LabelPlan, names: Sequence[str], err: Exception) -> Exception:
        """nvCOMP refused a batch: find the label that zlib refuses too, and name it
        (:class:`PNGFormatError`); when zlib accepts them all, nvCOMP is at fault
        (:class:`LabelDecoderError`)."""
        for slot in plan.fast_slots:
            problem = stream_problem(plan, slot)
            if problem is not None:
                return PNGFormatError(f"{names[slot]}: {problem}")
        return LabelDecoderError(f"nvCOMP failed to inflate a batch of {len(plan.fast_slots)} label streams that "
                                 f"zlib inflates correctly (first label: {names[plan.fast_slots[0]]}): {err}; "
                                 f"label_decoder='dali' loads labels without nvCOMP")

    def _fallback(self, plan: LabelPlan, names: Sequence[str], shapes: np.ndarray, out: torch.Tensor,
                  unknown: torch.Tensor) -> None:
        """Decode the PNGs the GPU path does not take (``plan.fallback``) on the host
        (:mod:`dali_voc.labels.host`) into their slots of ``out`` and ``unknown``."""
        for slot, data in plan.fallback:
            self.fallback_images += 1
            image_hw = (int(shapes[slot, 0]), int(shapes[slot, 1]))
            label = decode_label_of_image(data, names[slot], self.table, image_hw)
            result = crop_label(label, plan.geometry.sample(slot), self.crop_hw, self.table.ignore_index)
            out[slot].copy_(torch.from_numpy(result.indices).to(self.dtype))
            if result.unknown_pixels:
                unknown[slot] += result.unknown_pixels
