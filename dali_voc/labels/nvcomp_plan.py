"""Host side of GPU label decoding: parse a batch of label PNGs and lay out one transfer.

For a batch of encoded label PNGs (as DALI's reader delivers them, zero-padded to a common
length) this builds ONE host buffer holding, in order: every fast-path image's raw Deflate
stream, then the per-sample tables the kernels need (offsets, sizes, palette -> class LUTs).
The GPU decoder (:mod:`dali_voc.labels.nvcomp_decoder`) copies it in one transfer; :func:`decode_plan_numpy`
runs the same layout through zlib + NumPy, so the layout is tested without a GPU.

PNGs off the fast path (RGB labels, 16-bit, interlaced, < 8-bit) are listed in
``fallback`` and decoded per image on the CPU by the caller (counted and reported).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .tables import LabelTable
from ..errors import PNGFormatError
from .png import COLOR_GRAY, PNGInfo, parse_png, unfilter_with_pil
from ..geometry.windows import BatchGeometry

_ALIGN = 16


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


@dataclass
class LabelPlan:
    """One batch's label data, laid out for a single host-to-device copy.

    Attributes:
        buffer: uint8 ``[nbytes]`` host buffer: Deflate streams, then the tables below.
        comp_offsets, comp_sizes: per fast-path sample, its Deflate stream in ``buffer``.
        fast_slots: batch slots decoded on the GPU (in stream order).
        inflated_offsets: int64 ``[B]`` offset of each slot's inflated rows in the inflated
            buffer, -1 for slots not on the fast path.
        inflated_total: bytes of the inflated buffer.
        widths, heights: int32 ``[B]`` label sizes from the PNG headers.
        luts: int16 ``[B, 256]`` palette index -> class (through the one color table).
        adlers: uint32 ``[B]`` each stream's zlib trailer, the Adler-32 its inflated rows must
            have (0 for slots not on the fast path); the GPU checks it after inflating.
        geometry: the batch's geometry, every scaled size known (unscaled: the label's own);
            its table (int32 ``[B, 5]``, :data:`~dali_voc.geometry.windows.GEOMETRY_COLUMNS`)
            is what the kernel reads from ``buffer``.
        table_offsets: where ``inflated_offsets``, ``widths``, ``heights``, ``luts``, ``geometry``,
            ``adlers`` start in ``buffer`` (bytes, 16-aligned).
        fallback: ``(slot, PNG bytes)`` for samples the GPU path does not decode.
    """

    buffer: np.ndarray
    comp_offsets: list[int]
    comp_sizes: list[int]
    fast_slots: list[int]
    inflated_offsets: np.ndarray
    inflated_total: int
    widths: np.ndarray
    heights: np.ndarray
    luts: np.ndarray
    adlers: np.ndarray
    geometry: BatchGeometry
    table_offsets: dict[str, int]
    fallback: list[tuple[int, bytes]]


class PaletteLUTs:
    """Palette -> class LUTs through one label table, each distinct palette mapped once.

    A dataset's labels share one palette (VOC) or the gray ramp (value datasets), so a
    planner that keeps this across batches maps it once per run. Bounded: a stream of labels
    with ever-new palettes (a hostile tree) empties the cache when it is full.

    Args:
        table: the color or value table.
        capacity: distinct palettes kept.
    """

    def __init__(self, table: LabelTable, capacity: int = 1024):
        self.table, self.capacity = table, capacity
        self._luts: dict[tuple[int, bytes], np.ndarray] = {}

    def lut(self, info: PNGInfo) -> np.ndarray:
        """int16 ``[256]`` class per palette index (gray: per value) of a fast-path PNG;
        :data:`~dali_voc.labels.tables.UNKNOWN` past the palette's end. Shared, so read-only."""
        key = (info.color_type, info.palette.tobytes() if info.palette is not None else b"")
        lut = self._luts.get(key)
        if lut is None:
            if len(self._luts) >= self.capacity:
                self._luts.clear()
            colors = info.color_palette()[:len(info.palette) if info.palette is not None else 256]  # gray: the ramp
            lut = self._luts[key] = self.table.palette_lut(colors.reshape(-1))
            lut.setflags(write=False)  # shared by every label with this palette
        return lut


def _aligned_offsets(sizes: Sequence[int]) -> tuple[np.ndarray, int]:
    """Start of each of ``sizes`` laid end to end, each start 16-aligned, and the end of the
    last (aligned)."""
    aligned = (np.asarray(sizes, dtype=np.int64) + _ALIGN - 1) // _ALIGN * _ALIGN
    ends = np.cumsum(aligned)
    return ends - aligned, int(ends[-1]) if len(ends) else 0


