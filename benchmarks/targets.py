"""``python -m benchmarks.targets RESULT.json``: a throughput run against the GPU label targets.

Reads the ``throughput.json`` (or ``throughput.partial.json``) of ONE run of
``python -m benchmarks.throughput`` with ``--threads 4 8`` and checks the targets of the GPU
PNG label work (all figures are medians of that run; ratios are taken within it):

* the shipped GPU loader with 8 CPU threads at least 3x the stock-PNG GPU loader (8 threads);
* ... and at least 75% of the JPEG-only ceiling (DALI mixed decoder alone);
* the shipped GPU loader with 4 CPU threads at least 6,500 images/s.

Prints one line per target (value, threshold, verdict); exit 0 when all are met, 1 when one
is not, 2 when a row it needs is missing or did not run. It also warns when the run was not
on an H100, which the targets were set on.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

SPEEDUP_OVER_STOCK = 3.0
SHARE_OF_CEILING = 0.75
IMAGES_PER_S_AT_4_THREADS = 6500.0


@dataclass(frozen=True)
class Verdict:
    """One target: what was measured against what was required."""

    target: str
    value: float
    threshold: float

    @property
    def met(self) -> bool:
        return self.value >= self.threshold


def _median(rows: dict, name: str) -> Optional[float]:
    row = rows.get(name)
    if row is None or row.get("status") != "ok":
        return None
    return float(row["figures"]["images_per_s_median"])


def check(result: dict) -> tuple[list[Verdict], list[str]]:
    """The verdicts for a benchmark result, and the names of the rows it lacked."""
    rows = {r["name"]: r for r in result["rows"]}
    needed = ["dali-gpu-8t", "dali-gpu-stockpng-8t", "jpeg-ceiling-dali", "dali-gpu-4t"]
    values = {name: _median(rows, name) for name in needed}
    missing = [name for name, v in values.items() if v is None]
    verdicts = []
    full8, stock8, ceiling, full4 = (values[n] for n in needed)
    if full8 is not None and stock8 is not None:
        verdicts.append(Verdict("8 threads: GPU labels / stock PNG decoder", full8 / stock8, SPEEDUP_OVER_STOCK))
    if full8 is not None and ceiling is not None:
        verdicts.append(Verdict("8 threads: GPU labels / JPEG-only ceiling", full8 / ceiling, SHARE_OF_CEILING))
    if full4 is not None:
        verdicts.append(Verdict("4 threads: GPU labels, images/s", full4, IMAGES_PER_S_AT_4_THREADS))
    ceiling_row = rows.get("jpeg-ceiling-dali")
    if ceiling_row is not None and ceiling_row.get("threads") != 8 and "jpeg-ceiling-dali" not in missing:
        missing.append(f"jpeg-ceiling-dali with 8 threads (this run used {ceiling_row.get('threads')}; "
                       f"run with --threads 4 8)")
    return verdicts, missing


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m benchmarks.targets out/benchmark/throughput.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    result = json.loads(path.read_text())
    gpu = result["machine"].get("gpu") or "no GPU"
    print(f"{path}: {gpu}, {result['machine'].get('cpu')} ({result['machine'].get('cpu_cores_usable')} cores), "
          f"batch {result['settings']['batch_size']}, crop {result['settings']['crop']}")
    if "H100" not in gpu:
        print(f"note: the targets were set on an H100; this run used {gpu}")
    verdicts, missing = check(result)
    for v in verdicts:
        shown = f"{v.value:,.0f}" if v.threshold > 100 else f"{v.value:.2f}"
        limit = f"{v.threshold:,.0f}" if v.threshold > 100 else f"{v.threshold:.2f}"
        print(f"{'MET    ' if v.met else 'NOT MET'} {v.target}: {shown} (target >= {limit})")
    for name in missing:
        print(f"MISSING {name}")
    if missing:
        return 2
    return 0 if all(v.met for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
