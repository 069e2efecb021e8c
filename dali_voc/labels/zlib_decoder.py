"""Label PNGs decoded on the CPU by the GPU path's own algorithm: the nvCOMP decoder's host
plan, zlib where nvCOMP inflates, NumPy where its two kernels run.

Per batch (the DALI loader on CPU operators, ``label_path == "zlib"``):

1. main thread: :class:`dali_voc.labels.nvcomp_plan.LabelPlanner` parses the PNGs (every
   chunk's CRC checked) and packs their raw Deflate streams and the per-sample tables into one
   reused buffer, exactly as for the GPU; each distinct palette is mapped to classes once;
2. a thread pool, one task per fast-path label: :func:`~dali_voc.labels.nvcomp_plan.inflate_slot`
   (zlib, which releases the GIL), then :func:`~dali_voc.labels.nvcomp_plan.decode_slot_numpy`
   (the Adler-32 check, unfiltering, crop + map at the sample's geometry) straight into the
   batch's output;
3. labels off the fast path (RGB, 16-bit, interlaced, < 8-bit) are decoded per image on the
   host (:func:`dali_voc.labels.host.decode_label_of_image` and :func:`~dali_voc.labels.host.crop_label`), as the GPU path's fallback does, on the
   same threads.

DALI then never decodes a label to RGB and the main thread never maps colors: the palette
index read from the file is the class's key, as on the GPU.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from ..errors import PNGFormatError
from ..geometry.windows import BatchGeometry, SampleGeometry
from .decoder import DecodedLabels, LabelBatch
from .host import crop_label, decode_label_of_image
from .nvcomp_plan import (FLAG_BAD_CHECKSUM, FLAG_BAD_FILTER, FLAG_OK, LabelPlan, LabelPlanner, decode_slot_numpy,
                          inflate_slot, stream_problem)
from .tables import LabelTable


class ZlibLabelDecoder:
    """A batch of encoded label PNGs -> class indices ``[B, crop_h, crop_w]`` on the CPU (a
    :class:`~dali_voc.labels.decoder.LabelDecoder`), by the nvCOMP path's algorithm.

    Args:
        table: the label table (palette entries map through it).
        crop_hw: output ``(height, width)``.
        dtype: ``torch.int64``, ``torch.int32`` or ``torch.uint8``.
        threads: threads inflating and mapping labels (>= 1).
    """

    description = "labels inflated on CPU threads (zlib; the nvCOMP path's plan, kernels in NumPy)"

    def __init__(self, table: LabelTable, crop_hw: tuple[int, int], dtype: torch.dtype, threads: int):
        self.table, self.crop_hw, self.dtype = table, crop_hw, dtype
        # idle threads; they end when the decoder is collected (ThreadPoolExecutor's own weakref)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="dali_voc-labels")
        self._staging = np.zeros(1 << 20, dtype=np.uint8)
        # kept across batches: a dataset's palette is mapped once, plans written into one staging array
        self._planner = LabelPlanner(table, host_buffer=self._host_buffer)
        self.fallback_images = 0

    def _host_buffer(self, nbytes: int) -> np.ndarray:
        """The plan's buffer: one staging array reused across batches (grown when needed);
        the previous batch's plan is finished with before the next one is written."""
        if self._staging.size < nbytes:
            self._staging = np.zeros(2 * nbytes, dtype=np.uint8)
        return self._staging[:nbytes]

    def decode(self, batch: LabelBatch) -> DecodedLabels:
        """Decode one batch; ``batch.data`` holds the PNG files' bytes, zero-padded (CPU)."""
        encoded = list(batch.data.numpy())  # views of the rows: the planner copies what it keeps
        return self.decode_files(encoded, batch.paths, batch.geometry, batch.shapes)

    def decode_files(self, encoded: Sequence[bytes], names: Sequence[str], geometry: BatchGeometry,
                     shapes: np.ndarray) -> DecodedLabels:
        """Decode one batch of PNG files (arguments as
        :meth:`dali_voc.labels.nvcomp_decoder.NvcompLabelDecoder.decode_files`).

        Returns int64/int32/uint8 ``[B, crop_h, crop_w]`` and int64 ``[B]`` unknown-color
        counts, CPU tensors.

        Raises:
            PNGFormatError: naming a damaged label (the parser, zlib, the Adler-32 check or a
                bad filter type), or one whose size differs from its image.
        """
        plan = self._planner.plan(encoded, names, geometry, expected_hw=shapes)
        batch = len(encoded)
        # torch's allocator: 64-byte aligned, as TensorFlow and JAX need what DLPack hands them
        labels = torch.empty((batch, *self.crop_hw), dtype=self.dtype)
        out = labels.numpy()
        unknown = np.zeros(batch, dtype=np.int64)
        ignore = self.table.ignore_index

        def one(slot: int) -> tuple[int, int]:
            return decode_slot_numpy(plan, slot, inflate_slot(plan, slot), out[slot], ignore)

        for slot, (flag, count) in zip(plan.fast_slots, self._pool.map(one, plan.fast_slots)):
            if flag != FLAG_OK:
                raise _flagged(plan, slot, flag, names[slot])
            unknown[slot] = count
        def other(item: tuple[int, bytes]) -> int:
            slot, data = item
            image_hw = (int(shapes[slot, 0]), int(shapes[slot, 1]))
            return self._fallback(data, str(names[slot]), image_hw, plan.geometry.sample(slot), out[slot])

        for (slot, _), count in zip(plan.fallback, self._pool.map(other, plan.fallback)):  # PIL too releases the GIL
            unknown[slot] = count
        self.fallback_images += len(plan.fallback)
        return DecodedLabels(labels, torch.from_numpy(unknown))

    def _fallback(self, data: bytes, name: str, image_hw: tuple[int, int], geometry: SampleGeometry,
                  out: np.ndarray) -> int:
        """Decode one PNG off the fast path on the host into ``out`` (its slot, ``[crop_h,
        crop_w]``); its unknown pixels."""
        label = decode_label_of_image(data, name, self.table, image_hw)
        result = crop_label(label, geometry, self.crop_hw, self.table.ignore_index)
        out[...] = result.indices
        return result.unknown_pixels

    def finish(self) -> None:
        """Nothing is pending: every batch is checked before it is returned."""
        return None


def _flagged(plan: LabelPlan, slot: int, flag: int, name: str) -> PNGFormatError:
    """The error for a slot the kernels' NumPy version flagged, saying what zlib finds wrong."""
    if flag == FLAG_BAD_FILTER:
        return PNGFormatError(f"{name}: a row has a filter type outside 0-4")
    problem = stream_problem(plan, slot) if flag == FLAG_BAD_CHECKSUM else None
    return PNGFormatError(f"{name}: {problem or 'image data fails its Adler-32 check'}")
