"""``python -m benchmarks.train_e2e``: the FCN training loop fed by each loader, in one run.

For each backend (the textbook CPU loader, the DALI loader): training images/s and the share
of step time spent waiting for data, over timed steps after warm-up steps. Writes a table and
``train_e2e.json``.

Under ``torchrun --nproc-per-node N`` each rank trains its shard with the model in
``DistributedDataParallel``; the table gives every rank's figures and the total images/s (the
sum over ranks), and rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from dali_voc.cli import parse_crop

from dali_voc.loaders.distributed import Process, all_gather, process_group

from .report import machine_info
from .rows import TEXTBOOK_WORKERS


def measure_backend(backend: str, root: Path, batch_size: int, crop: tuple[int, int], steps: int,
                    warmup: int, amp: bool, proc: Process) -> dict:
    """Warm up, then time ``steps`` training steps of the FCN with one backend, on this rank."""
    from dali_voc import load_data_voc
    from dali_voc.examples.fcn import build_fcn
    from dali_voc.examples.train_fcn import TrainSettings, train_epoch
    options = {"num_workers": TEXTBOOK_WORKERS} if backend == "reference" else {}
    train_iter, _ = load_data_voc(batch_size, crop, root=root, backend=backend, void_label="ignore",
                                  verbose=False, **options)
    device = proc.device
    torch.manual_seed(0)
    model: torch.nn.Module = build_fcn(21).to(device)
    if proc.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[proc.local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, weight_decay=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=train_iter.config.ignore_index)

    def endless():
        while True:
            yield from train_iter

    batches = endless()
    train_epoch(model, batches, optimizer, loss_fn, device, TrainSettings(max_steps=warmup, amp=amp),
                finish_epoch=False)
    _, done, images, seconds, waited = train_epoch(model, batches, optimizer, loss_fn, device,
                                                   TrainSettings(max_steps=steps, amp=amp), finish_epoch=False)
    train_iter.close()
    return {"backend": backend, "rank": proc.rank, "steps": done, "images": images, "seconds": seconds,
            "images_per_s": images / seconds, "data_wait_share": waited / seconds,
            "device": str(device), "loader": repr(train_iter)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_e2e", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=None, help="a VOC tree (default: the benchmark's synthetic tree)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop", type=parse_crop, default=(320, 480))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--backends", nargs="+", default=["reference", "dali"], choices=["reference", "dali"])
    p.add_argument("--out", type=Path, default=Path("out/benchmark"))
    args = p.parse_args(argv)
    with process_group() as proc:
        root = args.root
        if root is None:
            from dali_voc.tools.synth import SynthSpec, synthesize_voc

            from .throughput import DEFAULT_SYNTH_ROOT
            if proc.is_main:  # one writer; the other ranks wait for the tree
                synthesize_voc(DEFAULT_SYNTH_ROOT, SynthSpec(num_train=1464, num_val=16))
            if proc.distributed:
                torch.distributed.barrier()
            root = DEFAULT_SYNTH_ROOT
        rows = []
        for backend in args.backends:
            if proc.is_main:
                print(f"[{backend}] training {args.steps} steps after {args.warmup} warm-up steps on "
                      f"{proc.world_size} rank(s) ...", file=sys.stderr)
            per_rank = all_gather(measure_backend(backend, root, args.batch_size, args.crop, args.steps,
                                                  args.warmup, args.amp, proc))
            rows.append({"backend": backend, "ranks": per_rank,
                         "images_per_s": sum(r["images_per_s"] for r in per_rank),
                         "data_wait_share": max(r["data_wait_share"] for r in per_rank),
                         "steps": per_rank[0]["steps"]})
        if proc.is_main:
            _report(args, rows, proc.world_size)
    return 0


def _report(args: argparse.Namespace, rows: list[dict], world_size: int) -> None:
    result = {"machine": machine_info(), "settings": {k: str(v) for k, v in vars(args).items()},
              "world_size": world_size, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_e2e.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(f"machine: GPU {m['gpu'] or 'none'}; CPU {m['cpu']} ({m['cpu_cores_usable']} cores); torch "
          f"{m['versions']['torch']}; batch {args.batch_size}, crop {args.crop[0]}x{args.crop[1]}, "
          f"{args.steps} timed steps{', bf16' if args.amp else ''}")
    print(f"{'loader':<12} {'rank':>5} {'train images/s':>15} {'data wait':>10}")
    for r in rows:
        for rank in r["ranks"] if world_size > 1 else []:
            print(f"{r['backend']:<12} {rank['rank']:>5} {rank['images_per_s']:>15.1f} "
                  f"{100 * rank['data_wait_share']:>9.1f}%")
        print(f"{r['backend']:<12} {'all':>5} {r['images_per_s']:>15.1f} {100 * r['data_wait_share']:>9.1f}%"
              + ("  (data wait: the slowest rank)" if world_size > 1 else ""))
    print(f"wrote {args.out / 'train_e2e.json'}")


if __name__ == "__main__":
    sys.exit(main())
