"""``python -m benchmarks.throughput``: the GPU loader against the CPU loaders, in one run.

Each row runs in its own Python process (so its peak host RSS and GPU memory are its own),
on the same data, one after another. Output: a table on stdout with the machine, a JSON file
with every figure, and a PNG bar chart. A row that cannot run here is listed as skipped with
the reason; a row that fails is listed as failed and makes the command exit non-zero.

    python -m benchmarks.throughput                       # synthetic VOC-like tree, made once
    python -m benchmarks.throughput --root data/VOC --threads 4 8 16 --only dali-gpu jpeg
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from dali_voc.cli import parse_crop
from dali_voc.dataset_specs import dataset_names
from dali_voc.config import DEFAULT_HW_DECODER_LOAD, usable_cpu_count

from .report import format_table, machine_info, save_chart
from .rows import Row, batch_images, plan_rows, row_named, skip_reason, starter

DEFAULT_SYNTH_ROOT = Path("data/bench-synth")


def default_threads() -> list[int]:
    """4 and 8 threads (the targets' settings), capped at the usable cores."""
    return sorted({min(4, usable_cpu_count()), min(8, usable_cpu_count())})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=None,
                   help=f"a VOC tree (default: a synthetic VOC-like tree at {DEFAULT_SYNTH_ROOT}, made once)")
    p.add_argument("--dataset", default="voc", choices=dataset_names(),
                   help="the tree's dataset (default voc); without --root, a synthetic tree of it")
    p.add_argument("--synth-images", type=int, default=None,
                   help="train images of the synthetic tree (default: 1464 for VOC, 256 for the others)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop", type=parse_crop, default=(320, 480), help="HxW, default 320x480")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="CPU threads for the GPU loader rows (default: 4 and 8, capped at the cores)")
    p.add_argument("--seconds", type=float, default=5.0, help="minimum length of one timed repetition")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per row (median, min, max)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up batches per row")
    p.add_argument("--hw-decoder-load", type=float, default=DEFAULT_HW_DECODER_LOAD,
                   help="share of JPEGs for the GPU's hardware decoder in the DALI GPU rows "
                        f"(default {DEFAULT_HW_DECODER_LOAD}, the loader's)")
    p.add_argument("--only", nargs="+", default=None, help="run only rows whose name starts with one of these")
    p.add_argument("--out", type=Path, default=Path("out/benchmark"), help="folder for throughput.json and .png")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # internal: run one row, print JSON
    p.add_argument("--row-threads", type=int, default=None, help=argparse.SUPPRESS)
    return p


def run_one_row(args: argparse.Namespace) -> int:
    """Child process: measure one row and print its figures as JSON on the last line."""
    import torch

    from .measure import measure
    row = row_named(args.row, args.row_threads)
    figures = measure(starter(row, args.root, args.batch_size, args.crop, args.hw_decoder_load, args.dataset),
                      batch_images,
                      cuda=torch.cuda.is_available(), threads=row.threads, warmup_batches=args.warmup,
                      repeats=args.repeats, seconds=args.seconds, progress=not args.no_progress)
    print(json.dumps(figures.to_dict()))
    return 0


