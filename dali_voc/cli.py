"""``python -m dali_voc``: make, inspect, show, check and download dataset trees; run the demo.

Every subcommand builds at most one :class:`~dali_voc.config.LoaderConfig` and passes it down.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .config import DEFAULT_MAX_IMAGE_PIXELS
from .dataset_specs import dataset_names, dataset_spec
from .progress import progress_bar

DEMO_ROOT = Path("data/synthetic")
DEMO_SPEC = dict(num_train=256, num_val=64)


def parse_crop(text: str) -> tuple[int, int]:
    """``"320x480"`` -> ``(320, 480)`` (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"crop must look like 320x480 (height x width), got {text!r}") from None
    return h, w


def cmd_synth(args: argparse.Namespace) -> int:
    from .tools.synth import Ade20kSpec, CityscapesSpec, SynthSpec, VocAugSpec, synthesize
    voc = SynthSpec(args.num_train or 1464, args.num_val or 1449, args.seed)
    specs = {
        "voc": voc,
        "voc_aug": VocAugSpec(voc, args.num_extra),
        "ade20k": Ade20kSpec(num_train=args.num_train or 20210, num_val=args.num_val or 2000, seed=args.seed),
        "cityscapes": CityscapesSpec(num_train=args.num_train or 2975, num_val=args.num_val or 500, seed=args.seed,
                                     image_size=args.image_size),
    }
    spec = specs[args.dataset]
    where = synthesize(args.root, args.dataset, spec, workers=args.workers)
    print(f"synthetic {dataset_spec(args.dataset).title} tree: {where} ({spec})")
    return 0


def class_histogram(samples, table, num_classes: int, progress: bool = True) -> np.ndarray:
    """Pixel count per class over ``samples``' labels, then ignored/void, then unknown values
    (``[num_classes + 2]``), decoded as the loaders decode them."""
    from .labels.tables import UNKNOWN
    from .labels.host import read_label
    counts = np.zeros(num_classes + 2, dtype=np.int64)
    for sample in progress_bar(samples, desc="label histogram", unit="img", leave=False, disable=not progress):
        classes = read_label(sample.label, table).classes.ravel()
        known = classes[(classes >= 0) & (classes < num_classes)]
        counts[:num_classes] += np.bincount(known, minlength=num_classes)
        counts[num_classes + 1] += int((classes == UNKNOWN).sum())
        counts[num_classes] += classes.size - known.size - int((classes == UNKNOWN).sum())
    return counts


