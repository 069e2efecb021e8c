"""``python -m benchmarks.resize_roi``: two ways to scale+crop images in the DALI graph, timed
against each other on the same draws, and compared pixel by pixel.

* ``full``: resize the whole image to the scaled size, then crop (what a reader of the recipe
  would write);
* ``roi``: resize only the window's part of the image (``fn.resize`` with a region of interest
  in input coordinates and the window's size as output), then place it in the crop.

Both get the same scaled sizes and windows (drawn here, fed through ``external_source``), so the
outputs must agree; the figure is images/s of the image branch alone (decode included), median
of the repetitions, on the CPU or, with ``--gpu``, on the GPU.

    python -m benchmarks.resize_roi --root data/voc-synth [--gpu] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dali_voc.geometry.augment import PRESETS, draw_geometry
from dali_voc.config import IMAGENET_MEAN, IMAGENET_STD, usable_cpu_count
from dali_voc.datasets.scan import load_selection


def _draws(samples, crop: tuple[int, int], batches: int, batch_size: int, seed: int) -> list[list[tuple]]:
    """Per batch, per sample: (file, scaled, window), torchvision-preset draws."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(batches):
        rows = []
        for k in range(batch_size):
            s = samples[(b * batch_size + k) % len(samples)]
            g = draw_geometry(rng, (s.height, s.width), crop, PRESETS["torchvision"])
            rows.append((str(s.image), g.scaled, g.window, (s.height, s.width)))
        out.append(rows)
    return out


def build(mode: str, draws, crop: tuple[int, int], batch_size: int, threads: int, gpu: bool):
    """The image branch of the loader's graph in ``mode`` (``"full"`` or ``"roi"``)."""
    from nvidia.dali import fn, pipeline_def, types

    flat = [row for batch in draws for row in batch]
    ch, cw = crop

    def pos(anchor: int, extent: int, crop_extent: int) -> np.ndarray:
        """The normalized crop position DALI turns back into ``anchor`` (see dali_voc.loaders.pipeline)."""
        slack = extent - crop_extent
        return np.array(anchor / slack if slack else 0.0, np.float32)

    def source(info):
        path, scaled, window, (h, w) = flat[info.idx_in_epoch % len(flat)]
        sh, sw = scaled
        top, left = window
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = max(min(top + ch, sh), y0 + 1), max(min(left + cw, sw), x0 + 1)
        if mode == "full":
            return (np.fromfile(path, dtype=np.uint8), np.array(scaled, np.float32),
                    np.zeros(2, np.float32), np.ones(2, np.float32), pos(top, sh, ch), pos(left, sw, cw))
        return (np.fromfile(path, dtype=np.uint8), np.array([y1 - y0, x1 - x0], np.float32),
                np.array([y0 * h / sh, x0 * w / sw], np.float32), np.array([y1 * h / sh, x1 * w / sw], np.float32),
                pos(top - y0, y1 - y0, ch), pos(left - x0, x1 - x0, cw))

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=0 if gpu else None, seed=0)
    def pipe():
        data, size, roi_start, roi_end, pos_y, pos_x = fn.external_source(
            source=source, num_outputs=6, batch=False, parallel=False)
        images = fn.decoders.image(data, device="mixed" if gpu else "cpu", output_type=types.RGB)
        if mode == "full":
            images = fn.resize(images, size=size, interp_type=types.INTERP_LINEAR, antialias=True)
        else:
            images = fn.resize(images, size=size, roi_start=roi_start, roi_end=roi_end, roi_relative=False,
                               interp_type=types.INTERP_LINEAR, antialias=True)
        return fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW", mean=[255.0 * m for m in IMAGENET_MEAN],
            std=[255.0 * s for s in IMAGENET_STD], fill_values=0.0, out_of_bounds_policy="pad",
            crop_h=ch, crop_w=cw, crop_pos_y=pos_y, crop_pos_x=pos_x)

    return pipe()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.resize_roi", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=usable_cpu_count())
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    crop = (320, 480)
    samples = load_selection(args.root, "train", crop, "pad").samples
    draws = _draws(samples, crop, args.batches, args.batch_size, seed=1)
    outputs, rates = {}, {}
    for mode in ("full", "roi"):
        pipe = build(mode, draws, crop, args.batch_size, args.threads, args.gpu)
        pipe.build()
        got = []
        for _ in range(args.batches):
            (out,) = pipe.run()
            got.append(np.stack([np.asarray(t) for t in (out.as_cpu() if args.gpu else out)]))
        outputs[mode] = np.concatenate(got)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.batches):
                (out,) = pipe.run()
                if args.gpu:
                    out.as_cpu()
            times.append(time.perf_counter() - start)
        rates[mode] = args.batches * args.batch_size / statistics.median(times)
        del pipe
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * 255
    levels = np.abs(outputs["full"] - outputs["roi"]) * std
    result = {"images_per_s": rates, "roi_vs_full": rates["roi"] / rates["full"],
              "max_abs_levels": float(levels.max()), "mean_abs_levels": float(levels.mean()),
              "device": "gpu" if args.gpu else "cpu", "threads": args.threads, "batch_size": args.batch_size,
              "batches": args.batches, "repeats": args.repeats}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