def _child_command(args: argparse.Namespace, row: Row, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--row", row.name, "--row-threads", str(threads),
           "--root", str(args.root), "--batch-size", str(args.batch_size),
           "--crop", f"{args.crop[0]}x{args.crop[1]}", "--seconds", str(args.seconds),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--hw-decoder-load", str(args.hw_decoder_load), "--dataset", args.dataset]
    return cmd + (["--no-progress"] if args.no_progress else [])


def _run_row(args: argparse.Namespace, row: Row) -> dict:
    """One row's result entry: ok with its figures, skipped or failed with the reason."""
    entry = {"name": row.name, "what": row.what, "threads": row.threads}
    reason = skip_reason(row)
    if reason:
        print(f"[{row.name}] skipped: {reason}", file=sys.stderr)
        return {**entry, "status": "skipped", "reason": reason}
    print(f"[{row.name}] {row.what} ...", file=sys.stderr)
    proc = subprocess.run(_child_command(args, row, row.threads), stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {**entry, "status": "failed", "reason": f"exit code {proc.returncode}; see the error printed above"}
    return {**entry, "status": "ok", "figures": json.loads(lines[-1])}


def run_rows(args: argparse.Namespace, rows: Sequence[Row],
             checkpoint: Optional[Callable[[list[dict]], None]] = None) -> list[dict]:
    """Run each row in its own process; ``checkpoint(results so far)`` after each row."""
    results = []
    for row in rows:
        results.append(_run_row(args, row))
        if checkpoint is not None:
            checkpoint(results)
    baseline = next((r for r in results if r["name"] == "reference-textbook" and r["status"] == "ok"), None)
    for r in results:
        if baseline and r["status"] == "ok":
            r["speedup"] = r["figures"]["images_per_s_median"] / baseline["figures"]["images_per_s_median"]
    return results


def ensure_root(args: argparse.Namespace) -> Path:
    """``--root``, or a synthetic tree of ``--dataset`` made once under :data:`DEFAULT_SYNTH_ROOT`."""
    if args.root is not None:
        return args.root
    from dali_voc.tools.synth import Ade20kSpec, CityscapesSpec, SynthSpec, VocAugSpec, synthesize
    train = args.synth_images or (1464 if args.dataset == "voc" else 256)
    voc = SynthSpec(num_train=train, num_val=16)
    spec = {"voc": voc, "voc_aug": VocAugSpec(voc, num_extra=0), "ade20k": Ade20kSpec(num_train=train, num_val=16),
            "cityscapes": CityscapesSpec(num_train=train, num_val=3)}[args.dataset]
    root = DEFAULT_SYNTH_ROOT if args.dataset == "voc" else DEFAULT_SYNTH_ROOT.with_name(f"bench-{args.dataset}")
    synthesize(root, args.dataset, spec, progress=not args.no_progress)
    return root


def check_figures(results: list[dict]) -> None:
    """Refuse to report nonsense: every figure of an ok row must be finite and positive."""
    for r in results:
        if r["status"] == "ok":
            f = r["figures"]
            for key in ("images_per_s_median", "images_per_s_min", "images_per_s_max", "first_batch_s", "peak_rss_mb"):
                if not (math.isfinite(f[key]) and f[key] > 0):
                    raise RuntimeError(f"row {r['name']}: {key}={f[key]} is not a positive finite number")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.row:
        return run_one_row(args)
    args.root = ensure_root(args)
    threads = args.threads or default_threads()
    rows = [r for r in plan_rows(threads) if not args.only or any(r.name.startswith(o) for o in args.only)]
    if not rows:
        print(f"--only {args.only} matches no row; rows: {[r.name for r in plan_rows(threads)]}", file=sys.stderr)
        return 2
    from dali_voc.datasets.scan import load_selection
    from dali_voc.dataset_specs import dataset_spec
    selection = load_selection(args.root, dataset_spec(args.dataset).train_split, args.crop, "drop", dataset=args.dataset)
    kept = selection.kept
    megapixels = sum(s.height * s.width for s in selection.samples) / max(kept, 1) / 1e6
    header = {
        "machine": machine_info(),
        "settings": {"root": str(args.root), "dataset": args.dataset, "train_images": kept,
                     "mean_image_megapixels": round(megapixels, 3), "batch_size": args.batch_size,
                     "crop": f"{args.crop[0]}x{args.crop[1]}", "seconds": args.seconds, "repeats": args.repeats,
                     "warmup_batches": args.warmup, "threads": threads, "hw_decoder_load": args.hw_decoder_load},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "throughput.partial.json"

    def checkpoint(done: list[dict]) -> None:  # rows finished so far survive an interrupted run
        partial.write_text(json.dumps({**header, "rows": done, "complete": False}, indent=2))

    results = run_rows(args, rows, checkpoint)
    check_figures(results)
    result = {**header, "rows": results, "load_average_at_end": [round(v, 2) for v in os.getloadavg()]}
    (args.out / "throughput.json").write_text(json.dumps(result, indent=2))
    partial.unlink(missing_ok=True)
    save_chart(result, args.out / "throughput.png")
    print(format_table(result))
    print(f"\nwrote {args.out / 'throughput.json'} and {args.out / 'throughput.png'}")
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