class LabelPlanner:
    """Plans the batches of one label table, keeping what outlives a batch: the palette LUTs
    (each distinct palette mapped once per run) and where plans are written.

    Args:
        table: the label table, or a :class:`PaletteLUTs` over it that the caller keeps.
        host_buffer: returns a writable uint8 array of exactly ``n`` bytes for a plan's buffer
            (the GPU decoder passes its pinned staging memory, so the plan is written where the
            copy to the device reads it); default a new zeroed array. Bytes between the
            aligned sections are left as they are.
    """

    def __init__(self, table: Union[LabelTable, PaletteLUTs],
                 host_buffer: Optional[Callable[[int], np.ndarray]] = None):
        self.palettes = table if isinstance(table, PaletteLUTs) else PaletteLUTs(table)
        self.host_buffer = host_buffer

    def plan(self, encoded: Sequence[bytes], names: Sequence[str], geometry: BatchGeometry,
             expected_hw: Optional[np.ndarray] = None) -> LabelPlan:
        """Parse every PNG of a batch and build its :class:`LabelPlan`.

        Args:
            encoded: one PNG file's bytes per slot (bytes-like; trailing zero padding allowed).
            names: a name per slot for error messages (the file path).
            geometry: each slot's window, scaled size (``(0, 0)``: the label's own) and flip,
                copied into the buffer for the kernel.
            expected_hw: optional int ``[B, 2]`` (height, width) each label must have (the image's).

        Raises:
            PNGFormatError: a damaged PNG, or one whose size differs from its image (named).
        """
        batch = len(encoded)
        infos = [parse_png(data, name) for data, name in zip(encoded, names)]
        heights = np.fromiter((info.height for info in infos), dtype=np.int32, count=batch)
        widths = np.fromiter((info.width for info in infos), dtype=np.int32, count=batch)
        if expected_hw is not None:
            expected = np.asarray(expected_hw).reshape(batch, 2)
            wrong = np.flatnonzero((heights != expected[:, 0]) | (widths != expected[:, 1]))
            if wrong.size:
                slot = int(wrong[0])
                raise PNGFormatError(f"{names[slot]}: label is {heights[slot]}x{widths[slot]} but its image is "
                                     f"{int(expected[slot, 0])}x{int(expected[slot, 1])}")
        fast_slots = [slot for slot, info in enumerate(infos) if info.fast_path]
        fallback = [(slot, bytes(encoded[slot])) for slot, info in enumerate(infos) if not info.fast_path]
        streams = [infos[slot].raw_deflate() for slot in fast_slots]
        comp_sizes = [stream.nbytes for stream in streams]
        comp_starts, pos = _aligned_offsets(comp_sizes)
        inflated_offsets = np.full(batch, -1, dtype=np.int64)
        inflated_starts, inflated = _aligned_offsets([infos[slot].inflated_size for slot in fast_slots])
        inflated_offsets[fast_slots] = inflated_starts
        adlers = np.zeros(batch, dtype=np.uint32)
        adlers[fast_slots] = [infos[slot].adler32 for slot in fast_slots]
        luts = np.full((batch, 256), -1, dtype=np.int16)
        if fast_slots:
            luts[fast_slots] = np.stack([self.palettes.lut(infos[slot]) for slot in fast_slots])
        geometry = geometry.with_own_sizes(np.stack([heights, widths], axis=1))
        arrays = (("inflated_offsets", inflated_offsets), ("widths", widths), ("heights", heights), ("luts", luts),
                  ("geometry", np.ascontiguousarray(geometry.table, dtype=np.int32)), ("adlers", adlers))
        tables = {}
        for key, arr in arrays:
            tables[key] = pos
            pos = _align(pos + arr.nbytes)
        size = max(pos, _ALIGN)
        buffer = self.host_buffer(size) if self.host_buffer is not None else np.zeros(size, dtype=np.uint8)
        target = memoryview(buffer)
        comp_offsets = comp_starts.tolist()
        for start, stream in zip(comp_offsets, streams):
            target[start:start + stream.nbytes] = stream
        for key, arr in arrays:
            raw = arr.reshape(-1).view(np.uint8)
            buffer[tables[key]:tables[key] + raw.size] = raw
        return LabelPlan(buffer, comp_offsets, comp_sizes, fast_slots, inflated_offsets, max(inflated, _ALIGN),
                         widths, heights, luts, adlers, geometry, tables, fallback)