def cmd_info(args: argparse.Namespace) -> int:
    from .datasets.scan import scan_samples, select_samples
    spec = dataset_spec(args.dataset)
    layout = spec.locate(args.root)
    print(f"{spec.title} tree: {layout.root}")
    for split in args.splits or layout.available_splits():
        samples = scan_samples(layout, split, progress=True)
        kept = select_samples(samples, args.crop, "drop").kept
        print(f"\n[{split}] {len(samples)} images; {kept} at least {args.crop[0]}x{args.crop[1]} (kept by 'drop')")
        if args.no_histogram:
            continue
        counts = class_histogram(samples[: args.max_samples] if args.max_samples else samples,
                                 spec.inspection_table(), spec.num_classes)
        total = counts.sum()
        names = list(spec.class_names) + ["void / ignored", "unknown value"]
        for name, count in zip(names, counts):
            if count:
                print(f"  {name:>20}: {count:>12,d} px  {100 * count / total:6.2f}%")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .api import make_loader
    from .config import LoaderConfig
    from .tools.viz import save_grid, save_overlay
    config = LoaderConfig(root=args.root, batch_size=args.n, crop_size=args.crop, seed=args.seed, dataset=args.dataset,
                          last_batch="partial", num_workers=0, backend="reference")
    loader = make_loader(config, args.split or config.spec.train_split, shuffle=True)
    x, y = next(iter(loader))
    colors = config.spec.class_colors
    out = (save_overlay(x, y, args.out, colormap=colors) if args.overlay
           else save_grid(x, y, args.out, n=args.n, colormap=colors))
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .api import make_loader
    from .config import LoaderConfig
    from .tools.synth import SynthSpec, synthesize_voc
    from .tools.viz import save_grid
    root = args.root
    if root is None:
        root = DEMO_ROOT
        print(f"no --root given: using a synthetic VOC tree at {root} (generated once)")
        synthesize_voc(root, SynthSpec(**DEMO_SPEC))
    config = LoaderConfig(root=root, batch_size=args.batch_size, crop_size=args.crop, seed=args.seed,
                          void_label=args.void_label, small_images=args.small_images, backend=args.backend)
    loader = make_loader(config, "train", shuffle=True)
    start = time.perf_counter()
    first_batch_s = None
    images = 0
    classes: set[int] = set()
    last = None
    for x, y in loader:
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
        images += x.shape[0]
        classes.update(int(c) for c in y.unique().tolist())
        last = (x, y)
    if last is None:
        print("no full batch in one epoch: lower --batch-size")
        return 1
    if last[0].is_cuda:
        import torch
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    x, y = last
    print(f"one epoch: {images} images in {len(loader)} batches, {elapsed:.2f} s "
          f"({images / elapsed:.1f} images/s; first batch after {first_batch_s:.2f} s)")
    print(f"X: {tuple(x.shape)} {x.dtype} on {x.device}, values in [{x.min():.2f}, {x.max():.2f}]")
    print(f"Y: {tuple(y.shape)} {y.dtype} on {y.device}, label values seen: {sorted(classes)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {save_grid(x, y, out)} (top: images, bottom: labels)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .tools.check import check_tree, format_report, write_json
    from .config import default_worker_count
    from .datasets.packed import is_packed
    if is_packed(args.root):  # shards against their manifest (dali_voc.tools.check_pack)
        from .tools.check_pack import check_pack
        report = check_pack(args.root, args.splits)
    else:
        report = check_tree(args.root, args.splits, workers=args.workers or default_worker_count(),
                            max_pixels=args.max_image_pixels, dataset=args.dataset)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0 if report.clean else 1


def cmd_pack(args: argparse.Namespace) -> int:
    from .tools.pack import pack_tree
    from .config import default_worker_count
    report = pack_tree(args.root, args.out, dataset=args.dataset, splits=args.splits, shard_bytes=args.shard_size,
                       skip_bad=args.skip_bad, seed=args.seed, workers=args.workers or default_worker_count(),
                       max_pixels=args.max_image_pixels)
    print("\n".join(report.lines()))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .tools.download import ensure_voc
    voc = ensure_voc(args.root, url=args.url, sha1=args.sha1)
    print(f"VOC2012 ready: {voc}")
    return 0


def cmd_sbd(args: argparse.Namespace) -> int:
    from .tools.download import ensure_sbd
    from .tools.sbd import convert_sbd
    sbd = ensure_sbd(args.sbd, url=args.url, md5=args.md5) if args.download else args.sbd
    try:
        done = convert_sbd(sbd, args.root)
    except ImportError as err:  # scipy reads the .mat files: an optional dependency
        print(f"dali_voc sbd: error: {err}", file=sys.stderr)
        return 1
    print(f"SegmentationClassAug ready in {done.voc_root}: {done.from_sbd} labels from SBD, {done.from_voc} from VOC, "
          f"{done.written} written, {done.images_copied} images copied; train_aug.txt lists {done.train_aug} images")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .tools.doctor import main as doctor
    return doctor(args.tree, args.seconds, args.paths, args.json, progress=not args.no_progress)


def _dataset_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=dataset_names(), default="voc", help="the tree's layout (default: voc)")


def _root_arg(text: str):
    """A folder as a Path; an ``s3://`` URL kept as it is."""
    from .storage.stores import is_url
    return text if is_url(text) else Path(text)


