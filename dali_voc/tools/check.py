"""``python -m dali_voc check ROOT [--dataset D]``: every problem of a tree, with the file it is in.

Split lists (VOC layouts: missing, not a regular file, oversized, empty, duplicate names, entries
that are no names: paths, bytes that are not UTF-8, too long; folder listings: file names that are
no names), missing images/labels or other things than regular files in their place, unreadable,
truncated or invalid files (PNG chunks out of order, image data cut short), oversized headers and
files, 16-bit labels and images, data after a label's IEND, image/label size mismatches,
grayscale/CMYK JPEGs, EXIF orientation tags, non-palette labels, colors outside the colormap and
palette indices without an entry (with pixel counts).
Samples are inspected in parallel with a progress bar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..dataset_specs import dataset_spec
from ..datasets.integrity import ERROR, WARNING, Problem, inspect_sample, map_parallel
from ..datasets.layouts import Layout
from ..errors import FileRefusedError
from ..datasets.scan import file_problem, name_problem, printable, shown_name, split_entries
from ..datasets.voc import VOCLayout


@dataclass
class CheckReport:
    """Findings of one tree: per-split sample counts and every problem."""

    root: str
    samples: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict:
        return {"root": self.root, "clean": self.clean, "samples": self.samples, "counts": self.counts(),
                "errors": sum(p.severity == ERROR for p in self.problems),
                "warnings": sum(p.severity == WARNING for p in self.problems),
                "problems": [p.to_dict() for p in self.problems]}


def _split_problems(layout: VOCLayout, split: str) -> tuple[list[str], list[Problem]]:
    """Unique names of a split list, and the list's own problems."""
    path = layout.split_path(split)
    try:
        entries = split_entries(path)
    except FileRefusedError as err:
        return [], [Problem(err.kind, ERROR, str(path), str(err))]
    problems = []
    if not entries:
        problems.append(Problem("empty-list", ERROR, str(path), "the split list names no sample"))
    seen, unique = set(), []
    for line, name in entries:
        problem = name_problem(name)
        if problem:
            problems.append(Problem("bad-name", ERROR, str(path), f"line {line}: {shown_name(name)}: {problem}; "
                                                                  f"not inspected"))
        elif name in seen:
            problems.append(Problem("duplicate-name", ERROR, str(path), f"{name!r} is listed more than once"))
        else:
            seen.add(name)
            unique.append(name)
    return unique, problems


def split_pairs(layout: Layout, split: str) -> tuple[list[tuple[str, Path, Path]], list[Problem]]:
    """The samples of a split and the split's own problems (VOC split lists; the other layouts
    list folders, which cannot name a sample twice)."""
    if isinstance(layout, VOCLayout):
        listed = file_problem(layout.split_path(split))
        if listed is not None:
            kind = "missing-list" if listed[0] == "missing" else "unreadable-list"
            return [], [Problem(kind, ERROR, str(layout.split_path(split)), f"split list {split!r} {listed[1]}")]
        names, problems = _split_problems(layout, split)
        return [(n, layout.image_path(n), layout.label_path(n)) for n in names], problems
    try:
        pairs = layout.pairs(split)
    except FileNotFoundError as err:
        return [], [Problem("missing-split", ERROR, str(layout.root), str(err))]
    named = [(pair, name_problem(pair[0])) for pair in pairs]  # file names from a folder listing
    return ([pair for pair, why in named if not why],
            [Problem("bad-name", ERROR, printable(pair[1]), f"{shown_name(pair[0])}: {why}; not inspected")
             for pair, why in named if why])


def check_tree(root, splits: Optional[Sequence[str]] = None, workers: int = 1, progress: bool = True,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, dataset: str = "voc") -> CheckReport:
    """Inspect ``splits`` (default: every split) of the ``dataset`` tree at ``root``. Files are
    judged as the loaders judge them (the same PNG checks and label decoding, through the
    dataset's label table); images whose headers claim more than ``max_pixels`` are reported
    without being decoded, so memory stays bounded per file.

    A missing tree or folder raises ``FileNotFoundError`` (nothing else can be checked)."""
    spec = dataset_spec(dataset)
    layout = spec.locate(root)
    report = CheckReport(str(layout.root))
    table = spec.inspection_table()
    splits = list(splits) if splits else layout.available_splits()
    if not splits:
        report.problems.append(Problem("no-splits", ERROR, str(layout.root), "no split found here"))
    inspected: dict[str, list[Problem]] = {}
    for split in splits:
        pairs, problems = split_pairs(layout, split)
        if problems and not pairs:
            report.problems += problems
            continue
        report.samples[split] = len(pairs)
        report.problems += problems
        todo = [p for p in pairs if p[0] not in inspected]  # trainval repeats train and val: inspect once
        results = map_parallel(lambda pair: inspect_sample(pair[1], pair[2], table, max_pixels=max_pixels),
                               todo, workers, progress, f"check {split}")
        for (name, _, _), found in zip(todo, results):
            inspected[name] = found
            report.problems += found
    return report


def format_report(report: CheckReport) -> str:
    lines = [str(p) for p in report.problems]
    per_split = ", ".join(f"{k}: {v}" for k, v in report.samples.items())
    d = report.to_dict()
    if report.clean:
        lines.append(f"{report.root}: clean ({per_split} samples)")
    else:
        counts = ", ".join(f"{k} x{v}" for k, v in d["counts"].items())
        lines.append(f"{report.root}: {d['errors']} error(s), {d['warnings']} warning(s) ({counts}); "
                     f"samples per split: {per_split}")
    return "\n".join(lines)


def write_json(report: CheckReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2))
