"""What the micro-benchmarks (``label_host``, ``geometry_graph``) share: their common
arguments and the train samples they time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from dali_voc.datasets.scan import load_selection
from dali_voc.datasets.scan import Sample


def micro_parser(prog: str, doc: str, batches: int, repeats: int) -> argparse.ArgumentParser:
    """``--root`` (required), ``--batch-size``, ``--batches``, ``--repeats``, ``--json``."""
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="a VOC tree (real or synthetic)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=batches, help="batches per timed repetition")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p


def train_samples(root: Path, batch_size: int) -> Optional[list[Sample]]:
    """The train samples kept at 320x480, or ``None`` (said on stderr) when they are fewer
    than one batch."""
    samples = load_selection(root, "train", (320, 480), "drop").samples
    if len(samples) < batch_size:
        print(f"{root}: {len(samples)} train samples, fewer than one batch of {batch_size}", file=sys.stderr)
        return None
    return samples
