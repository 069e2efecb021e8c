"""Train the textbook's FCN on VOC with either loader: ``python -m dali_voc.examples.train_fcn``.

Switching ``--backend dali`` / ``--backend reference`` is the only change to the loop. The
loss ignores ``ignore_index`` (255), which is where the loader puts padding, unknown colors
and, with ``--void-label ignore``, the VOC borders; with ``--void-label background`` (the
textbook) borders count as background, as in the textbook.

Per epoch: training loss, images/s, the share of step time spent waiting for data (time
blocked in the iterator's ``next()`` / total step time), and validation pixel accuracy and
mean IoU from a confusion matrix computed on the model's device: by default on every
validation image whole (``--val-mode whole``, a 512x512 canvas), or on the textbook's random
crops of the images large enough (``--val-mode crop``). After the last epoch, the per-class IoU
table.

The same command runs data-parallel under ``torchrun --nproc-per-node N [--nnodes M ...]``:
one process per GPU (NCCL) or CPU process (gloo), the model wrapped in
``DistributedDataParallel``, each rank loading its own shard of every epoch, loss, images and
the confusion matrix summed over ranks, rank 0 alone printing and writing files
(:mod:`dali_voc.loaders.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import nn

from ..loaders.distributed import Process, all_reduce_sum, process_group
from ..batch import Batch
from ..metrics import confusion_matrix, iou_table, mean_iou, per_class_iou, pixel_accuracy
from ..datasets.voc import VOC_CLASSES
from ..storage.stores import is_url
from .fcn import build_fcn


@dataclass(frozen=True)
class TrainSettings:
    """How to train (the data settings live in the loader's LoaderConfig)."""

    epochs: int = 5
    max_steps: Optional[int] = None  # per epoch; None: the whole epoch
    lr: float = 0.001
    weight_decay: float = 1e-3
    amp: bool = False  # bfloat16 autocast
    compile: bool = False


@dataclass
class EpochReport:
    """Figures of one training epoch and the validation pass after it."""

    epoch: int
    train_loss: float
    steps: int
    images: int
    images_per_s: float
    data_wait_share: float
    val_pixel_accuracy: float
    val_mean_iou: float
    val_images: int
    val_class_iou: list  # per class, NaN where a class neither occurs nor is predicted


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def train_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                device: torch.device, settings: TrainSettings, finish_epoch: bool = True,
                record: Optional[list] = None) -> tuple[float, int, int, float, float]:
    """One pass of training over ``(X, Y)`` batches (or :class:`~dali_voc.loaders.base.Batch`).
    Returns ``(mean loss, steps, images, seconds, seconds waiting for data)`` of this process.
    The clock stops after each step's loss reaches the host (a device sync).

    With ``settings.max_steps`` and ``finish_epoch``, the rest of the loader's epoch is
    consumed untimed so the next epoch starts fresh (pass ``finish_epoch=False`` for an
    endless stream of batches). ``record``: a list that gets each step's sample ids and crop
    windows (``Batch`` inputs only)."""
    model.train()
    iterator = iter(batches)
    losses, steps, images, waited = 0.0, 0, 0, 0.0
    _sync(device)
    start = time.perf_counter()
    while settings.max_steps is None or steps < settings.max_steps:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        waited += time.perf_counter() - t0
        x, y = batch[0], batch[1]
        if record is not None and isinstance(batch, Batch):
            record.append({"ids": batch.ids.tolist(), "windows": batch.windows.tolist()})
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, settings.amp):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses += float(loss.item())  # syncs: the step is over when the clock is read
        steps += 1
        images += x.shape[0]
    if settings.max_steps is not None and finish_epoch:
        for _ in iterator:  # finish the epoch untimed so the next one starts fresh
            pass
    return losses / max(steps, 1), steps, images, time.perf_counter() - start, waited


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, device: torch.device, num_classes: int, ignore_index: int,
             amp: bool = False, max_steps: Optional[int] = None) -> tuple[torch.Tensor, int]:
    """Confusion matrix ``[C, C]`` over the batches (on ``device``) and the image count."""
    model.eval()
    cm = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    images = 0
    for step, batch in enumerate(batches):
        if max_steps is not None and step >= max_steps:
            continue  # drain: the loader's epoch must end
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        if len(x):  # a shard's empty last batch under last_batch="partial" has nothing to score
            with _autocast(device, amp):
                pred = model(x).argmax(dim=1)
            cm += confusion_matrix(pred, y, num_classes, ignore_index)
        images += x.shape[0]
    return cm, images


