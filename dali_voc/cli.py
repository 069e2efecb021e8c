"""``python -m dali_voc``: make, inspect, show, check and download VOC trees; run the demo.

Every subcommand builds at most one :class:`~dali_voc.config.LoaderConfig` and passes it down.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .config import DEFAULT_MAX_IMAGE_PIXELS
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
    from .synth import SynthSpec, synthesize_voc
    voc = synthesize_voc(args.root, SynthSpec(args.num_train, args.num_val, args.seed), workers=args.workers)
    manifest = json.loads((voc / "dali_voc_synth.json").read_text())
    print(f"synthetic VOC tree: {voc} ({args.num_train} train + {args.num_val} val; mean JPEG "
          f"{manifest['mean_jpeg_bytes'] / 1000:.1f} KB, mean label PNG {manifest['mean_png_bytes'] / 1000:.1f} KB)")
    return 0


def class_histogram(samples, progress: bool = True) -> np.ndarray:
    """Pixel count per label color class over ``samples`` (21 classes, void, unknown)."""
    from .colors import ColorTable, colors_to_indices
    from .images import read_rgb
    table = ColorTable(void_index=255)
    counts = np.zeros(23, dtype=np.int64)
    for sample in progress_bar(samples, desc="label histogram", unit="img", leave=False, disable=not progress):
        result = colors_to_indices(read_rgb(sample.label), table, dtype=np.int64)
        hist = np.bincount(result.indices.ravel(), minlength=256)
        counts[:21] += hist[:21]
        counts[21] += hist[255] - result.unknown_pixels
        counts[22] += result.unknown_pixels
    return counts


def cmd_info(args: argparse.Namespace) -> int:
    from .voc import VOC_CLASSES, VOCLayout, scan_samples, select_samples
    layout = VOCLayout.locate(args.root)
    print(f"VOC tree: {layout.root}")
    for split in args.splits or layout.available_splits():
        samples = scan_samples(layout, split, progress=True)
        kept = select_samples(samples, args.crop, "drop").kept
        print(f"\n[{split}] {len(samples)} images; {kept} at least {args.crop[0]}x{args.crop[1]} (kept by 'drop')")
        if args.no_histogram:
            continue
        counts = class_histogram(samples[: args.max_samples] if args.max_samples else samples)
        total = counts.sum()
        names = list(VOC_CLASSES) + ["void (border)", "unknown color"]
        for name, count in zip(names, counts):
            if count:
                print(f"  {name:>16}: {count:>12,d} px  {100 * count / total:6.2f}%")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .api import make_loader
    from .config import LoaderConfig
    from .viz import save_grid, save_overlay
    config = LoaderConfig(root=args.root, batch_size=args.n, crop_size=args.crop, seed=args.seed,
                          last_batch="partial", num_workers=0, backend="reference")
    loader = make_loader(config, args.split, shuffle=True)
    x, y = next(iter(loader))
    out = save_overlay(x, y, args.out) if args.overlay else save_grid(x, y, args.out, n=args.n)
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .api import make_loader
    from .config import LoaderConfig
    from .synth import SynthSpec, synthesize_voc
    from .viz import save_grid
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
    from .check import check_tree, format_report, write_json
    from .config import default_worker_count
    report = check_tree(args.root, args.splits, workers=args.workers or default_worker_count(),
                        max_pixels=args.max_image_pixels)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0 if report.clean else 1


def cmd_download(args: argparse.Namespace) -> int:
    from .download import ensure_voc
    voc = ensure_voc(args.root, url=args.url, sha1=args.sha1)
    print(f"VOC2012 ready: {voc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dali_voc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic VOC2012 tree")
    p.add_argument("--root", type=Path, required=True, help="folder to hold VOCdevkit/VOC2012")
    p.add_argument("--num-train", type=int, default=1464)
    p.add_argument("--num-val", type=int, default=1449)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores, at most 8)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("info", help="per split: images, kept after the crop filter, class pixel histogram")
    p.add_argument("root", type=Path)
    p.add_argument("--crop", type=parse_crop, default=(320, 480), help="HxW, default 320x480")
    p.add_argument("--splits", nargs="*", help="default: every list in ImageSets/Segmentation")
    p.add_argument("--max-samples", type=int, default=None, help="histogram over the first N labels only")
    p.add_argument("--no-histogram", action="store_true", help="skip decoding labels")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("show", help="write a grid of images over their labels (or an overlay) to PNG")
    p.add_argument("root", type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--crop", type=parse_crop, default=(320, 480))
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overlay", action="store_true", help="labels blended on the images")
    p.add_argument("--out", type=Path, default=Path("voc_grid.png"))
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="report every problem of a tree (exit 0 when clean, 1 otherwise)")
    p.add_argument("root", type=Path)
    p.add_argument("--splits", nargs="*", help="default: every list in ImageSets/Segmentation")
    p.add_argument("--workers", type=int, default=None, help="threads (default: all cores, at most 8)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help=f"refuse images whose header claims more pixels (default {DEFAULT_MAX_IMAGE_PIXELS:,})")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("download", help="fetch, verify (SHA-1) and extract VOC2012 trainval; resumable")
    p.add_argument("--root", type=Path, required=True, help="folder to hold VOCdevkit/VOC2012")
    p.add_argument("--url", default=None, help="a mirror (default: $DALI_VOC_URL or the official address)")
    p.add_argument("--sha1", default=None, help="expected SHA-1 (default: the official archive's)")
    p.set_defaults(func=cmd_download)

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