def _shard_size(text: str) -> int:
    from .tools.pack import parse_size
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dali_voc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic tree (VOC2012 by default) with the dataset's statistics")
    p.add_argument("--root", type=Path, required=True, help="folder to hold the tree (VOC: VOCdevkit/VOC2012)")
    _dataset_option(p)
    p.add_argument("--num-train", type=int, default=None,
                   help="training images (default: the real dataset's: 1464 VOC, 20210 ADE20K, 2975 Cityscapes)")
    p.add_argument("--num-val", type=int, default=None, help="validation images (default: the real dataset's)")
    p.add_argument("--num-extra", type=int, default=200, help="voc_aug: images with SBD labels only (default 200)")
    p.add_argument("--image-size", type=parse_crop, default=(1024, 2048),
                   help="cityscapes: HxW of the images (default 1024x2048, Cityscapes' own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores, at most 8)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("info", help="per split: images, kept after the crop filter, class pixel histogram")
    p.add_argument("root", type=Path)
    _dataset_option(p)
    p.add_argument("--crop", type=parse_crop, default=(320, 480), help="HxW, default 320x480")
    p.add_argument("--splits", nargs="*", help="default: every split of the tree")
    p.add_argument("--max-samples", type=int, default=None, help="histogram over the first N labels only")
    p.add_argument("--no-histogram", action="store_true", help="skip decoding labels")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("show", help="write a grid of images over their labels (or an overlay) to PNG")
    p.add_argument("root", type=Path)
    _dataset_option(p)
    p.add_argument("--split", default=None, help="default: the dataset's training split")
    p.add_argument("--crop", type=parse_crop, default=(320, 480))
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overlay", action="store_true", help="labels blended on the images")
    p.add_argument("--out", type=Path, default=Path("voc_grid.png"))
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="report every problem of a tree, or of packed data against its manifest "
                                     "(exit 0 when clean, 1 otherwise)")
    p.add_argument("root", type=_root_arg, help="a tree, a packed folder or s3://bucket/prefix")
    _dataset_option(p)
    p.add_argument("--splits", nargs="*", help="default: every split of the tree")
    p.add_argument("--workers", type=int, default=None, help="threads (default: all cores, at most 8)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help=f"refuse images whose header claims more pixels (default {DEFAULT_MAX_IMAGE_PIXELS:,})")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("pack", help="pack a tree's splits into tar shards + index + manifest (a folder or s3://)")
    p.add_argument("root", type=Path)
    p.add_argument("--out", required=True, help="a folder or s3://bucket/prefix (endpoint: $AWS_ENDPOINT_URL)")
    _dataset_option(p)
    p.add_argument("--splits", nargs="*", help="default: every split of the tree")
    p.add_argument("--shard-size", type=_shard_size, default="256MB", help="bytes per shard at most (default 256MB)")
    p.add_argument("--skip-bad", action="store_true", help="leave out samples with errors (listed in the manifest)")
    p.add_argument("--seed", type=int, default=0, help="seed of the order samples are packed in")
    p.add_argument("--workers", type=int, default=None, help="threads checking files (default: all cores, at most 8)")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help=f"refuse images whose header claims more pixels (default {DEFAULT_MAX_IMAGE_PIXELS:,})")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("download", help="fetch, verify (SHA-1) and extract VOC2012 trainval; resumable")
    p.add_argument("--root", type=Path, required=True, help="folder to hold VOCdevkit/VOC2012")
    p.add_argument("--url", default=None, help="a mirror (default: $DALI_VOC_URL or the official address)")
    p.add_argument("--sha1", default=None, help="expected SHA-1 (default: the official archive's)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("sbd", help="convert SBD's .mat labels into VOC2012/SegmentationClassAug + train_aug.txt")
    p.add_argument("--sbd", type=Path, required=True,
                   help="SBD's dataset folder (or benchmark_RELEASE, or the folder above); with --download, "
                        "the folder to download into")
    p.add_argument("--root", type=Path, required=True, help="the VOC tree (a folder holding VOCdevkit/VOC2012)")
    p.add_argument("--download", action="store_true", help="fetch SBD's benchmark.tgz first (resumable, MD5-checked)")
    p.add_argument("--url", default=None, help="a mirror (default: $DALI_VOC_SBD_URL or the official address)")
    p.add_argument("--md5", default=None, help="expected MD5 (default: the official archive's)")
    p.set_defaults(func=cmd_sbd)

    p = sub.add_parser("doctor", help="does dali_voc work here? environment, every path against the reference "
                                      "on a generated tree, speed per path (exit 0 only when all agree)")
    p.add_argument("--json", type=Path, default=None, help="also write everything as JSON")
    p.add_argument("--seconds", type=float, default=3.0, help="speed run per path (default 3; 0 skips it)")
    p.add_argument("--paths", nargs="*", default=None, choices=("reference", "dali-cpu", "dali-gpu", "dali-gpu-nvcomp",
                                                                  "dali-gpu-nvcomp-fancy"),
                   help="only these paths (default: every path available here)")
    p.add_argument("--tree", type=Path, default=None, help="write the test tree here and keep it (default: a "
                                                           "temporary folder, removed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="load one epoch (synthetic tree by default), report speed, write a grid")
    p.add_argument("--root", type=Path, default=None, help=f"a VOC tree (default: synthetic, at {DEMO_ROOT})")
    p.add_argument("--backend", choices=("auto", "dali", "reference"), default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop", type=parse_crop, default=(320, 480))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--void-label", choices=("background", "ignore"), default="background")
    p.add_argument("--small-images", choices=("drop", "pad"), default="drop")
    p.add_argument("--out", type=Path, default=Path("out/demo_grid.png"))
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one subcommand; an error dali_voc raises on purpose is one line on stderr, exit 1."""
    from .errors import DaliVocError
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DaliVocError, FileNotFoundError) as err:
        print(f"dali_voc {args.command}: error: {err}", file=sys.stderr)
        return 1