def train(model: nn.Module, train_iter: Iterable, test_iter: Iterable, settings: TrainSettings,
          device: torch.device, ignore_index: int, num_classes: int = 21,
          log: Callable[[str], None] = print, record: Optional[list] = None) -> list[EpochReport]:
    """The training loop: SGD with the textbook's settings, cross-entropy ignoring ``ignore_index``.

    ``model`` may be wrapped in ``DistributedDataParallel`` (on ``device``) by the caller; the
    report's images, loss, data wait and confusion matrix are then summed or averaged over all
    ranks, so every rank returns the same reports. ``record``: one list per epoch of each
    step's sample ids and windows (see :func:`train_epoch`)."""
    model.to(device)
    step_model = torch.compile(model) if settings.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index)
    reports = []
    for epoch in range(settings.epochs):
        for loader in (train_iter, test_iter):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)  # the DistributedSampler convention
        steps_of_epoch: Optional[list] = [] if record is not None else None
        loss, steps, images, seconds, waited = train_epoch(step_model, train_iter, optimizer, loss_fn, device,
                                                           settings, record=steps_of_epoch)
        if record is not None:
            record.append(steps_of_epoch)
        cm, val_images = evaluate(step_model, test_iter, device, num_classes, ignore_index, settings.amp,
                                  settings.max_steps)
        # Over all ranks: sums of loss, images, seconds, waiting, confusion matrix, val images.
        totals = all_reduce_sum(torch.tensor([loss, images, seconds, waited, val_images, 1.0], dtype=torch.float64,
                                             device=device))
        loss, images, seconds, waited, val_images, ranks = totals.tolist()
        cm = all_reduce_sum(cm)
        per_rank_seconds = seconds / ranks
        report = EpochReport(epoch + 1, loss / ranks, steps, int(images),
                             images / per_rank_seconds if per_rank_seconds > 0 else 0.0,
                             waited / seconds if seconds > 0 else 0.0, pixel_accuracy(cm), mean_iou(cm),
                             int(val_images), per_class_iou(cm))
        reports.append(report)
        log(f"epoch {report.epoch}: loss {report.train_loss:.3f}, {report.images_per_s:.1f} images/s, "
            f"data wait {100 * report.data_wait_share:.1f}% of step time; val pixel acc "
            f"{report.val_pixel_accuracy:.3f}, mIoU {report.val_mean_iou:.3f} ({report.val_images} images)")
    if reports:
        log(f"per-class IoU (%) after epoch {len(reports)}:\n{iou_table(cm, VOC_CLASSES[:num_classes])}")
    return reports


def parameter_digest(model: nn.Module) -> str:
    """SHA-1 of every parameter's bytes: equal on all ranks of a correct data-parallel run."""
    digest = hashlib.sha1()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    from ..cli import parse_crop
    p = argparse.ArgumentParser(prog="python -m dali_voc.examples.train_fcn", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=_root, default=None,
                   help="a VOC tree, a packed folder or s3://bucket/prefix (default: the demo's synthetic tree)")
    p.add_argument("--backend", choices=("auto", "dali", "reference"), default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop", type=parse_crop, default=(320, 480), help="HxW, multiples of 32")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--steps", type=int, default=None, help="at most this many steps per epoch")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--void-label", choices=("background", "ignore"), default="ignore")
    p.add_argument("--val-mode", choices=("whole", "crop"), default="whole",
                   help="validate on every image whole (default) or on the textbook's random crops")
    p.add_argument("--augment", choices=("textbook", "torchvision", "mmseg"), default="textbook",
                   help="training augmentation preset (default: the textbook's random crop)")
    p.add_argument("--amp", action="store_true", help="bfloat16 mixed precision")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--weights", type=Path, default=None, help="local ResNet-18 state_dict for the backbone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None,
                   help="loader workers/threads per process (default: all cores, at most 8)")
    p.add_argument("--json", type=Path, default=None, help="write the per-epoch reports here (rank 0)")
    p.add_argument("--record", type=Path, default=None,
                   help="write, per rank, each step's sample ids and crop windows and a digest of the model's "
                        "parameters to RECORD.rank<k>.json (to check a data-parallel run)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> list[EpochReport]:
    from .. import load_data_voc
    args = build_parser().parse_args(argv)
    if args.crop[0] % 32 or args.crop[1] % 32:
        raise SystemExit(f"--crop {args.crop} must be multiples of 32 (the FCN's stride)")
    with process_group() as proc:
        root = _tree(args.root, proc)
        torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts them)
        train_iter, test_iter = load_data_voc(args.batch_size, args.crop, root=root, backend=args.backend,
                                              void_label=args.void_label, seed=args.seed, verbose=proc.is_main,
                                              val_mode=args.val_mode, augment=args.augment,
                                              num_workers=args.workers,
                                              return_meta=args.record is not None)
        model = build_fcn(21, args.weights).to(proc.device)
        step_model: nn.Module = model
        if proc.distributed:
            step_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[proc.local_rank] if proc.device.type == "cuda" else None)
        settings = TrainSettings(epochs=args.epochs, max_steps=args.steps, lr=args.lr, amp=args.amp,
                                 compile=args.compile)
        record: Optional[list] = [] if args.record else None
        log = print if proc.is_main else (lambda _line: None)
        reports = train(step_model, train_iter, test_iter, settings, proc.device, train_iter.config.ignore_index,
                        log=log, record=record)
        if args.record:
            path = args.record.with_name(f"{args.record.name}.rank{proc.rank}.json")
            path.write_text(json.dumps({"rank": proc.rank, "world_size": proc.world_size, "epochs": record,
                                        "parameters_sha1": parameter_digest(model)}))
        if args.json and proc.is_main:
            args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2))
        train_iter.close()
        test_iter.close()
    return reports


def _root(text: str) -> Union[Path, str]:
    """``--root``: a folder, or an ``s3://`` URL kept as it is (packed data)."""
    return text if is_url(text) else Path(text)


def _tree(root: Union[Path, str, None], proc: Process) -> Union[Path, str]:
    """``root``, or the demo's synthetic tree, written by rank 0 while the others wait."""
    if root is not None:
        return root
    from ..cli import DEMO_ROOT, DEMO_SPEC
    from ..tools.synth import SynthSpec, synthesize_voc
    if proc.is_main:
        synthesize_voc(DEMO_ROOT, SynthSpec(**DEMO_SPEC))
    if proc.distributed:
        torch.distributed.barrier()
    return DEMO_ROOT


if __name__ == "__main__":
    main()
