"""``python -m benchmarks.profile_loader``: where a loader row's time goes, with torch.profiler.

For a benchmark row that misses its target: the row's loader (as ``benchmarks.throughput``
builds it) runs warm-up batches, then a window of batches consumed as a training loop would
(:func:`benchmarks.measure.touch`) under ``torch.profiler`` (CPU and, on a GPU, CUDA activity).
The loader's main-thread phases are named ranges (``dali_voc::wait_for_dali``,
``dali_voc::check_batch``, ``dali_voc::decode_labels``, ``dali_voc::assemble``); DALI's own
threads are not traced, so ``wait_for_dali`` is the time the main thread waited for them.

Writes ``phases.txt`` (the named ranges: total and per batch), ``ops_cpu.txt`` and, on a GPU,
``ops_cuda.txt`` (the operators by self time), and ``trace.json`` (open in Perfetto or
chrome://tracing).

    python -m benchmarks.profile_loader --root data/voc-synth --row dali-gpu-8t --out out/profile \
        [--batches 30] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from .measure import endless, touch
from .report import machine_info
from .rows import row_named, starter

PHASES = ("dali_voc::wait_for_dali", "dali_voc::check_batch", "dali_voc::decode_labels", "dali_voc::assemble")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_loader", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="a VOC tree (real or synthetic)")
    p.add_argument("--row", default="dali-gpu-8t", help="a row of benchmarks.throughput (its name ends in the threads)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=30, help="batches inside the profiled window")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("out/profile"))
    return p


def _row(name: str):
    """The row called ``name``, its GPU threads read from its ``-<t>t`` suffix (8 without one)."""
    suffix = re.search(r"-(\d+)t$", name)
    try:
        return row_named(name, int(suffix.group(1)) if suffix else 8)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def phase_table(events, batches: int) -> list[dict]:
    """The loader's named phases from ``profiler.key_averages()``: calls, total and per-batch
    milliseconds of CPU (wall) time on the main thread."""
    rows = []
    for event in events:
        if event.key in PHASES:
            total_ms = event.cpu_time_total / 1e3
            rows.append({"phase": event.key, "calls": event.count, "total_ms": total_ms,
                         "per_batch_ms": total_ms / max(batches, 1)})
    return sorted(rows, key=lambda r: PHASES.index(r["phase"]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    row = _row(args.row)
    cuda = torch.cuda.is_available()
    if row.needs_gpu and not cuda:
        print(f"{row.name} needs a CUDA device; this machine has none", file=sys.stderr)
        return 2
    make_epoch = starter(row, args.root, args.batch_size, (320, 480))()
    batches = endless(make_epoch)
    for _ in range(args.warmup):
        touch(next(batches))
    if cuda:
        torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.batches):
            touch(next(batches))
        if cuda:
            torch.cuda.synchronize()
    wall_ms = 1e3 * (time.perf_counter() - start)
    args.out.mkdir(parents=True, exist_ok=True)
    events = prof.key_averages()
    phases = phase_table(events, args.batches)
    lines = [f"{row.name}: {row.what}", f"{args.batches} batches of {args.batch_size} in {wall_ms:.0f} ms under the "
             f"profiler ({wall_ms / args.batches:.2f} ms per batch, {args.batches * args.batch_size / wall_ms * 1e3:,.0f} "
             f"images/s; the profiler slows it)", ""]
    lines += [f"{p['phase']:28s} {p['calls']:5d} calls  {p['total_ms']:9.1f} ms  {p['per_batch_ms']:7.2f} ms/batch"
              for p in phases]
    (args.out / "phases.txt").write_text("\n".join(lines) + "\n")
    (args.out / "ops_cpu.txt").write_text(events.table(sort_by="self_cpu_time_total", row_limit=30))
    if cuda:
        (args.out / "ops_cuda.txt").write_text(events.table(sort_by="self_device_time_total", row_limit=30))
    prof.export_chrome_trace(str(args.out / "trace.json"))
    (args.out / "profile.json").write_text(json.dumps({"machine": machine_info(), "row": row.name,
                                                       "batches": args.batches, "wall_ms": wall_ms,
                                                       "phases": phases}, indent=2))
    print("\n".join(lines))
    print(f"wrote {args.out}/phases.txt, ops_cpu.txt{', ops_cuda.txt' if cuda else ''}, trace.json, profile.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
