"""``python -m dali_voc pack ROOT --out DEST``: a tree's splits as WebDataset tar shards, DALI
index files and a manifest, in a local folder or ``s3://bucket/prefix``
(:mod:`dali_voc.datasets.packed` describes the layout).

Every sample is inspected first exactly as ``check`` inspects it (the same functions); a tree
with errors is refused, naming them, unless ``skip_bad`` leaves those samples out (listed in the
manifest and counted by the loaders as skipped). Samples go into the shards in an order
shuffled with ``seed`` (WebDataset's advice: a reader that streams shards in order then sees
mixed samples), each sample's members together. Shards are written to a local staging folder,
hashed, and moved (local) or uploaded (S3, boto3) one by one; the manifest is written last,
so a pack that stopped half way has no manifest and is not mistaken for data.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..dataset_specs import dataset_spec
from ..datasets.integrity import ERROR, Problem, inspect_sample, map_parallel
from ..datasets.packed import (ID_EXT, INDEX_VERSION, MANIFEST_NAME, PACK_FORMAT, PACK_VERSION, index_lines,
                               pack_id)
from ..datasets.scan import image_size, png_header
from ..storage.stores import Store, open_store
from ..errors import PackError
from ..progress import progress_bar
from .check import split_pairs

DEFAULT_SHARD_BYTES = 256 * 1000 * 1000
_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "KIB": 1024, "MIB": 1024 ** 2, "GIB": 1024 ** 3}


def parse_size(text: str) -> int:
    """``"256MB"`` -> 256000000 (B, KB, MB, GB powers of 1000; KiB, MiB, GiB of 1024)."""
    t = text.strip().upper()
    number = t.rstrip("BKMGI")
    unit = t[len(number):]
    if unit not in _UNITS or not number:
        raise ValueError(f"a size looks like 256MB or 1GiB, got {text!r}")
    size = int(float(number) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"a shard size must be positive, got {text!r}")
    return size


@dataclass
class PackReport:
    """What :func:`pack_tree` wrote: the destination, per split the samples packed and the
    shards, and ``(name, reason)`` of the samples left out."""

    dest: str
    packed: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    bytes: int = 0

    def lines(self) -> list[str]:
        out = []
        for split, n in self.packed.items():
            skipped = self.left_out.get(split, [])
            out.append(f"{split}: {n} samples in {self.shards[split]} shard(s)"
                       + (f", {len(skipped)} left out" if skipped else ""))
            out += [f"  left out {name}: {why}" for name, why in skipped]
        out.append(f"wrote {self.bytes / 1e6:.1f} MB to {self.dest} (manifest {MANIFEST_NAME})")
        return out


def _first_error(problems: Sequence[Problem]) -> Optional[Problem]:
    return next((p for p in problems if p.severity == ERROR), None)


class _ShardWriter:
    """Writes one split's shards into ``staging`` and hands each finished one to ``publish``."""

    def __init__(self, split: str, staging: Path, shard_bytes: int, store: Store, exts: tuple[str, str]):
        self.split, self.staging, self.shard_bytes, self.store, self.exts = split, staging, shard_bytes, store, exts
        self.shards: list[dict] = []
        self.samples: list[dict] = []
        self._tar: Optional[tarfile.TarFile] = None
        self._pending: list[dict] = []
        self._size = 0

    def _name(self, k: int) -> str:
        return f"{self.split}-{k:06d}"

    def add(self, name: str, index: int, image: bytes, label: bytes, facts: dict) -> None:
        need = len(image) + len(label) + 3 * 512 + 1024
        if self._tar is not None and self._size + need > self.shard_bytes:
            self._finish()
        if self._tar is None:
            self._tar = tarfile.open(self.staging / f"{self._name(len(self.shards))}.tar", "w",
                                     format=tarfile.PAX_FORMAT)
            self._size = 0
        for ext, data in ((self.exts[0], image), (self.exts[1], label), (ID_EXT, pack_id(index))):
            info = tarfile.TarInfo(f"{name}.{ext}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: the same tree packs to the same bytes
            self._tar.addfile(info, io.BytesIO(data))
        self._size += need
        self._pending.append(dict(name=name, index=index, **facts))

    def _finish(self) -> None:
        assert self._tar is not None
        self._tar.close()
        self._tar = None
        k = len(self.shards)
        tar_path = self.staging / f"{self._name(k)}.tar"
        members = {}
        with tarfile.open(tar_path) as tf:  # the offsets as a reader finds them
            for m in tf.getmembers():
                members[m.name] = [m.offset_data, m.size]
        lines = [f"{INDEX_VERSION} {len(self._pending)}"]
        for row in self._pending:
            n = row["name"]
            row.update(shard=k, image=members[f"{n}.{self.exts[0]}"], label=members[f"{n}.{self.exts[1]}"],
                       id=members[f"{n}.{ID_EXT}"])
            lines.append(index_lines([(self.exts[0], *row["image"], f"{n}.{self.exts[0]}"),
                                      (self.exts[1], *row["label"], f"{n}.{self.exts[1]}"),
                                      (ID_EXT, *row["id"], f"{n}.{ID_EXT}")]))
        index_path = self.staging / f"{self._name(k)}.idx"
        index_path.write_text("\n".join(lines) + "\n")
        digest = hashlib.sha256()
        with open(tar_path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
        self.shards.append(dict(name=tar_path.name, index=index_path.name, samples=len(self._pending),
                                bytes=tar_path.stat().st_size, sha256=digest.hexdigest()))
        self.samples += self._pending
        self._pending = []
        for path in (tar_path, index_path):
            self.store.write_file(path.name, path)
            path.unlink()

    def close(self) -> None:
        if self._tar is not None:
            self._finish()


def _member_exts(image_suffix: str) -> tuple[str, str]:
    """Member extensions: the image's own suffix, ``png`` for the label (``label.png`` when the
    images are PNG too, as Cityscapes'), so each extension names one component."""
    image_ext = image_suffix.lstrip(".").lower() or "jpg"
    return image_ext, ("label.png" if image_ext == "png" else "png")


def pack_tree(root: Union[str, Path], dest: str, dataset: str = "voc", splits: Optional[Sequence[str]] = None,
              shard_bytes: int = DEFAULT_SHARD_BYTES, skip_bad: bool = False, seed: int = 0, workers: int = 1,
              progress: bool = True, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> PackReport:
    """Pack ``splits`` (default: every split) of the ``dataset`` tree at ``root`` into ``dest``
    (a folder or ``s3://bucket/prefix``).

    Raises:
        PackError: the tree has errors (``check``'s) and not ``skip_bad``, naming them; or a
            sample name holds a dot (WebDataset groups members by the text before the first dot).
        StorageError: ``dest`` cannot be written, naming the object and the store's reason.
    """
    spec = dataset_spec(dataset)
    layout = spec.locate(root)
    table = spec.inspection_table()
    store = open_store(dest)
    splits = list(splits) if splits else layout.available_splits()
    if not splits:
        raise PackError(f"{layout.root}: no split found to pack")
    report = PackReport(dest)
    manifest: dict = dict(format=PACK_FORMAT, version=PACK_VERSION, dataset=dataset, source=str(layout.root),
                          order_seed=seed, splits={})
    exts: Optional[tuple[str, str]] = None
    with tempfile.TemporaryDirectory(prefix="dali_voc-pack-") as staging_dir:
        staging = Path(staging_dir)
        for split in splits:
            pairs, problems = split_pairs(layout, split)
            if problems and not pairs:
                raise PackError(f"split {split!r}: " + "; ".join(str(p) for p in problems))
            errors = [p for p in problems if p.severity == ERROR]
            if errors:
                raise PackError(f"split {split!r}: {errors[0]} (fix the split list; 'python -m dali_voc check' lists all)")
            found = map_parallel(lambda p: inspect_sample(p[1], p[2], table, colors=False, max_pixels=max_pixels),
                                 pairs, workers, progress, f"check {split}")
            bad = [(name, err) for (name, _, _), probs in zip(pairs, found) if (err := _first_error(probs))]
            bad += [(name, Problem("bad-name", ERROR, name, "holds a '.', which WebDataset readers take for the "
                                   "start of the extension")) for name, _, _ in pairs if "." in name]
            if bad and not skip_bad:
                listed = "; ".join(str(p) for _, p in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
                raise PackError(f"split {split!r}: {len(bad)} sample(s) with errors, nothing packed: {listed} "
                                f"(--skip-bad packs the rest and lists them in the manifest)")
            left_out = {name: f"{p.path}: {p.detail}" for name, p in bad}
            exts = exts or _member_exts(pairs[0][1].suffix if pairs else ".jpg")
            writer = _ShardWriter(split, staging, shard_bytes, store, exts)
            good = [(index, pair) for index, pair in enumerate(pairs) if pair[0] not in left_out]
            order = np.random.default_rng([seed]).permutation(len(good))
            for k in progress_bar(order.tolist(), desc=f"pack {split}", unit="img", disable=not progress):
                index, (name, image, label) = good[k]
                height, width = image_size(image)
                _, _, short, palette = png_header(label)
                writer.add(name, index, image.read_bytes(), label.read_bytes(),
                           dict(height=height, width=width, short_palette=short, palette=palette))
            writer.close()
            samples = sorted(writer.samples, key=lambda r: r["index"])
            manifest["splits"][split] = dict(listed=len(pairs), samples=samples, shards=writer.shards,
                                             skipped=[[n, why] for n, why in left_out.items()])
            report.packed[split] = len(samples)
            report.shards[split] = len(writer.shards)
            report.left_out[split] = list(left_out.items())
            report.bytes += sum(s["bytes"] for s in writer.shards)
        manifest["image_ext"], manifest["label_ext"] = exts or _member_exts(".jpg")
        store.write(MANIFEST_NAME, json.dumps(manifest, separators=(",", ":")).encode())
    return report