def plan_labels(encoded: Sequence[bytes], names: Sequence[str], table: Union[LabelTable, PaletteLUTs],
                geometry: BatchGeometry, expected_hw: Optional[np.ndarray] = None) -> LabelPlan:
    """One batch's :class:`LabelPlan` (:meth:`LabelPlanner.plan` of a planner used once)."""
    return LabelPlanner(table).plan(encoded, names, geometry, expected_hw)


#: Per-slot flags the GPU unfilter kernel sets (and :func:`decode_plan_numpy` mirrors).
FLAG_OK, FLAG_BAD_FILTER, FLAG_BAD_CHECKSUM = 0, 1, 2


def stream_problem(plan: LabelPlan, slot: int) -> Optional[str]:
    """Inflate one fast-path slot's stream on the CPU (zlib) and say what is wrong with it,
    or ``None`` when it inflates to exactly ``height * (width + 1)`` bytes with the Adler-32
    of its trailer. Used to name the file when the batched GPU inflate fails."""
    k = plan.fast_slots.index(slot)
    offset, size = plan.comp_offsets[k], plan.comp_sizes[k]
    expected = int(plan.heights[slot]) * (int(plan.widths[slot]) + 1)
    inflater = zlib.decompressobj(wbits=-15)
    try:
        rows = inflater.decompress(plan.buffer[offset:offset + size].tobytes(), expected + 1)
    except zlib.error as err:
        return f"corrupt image data ({err})"
    if len(rows) != expected or not inflater.eof:
        return f"image data does not inflate to {expected} bytes ({len(rows)}{'+' if len(rows) > expected else ''})"
    if zlib.adler32(rows) != int(plan.adlers[slot]):
        return "image data fails its Adler-32 check"
    return None


def inflate_plan_numpy(plan: LabelPlan) -> np.ndarray:
    """What nvCOMP writes, with zlib: uint8 ``[plan.inflated_total]``, zeros, then each fast-path
    slot's inflated rows at its offset, cut to the ``height * (width + 1)`` bytes its output
    slice holds."""
    inflated = np.zeros(plan.inflated_total, dtype=np.uint8)
    for offset, size, slot in zip(plan.comp_offsets, plan.comp_sizes, plan.fast_slots):
        room = int(plan.heights[slot]) * (int(plan.widths[slot]) + 1)
        try:
            rows = zlib.decompressobj(wbits=-15).decompress(plan.buffer[offset:offset + size].tobytes(), room)
        except zlib.error:
            continue  # stays zero, and fails the checksum
        start = int(plan.inflated_offsets[slot])
        inflated[start:start + len(rows)] = np.frombuffer(rows, dtype=np.uint8)
    return inflated


def _stream_at(plan: LabelPlan, slot: int) -> tuple[int, int]:
    """``(offset, size)`` of a fast-path slot's raw Deflate stream in ``plan.buffer``."""
    k = plan.fast_slots.index(slot)
    return plan.comp_offsets[k], plan.comp_sizes[k]


def inflate_slot(plan: LabelPlan, slot: int) -> np.ndarray:
    """What nvCOMP writes into one fast-path slot's output slice, with zlib: uint8
    ``[height * (width + 1)]``, the inflated (still filtered) rows, cut at that size; zeros
    where the stream ends early or is corrupt (the Adler-32 check then fails, as on the GPU).
    zlib releases the GIL while it inflates, so slots inflate in parallel on threads."""
    offset, size = _stream_at(plan, slot)
    room = int(plan.heights[slot]) * (int(plan.widths[slot]) + 1)
    try:
        rows = zlib.decompressobj(wbits=-15).decompress(memoryview(plan.buffer)[offset:offset + size], room)
    except zlib.error:
        rows = b""
    if len(rows) == room:
        return np.frombuffer(rows, dtype=np.uint8)
    padded = np.zeros(room, dtype=np.uint8)
    padded[:len(rows)] = np.frombuffer(rows, dtype=np.uint8)
    return padded


