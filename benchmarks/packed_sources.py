"""``python -m benchmarks.packed_sources``: one tree read three ways, by both loaders, in one run:
the unpacked tree (a file per image and label), local shards (``python -m dali_voc pack``), and
the same shards in a loopback S3 server (SeaweedFS on 127.0.0.1, benchmarks/seaweed.py).

Each row runs in its own process (its own DALI threads or DataLoader workers) and reports
images/s (median, min, max of the timed repetitions after warm-up) and the time to the first
batch (loader construction included). Also reported: how long packing took, to a folder and to
the server. Loopback S3 measures the protocol's cost on this machine (HTTP, signing, the
server's own CPU on the same cores), not a network.

    python -m benchmarks.packed_sources --root data/voc-synth --seconds 5 --repeats 3 --warmup 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dali_voc.cli import parse_crop

from .report import machine_info

SOURCES = ("tree", "local-shards", "s3-shards")
BACKENDS = ("reference", "dali-cpu")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.packed_sources", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="a VOC tree")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop", type=parse_crop, default=(320, 480))
    p.add_argument("--threads", type=int, default=2, help="DALI CPU threads / reference DataLoader workers")
    p.add_argument("--shard-size", default="64MB")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("out/benchmark"))
    p.add_argument("--row", nargs=3, default=None, help=argparse.SUPPRESS)  # internal: SOURCE BACKEND ROOT
    return p


def run_one_row(args: argparse.Namespace) -> int:
    """Child process: time one (source, backend) row; print its figures as JSON on the last line."""
    from dali_voc.api import make_loader
    from dali_voc.config import LoaderConfig
    from .measure import measure
    _, backend, root = args.row
    options = dict(backend="reference", num_workers=args.threads) if backend == "reference" else dict(
        backend="dali", device="cpu", num_workers=args.threads)
    config = LoaderConfig(root=root, batch_size=args.batch_size, crop_size=args.crop, verbose=False, **options)

    def start():
        loader = make_loader(config, "train", shuffle=True)
        return lambda: iter(loader)
    figures = measure(start, lambda batch: int(batch[0].shape[0]), cuda=False, threads=args.threads,
                      warmup_batches=args.warmup, repeats=args.repeats, seconds=args.seconds, progress=False)
    print(json.dumps(figures.to_dict()))
    return 0


def _row(args: argparse.Namespace, source: str, backend: str, root: str, env: dict) -> dict:
    command = [sys.executable, "-m", "benchmarks.packed_sources", "--root", str(args.root), "--batch-size",
               str(args.batch_size), "--crop", f"{args.crop[0]}x{args.crop[1]}", "--threads", str(args.threads),
               "--seconds", str(args.seconds), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--row", source, backend, root]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"source": source, "backend": backend, "failed": done.stderr[-2000:]}
    return {"source": source, "backend": backend, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.row:
        return run_one_row(args)
    from dali_voc.tools.pack import pack_tree, parse_size
    from . import seaweed
    shard_bytes = parse_size(args.shard_size)
    rows, packing = [], {}
    load_before = os.getloadavg()  # the machine may be shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="dali_voc-bench-packed-") as scratch:
        local = Path(scratch) / "shards"
        t0 = time.perf_counter()
        pack_tree(args.root, str(local), splits=["train"], shard_bytes=shard_bytes, workers=args.threads,
                  progress=False)
        packing["local_s"] = round(time.perf_counter() - t0, 2)
        proc, server = seaweed.start(Path(scratch) / "seaweedfs")
        try:
            env = dict(os.environ, **server.env)
            server.client().create_bucket(Bucket="bench")
            saved = dict(os.environ)
            os.environ.update(server.env)
            t0 = time.perf_counter()
            pack_tree(args.root, "s3://bench/voc", splits=["train"], shard_bytes=shard_bytes, workers=args.threads,
                      progress=False)
            packing["s3_s"] = round(time.perf_counter() - t0, 2)
            os.environ.clear()
            os.environ.update(saved)
            roots = {"tree": str(args.root), "local-shards": str(local), "s3-shards": "s3://bench/voc"}
            for backend in BACKENDS:
                for source in SOURCES:
                    row = _row(args, source, backend, roots[source], env)
                    rows.append(row)
                    print(_line(row), flush=True)
        finally:
            seaweed.stop(proc)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"command": " ".join(["python -m benchmarks.packed_sources", *(argv or sys.argv[1:])]),
              "machine": machine_info(), "batch_size": args.batch_size, "crop": list(args.crop),
              "threads": args.threads, "shard_size": args.shard_size, "packing": packing, "rows": rows,
              "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()}}
    (args.out / "packed_sources.json").write_text(json.dumps(result, indent=2))
    print(f"packing: {packing}; wrote {args.out / 'packed_sources.json'}")
    return 1 if any("failed" in r for r in rows) else 0


def _line(row: dict) -> str:
    if "failed" in row:
        return f"{row['backend']:<10} {row['source']:<13} FAILED: {row['failed'][-300:]}"
    return (f"{row['backend']:<10} {row['source']:<13} {row['images_per_s_median']:8.1f} images/s "
            f"[{row['images_per_s_min']:.1f}-{row['images_per_s_max']:.1f}]  first batch {row['first_batch_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
