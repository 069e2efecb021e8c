"""``python -m benchmarks.sample_costs``: what one sample costs each loader's stages, on one thread.

The throughput rows say how fast each loader is; this says where a sample's CPU time goes,
stage by stage, timed in this process on one thread over the same train samples (median of
the repetitions, microseconds per sample):

* the torchvision peer (``benchmarks.rows``' peer rows, needs torchvision): reading and
  decoding the JPEG (``torchvision.io``), reading the label's palette indices (PIL), the
  crop-only transform split into the crop and the float conversion + normalization, the
  ``torchvision`` preset's transforms, and collating a batch (per sample);
* our CPU label path (``label_path="zlib"``): planning the batch (parsing every PNG), zlib's
  inflate, and the kernels' NumPy version (Adler-32, unfilter, crop + map), per label, at
  crop-only windows.

    python -m benchmarks.sample_costs --root data/voc-synth [--batch-size 64] [--batches 2] [--repeats 3]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from .micro import micro_parser, train_samples
from .report import machine_info


def build_parser():
    return micro_parser("python -m benchmarks.sample_costs", __doc__, batches=2, repeats=3)


def _per_sample_us(work: Callable[[], None], samples: int, repeats: int) -> float:
    """Median over ``repeats`` of ``work``'s wall time divided by ``samples``, in microseconds."""
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times) / samples


def label_costs(samples, batch_size: int, repeats: int) -> dict[str, float]:
    """Our CPU label path's stages, microseconds per label."""
    from dali_voc.datasets.voc import voc_color_table
    from dali_voc.geometry.windows import BatchGeometry, random_window
    from dali_voc.labels.nvcomp_plan import PaletteLUTs, decode_slot_numpy, inflate_slot, plan_labels

    rng = np.random.default_rng(0)
    encoded = [s.label.read_bytes() for s in samples]
    names = [str(s.label) for s in samples]
    shapes = np.array([[s.height, s.width] for s in samples])
    windows = np.array([tuple(random_window(rng, (s.height, s.width), (320, 480))) for s in samples])
    palettes = PaletteLUTs(voc_color_table())
    batches = [slice(k, k + batch_size) for k in range(0, len(samples) - batch_size + 1, batch_size)]
    plans = [plan_labels(encoded[b], names[b], palettes, BatchGeometry.of(windows[b]), expected_hw=shapes[b]) for b in batches]
    inflated = [[inflate_slot(plan, slot) for slot in plan.fast_slots] for plan in plans]
    out = np.empty((batch_size, 320, 480), dtype=np.int64)
    n = len(batches) * batch_size

    def plan_all():
        for b in batches:
            plan_labels(encoded[b], names[b], palettes, BatchGeometry.of(windows[b]), expected_hw=shapes[b])

    def inflate_all():
        for plan in plans:
            for slot in plan.fast_slots:
                inflate_slot(plan, slot)

    def kernels_all():
        for plan, rows in zip(plans, inflated):
            for slot, data in zip(plan.fast_slots, rows):
                decode_slot_numpy(plan, slot, data, out[slot], 255)

    return {"plan (parse, CRCs, layout)": _per_sample_us(plan_all, n, repeats),
            "inflate (zlib)": _per_sample_us(inflate_all, n, repeats),
            "kernels in NumPy (Adler-32, unfilter, crop + map to int64)": _per_sample_us(kernels_all, n, repeats)}


def peer_costs(samples, batch_size: int, repeats: int) -> Optional[dict[str, float]]:
    """The torchvision peer's stages, microseconds per sample; ``None`` without torchvision."""
    try:
        import torch
        from torch.utils.data import default_collate
        from torchvision import tv_tensors
        from torchvision.io import decode_jpeg, read_file
        from torchvision.transforms import v2
    except Exception as err:  # a torchvision that does not match torch fails at import
        print(f"peer stages skipped: torchvision is not usable here ({type(err).__name__}: {err})", file=sys.stderr)
        return None
    from PIL import Image

    from dali_voc.config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig

    from .rows import _torchvision_transform

    torch.set_num_threads(1)
    crop = v2.RandomCrop((320, 480))
    to_float = v2.Compose([v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64,
                                       "others": None}, scale=True),
                           v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))])
    root = samples[0].image.parents[1]
    textbook = _torchvision_transform(LoaderConfig(root=root, verbose=False))
    preset = _torchvision_transform(LoaderConfig(root=root, verbose=False, augment="torchvision"))
    images = [tv_tensors.Image(decode_jpeg(read_file(str(s.image)))) for s in samples]

    def mask_of(s):
        with Image.open(s.label) as label:
            return tv_tensors.Mask(torch.from_numpy(np.array(label)))

    masks = [mask_of(s) for s in samples]
    crops = [crop(i, m) for i, m in zip(images, masks)]
    items = [textbook(i, m) for i, m in zip(images, masks)]
    n = len(samples)

    def collate_all():
        for k in range(0, n - batch_size + 1, batch_size):
            default_collate(items[k:k + batch_size])

    return {
        "read + decode JPEG (torchvision.io)": _per_sample_us(
            lambda: [decode_jpeg(read_file(str(s.image))) for s in samples], n, repeats),
        "read label indices (PIL)": _per_sample_us(lambda: [mask_of(s) for s in samples], n, repeats),
        "RandomCrop of image and mask": _per_sample_us(lambda: [crop(i, m) for i, m in zip(images, masks)], n,
                                                       repeats),
        "float + normalize (ToDtype, Normalize)": _per_sample_us(lambda: [to_float(i, m) for i, m in crops], n,
                                                                 repeats),
        "crop-only transform (RandomCrop, ToDtype, Normalize)": _per_sample_us(
            lambda: [textbook(i, m) for i, m in zip(images, masks)], n, repeats),
        "torchvision preset transform (resize, flip, crop, float, normalize)": _per_sample_us(
            lambda: [preset(i, m) for i, m in zip(images, masks)], n, repeats),
        "collate a batch (per sample)": _per_sample_us(collate_all, (n // batch_size) * batch_size, repeats),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    samples = train_samples(args.root, args.batch_size)
    if samples is None:
        return 2
    samples = samples[:args.batch_size * args.batches]
    result = {"machine": machine_info(), "samples": len(samples), "batch_size": args.batch_size,
              "us_per_sample": {"ours: labels, label_path zlib": label_costs(samples, args.batch_size, args.repeats),
                                "peer: torchvision": peer_costs(samples, args.batch_size, args.repeats)}}
    for group, stages in result["us_per_sample"].items():
        print(group + (": skipped (no torchvision)" if stages is None else ""))
        for stage, us in (stages or {}).items():
            print(f"  {stage:<72} {us:9.0f} us")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
