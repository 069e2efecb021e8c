"""``python -m benchmarks.label_host``: the host side of the GPU label path, on one CPU core.

The GPU label path parses each batch's label PNGs and packs them into one buffer on the
main thread (:class:`dali_voc.labels.nvcomp_plan.LabelPlanner`); that work bounds the loader's rate
however fast the GPU is. This times it alone (no GPU needed), as the decoder runs it: batches
of real files from a tree's train split, zero-padded as DALI's reader delivers them, handed
over as views of the rows, palette LUTs kept across batches, the plan written into a reused
staging buffer (pinned memory in the decoder); median of the repetitions. The parsing alone
(:func:`dali_voc.labels.png.parse_png`, every chunk's CRC checked) is timed in the same run.

    python -m benchmarks.label_host --root data/voc-synth [--batch-size 64] [--batches 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Optional, Sequence

import numpy as np

from dali_voc.datasets.voc import voc_color_table
from dali_voc.geometry.windows import BatchGeometry
from dali_voc.labels.nvcomp_plan import LabelPlanner
from dali_voc.labels.png import parse_png

from .micro import micro_parser, train_samples
from .report import machine_info


def build_parser() -> argparse.ArgumentParser:
    return micro_parser("python -m benchmarks.label_host", __doc__, batches=20, repeats=5)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    samples = train_samples(args.root, args.batch_size)
    if samples is None:
        return 2
    batches = []
    for start in range(0, len(samples) - args.batch_size + 1, args.batch_size):
        chunk = samples[start:start + args.batch_size]
        encoded = [s.label.read_bytes() for s in chunk]
        longest = max(map(len, encoded))
        padded = np.zeros((len(chunk), longest), dtype=np.uint8)  # as DALI's reader delivers a batch
        for row, data in zip(padded, encoded):
            row[:len(data)] = np.frombuffer(data, dtype=np.uint8)
        batches.append((list(padded), [str(s.label) for s in chunk], np.array([[s.height, s.width] for s in chunk])))
    staging = [np.zeros(1 << 20, dtype=np.uint8)]  # reused, grown when a plan needs more (as the decoder's)

    def host_buffer(n: int) -> np.ndarray:
        if staging[0].size < n:
            staging[0] = np.zeros(2 * n, dtype=np.uint8)
        return staging[0][:n]

    planner = LabelPlanner(voc_color_table(), host_buffer=host_buffer)  # palettes mapped once, as the decoder's
    geometry = BatchGeometry.of(np.zeros((args.batch_size, 2), dtype=np.int32))

    def plan(encoded, names, shapes):
        planner.plan(encoded, names, geometry, expected_hw=shapes)

    def parse(encoded, names, shapes):
        for data, name in zip(encoded, names):
            parse_png(data, name)

    figures = {}
    for label, work in (("plan", plan), ("parse", parse)):
        work(*batches[0])  # warm-up
        per_batch_ms = []
        for r in range(args.repeats):
            start = time.perf_counter()
            for k in range(args.batches):
                work(*batches[(r * args.batches + k) % len(batches)])
            per_batch_ms.append(1e3 * (time.perf_counter() - start) / args.batches)
        figures[label] = per_batch_ms
    per_batch_ms = figures["plan"]
    median = statistics.median(per_batch_ms)
    result = {"machine": machine_info(), "batch_size": args.batch_size, "per_batch_ms": per_batch_ms,
              "median_ms": median, "labels_per_s": 1e3 * args.batch_size / median,
              "parse_per_batch_ms": figures["parse"], "parse_median_ms": statistics.median(figures["parse"])}
    print(f"planning labels on one core: {median:.2f} ms per batch of {args.batch_size} "
          f"[{min(per_batch_ms):.2f}-{max(per_batch_ms):.2f}] -> {result['labels_per_s']:,.0f} labels/s, "
          f"of which parsing {result['parse_median_ms']:.2f} ms ({result['machine']['cpu']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