def decode_slot_numpy(plan: LabelPlan, slot: int, inflated: np.ndarray, out: np.ndarray,
                      ignore_index: int) -> tuple[int, int]:
    """The two GPU kernels (``unfilter``, then ``crop + map``) for one fast-path slot, in NumPy.

    Args:
        plan: the batch's plan (its geometry table: scale, crop and flip by
            :func:`dali_voc.geometry.windows.source_pixels`; its palette -> class LUTs).
        slot: a slot of ``plan.fast_slots``.
        inflated: uint8 ``[height * (width + 1)]`` the slot's inflated rows (:func:`inflate_slot`).
        out: integer ``[crop_h, crop_w]`` (int64, int32 or uint8), written: classes,
            ``ignore_index`` in padding, at unknown colors, and everywhere when flagged.

    Returns ``(flag, unknown)``: :data:`FLAG_OK`, :data:`FLAG_BAD_CHECKSUM` (the rows fail
    the zlib trailer's Adler-32) or :data:`FLAG_BAD_FILTER` (a row's filter type is not 0-4),
    and the pixels inside the image whose palette entry the table does not know.
    """
    h, w = int(plan.heights[slot]), int(plan.widths[slot])
    if zlib.adler32(inflated) != int(plan.adlers[slot]):
        out.fill(ignore_index)
        return FLAG_BAD_CHECKSUM, 0
    rows = inflated.reshape(h, w + 1)
    kinds = rows[:, 0]
    if not kinds.any():  # every row unfiltered (VOC's palette labels): the indices are the rows
        indices = rows[:, 1:]
    elif int(kinds.max()) > 4:
        out.fill(ignore_index)
        return FLAG_BAD_FILTER, 0
    else:  # filtered rows (gray labels written with adaptive filters): PIL's C loop undoes them,
        # from the rows already inflated, stored uncompressed (Average and Paeth run byte by byte)
        stored = zlib.compress(inflated, 0)
        indices = unfilter_with_pil(PNGInfo(w, h, 8, COLOR_GRAY, 0, None, stored), f"slot {slot}")
    rows_at, cols_at, row_ok, col_ok = BatchGeometry(plan.geometry.table[slot:slot + 1]).source_pixels(
        np.array([[h, w]]), out.shape)
    picked = _pick(_pick(indices, rows_at[0], axis=0), cols_at[0], axis=1)  # uint8 [crop_h, crop_w]
    # Classes through the LUT straight into ``out``; an unknown entry writes a marker no class and
    # not ignore_index uses, so the unknown pixels are counted by one comparison afterwards.
    lut = plan.luts[slot]
    known = lut >= 0
    marker = -1 if np.issubdtype(out.dtype, np.signedinteger) else _free_value(lut[known], ignore_index)
    np.take(np.where(known, lut, marker).astype(out.dtype), picked, out=out, mode="clip")
    if not (row_ok.all() and col_ok.all()):
        out[~row_ok[0]] = ignore_index
        out[:, ~col_ok[0]] = ignore_index
    unknown = int(np.count_nonzero(out == marker)) if not known.all() else 0
    if unknown:
        out[out == marker] = ignore_index
    return FLAG_OK, unknown


def _pick(array: np.ndarray, at: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(array, at, axis)``, as a view where ``at`` runs in steps of +1 or -1 (a crop
    without scaling, mirrored or not: most labels)."""
    steps = np.diff(at)
    if at.size and (steps == 1).all():
        part = slice(int(at[0]), int(at[-1]) + 1)
    elif at.size > 1 and (steps == -1).all():
        part = slice(int(at[0]), int(at[-1]) - 1 if at[-1] > 0 else None, -1)
    else:
        return np.take(array, at, axis=axis)
    return array[part] if axis == 0 else array[:, part]


def _free_value(classes: np.ndarray, ignore_index: int) -> int:
    """A uint8 value that is neither one of ``classes`` nor ``ignore_index`` (a dataset has at
    most 151 classes, so one is always free)."""
    used = np.zeros(256, dtype=bool)
    used[classes.astype(np.int64)] = True
    used[ignore_index] = True
    return int(np.flatnonzero(~used)[-1])


def decode_plan_numpy(plan: LabelPlan, crop_hw: tuple[int, int],
                      ignore_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the GPU (nvCOMP + the two kernels) computes, in NumPy, from the plan's buffer alone:
    :func:`inflate_slot` and :func:`decode_slot_numpy` for every fast-path slot.

    Returns ``(indices, unknown, flags)``: int64 ``[B, h, w]`` (fallback and flagged slots
    left at ``ignore_index``), per-slot unknown-color pixel counts ``[B]``, and int32 ``[B]``
    flags (:data:`FLAG_OK`, :data:`FLAG_BAD_FILTER`, :data:`FLAG_BAD_CHECKSUM`)."""
    batch = len(plan.widths)
    out = np.full((batch, *crop_hw), ignore_index, dtype=np.int64)
    unknown = np.zeros(batch, dtype=np.int64)
    flags = np.zeros(batch, dtype=np.int32)
    for slot in plan.fast_slots:
        flags[slot], unknown[slot] = decode_slot_numpy(plan, slot, inflate_slot(plan, slot), out[slot], ignore_index)
    return out, unknown, flags
