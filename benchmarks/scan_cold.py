"""``python -m benchmarks.scan_cold``: how long the scan of a split (every image's and label's
header read, :func:`dali_voc.datasets.scan.scan_samples`) takes, since the loaders read the
headers afresh each time they are built (there is no size cache to trust or to write).

Two figures per split: the first scan after dropping the kernel's page cache (``--drop-caches``,
root only: a disk read of every header, the worst case on a local disk), and the median of
``--repeats`` scans with the headers in the page cache (a loader built again).

    python -m benchmarks.scan_cold --root data/voc-synth [--splits train val] [--drop-caches]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Optional, Sequence

from dali_voc.datasets.scan import scan_samples
from dali_voc.datasets.voc import VOCLayout


def _drop_page_cache() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def _timed_scan(layout: VOCLayout, split: str) -> tuple[float, int]:
    start = time.perf_counter()
    samples = scan_samples(layout, split)
    return time.perf_counter() - start, len(samples)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--drop-caches", action="store_true", help="time a first scan from a cold page cache (root)")
    args = parser.parse_args(argv)
    layout = VOCLayout.locate(args.root)
    rows = []
    for split in args.splits:
        cold = None
        if args.drop_caches:
            _drop_page_cache()
            cold, _ = _timed_scan(layout, split)
        times, count = zip(*(_timed_scan(layout, split) for _ in range(args.repeats)))
        rows.append({"split": split, "samples": count[0], "cold_page_cache_s": cold,
                     "warm_median_s": statistics.median(times)})
    print(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} CPUs", "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
