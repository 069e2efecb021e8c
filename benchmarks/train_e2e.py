"""``python -m benchmarks.train_e2e``: the FCN training loop fed by each loader, in one run.

For each backend (the textbook CPU loader, the DALI loader): training images/s and the share
of step time spent waiting for data, over timed steps after warm-up steps. Writes a table and
``train_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from dali_voc.cli import parse_crop

from .report import machine_info
from .rows import TEXTBOOK_WORKERS


def measure_backend(backend: str, root: Path, batch_size: int, crop: tuple[int, int], steps: int,
                    warmup: int, amp: bool) -> dict:
    """Warm up, then time ``steps`` training steps of the FCN with one backend."""
    from dali_voc import load_data_voc
    from dali_voc.examples.fcn import build_fcn
    from dali_voc.examples.train_fcn import TrainSettings, train_epoch
    options = {"num_workers": TEXTBOOK_WORKERS} if backend == "reference" else {}
    train_iter, _ = load_data_voc(batch_size, crop, root=root, backend=backend, void_label="ignore",
                                  verbose=False, **options)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_fcn(21).to(device)
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
    return {"backend": backend, "steps": done, "images": images, "seconds": seconds,
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
    root = args.root
    if root is None:
        from dali_voc.synth import SynthSpec, synthesize_voc

        from .throughput import DEFAULT_SYNTH_ROOT
        synthesize_voc(DEFAULT_SYNTH_ROOT, SynthSpec(num_train=1464, num_val=16))
        root = DEFAULT_SYNTH_ROOT
    rows = []
    for backend in args.backends:
        print(f"[{backend}] training {args.steps} steps after {args.warmup} warm-up steps ...", file=sys.stderr)
        rows.append(measure_backend(backend, root, args.batch_size, args.crop, args.steps, args.warmup, args.amp))
    result = {"machine": machine_info(), "settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_e2e.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(f"machine: GPU {m['gpu'] or 'none'}; CPU {m['cpu']} ({m['cpu_cores_usable']} cores); torch "
          f"{m['versions']['torch']}; batch {args.batch_size}, crop {args.crop[0]}x{args.crop[1]}, "
          f"{args.steps} timed steps{', bf16' if args.amp else ''}")
    print(f"{'loader':<12} {'train images/s':>15} {'data wait':>10}")
    for r in rows:
        print(f"{r['backend']:<12} {r['images_per_s']:>15.1f} {100 * r['data_wait_share']:>9.1f}%")
    print(f"wrote {args.out / 'train_e2e.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
