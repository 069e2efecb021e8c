"""Packed data: a dataset's splits as WebDataset tar shards, DALI index files and one manifest.

Layout of a packed folder or ``s3://bucket/prefix`` (written by ``python -m dali_voc pack``)::

    dali_voc_pack.json                the manifest (:data:`MANIFEST_NAME`)
    <split>-000000.tar, ...           shards: per sample ``<name>.<image ext>``, ``<name>.<label ext>``
                                      and ``<name>.id`` (its split index, int32 little-endian), together
    <split>-000000.idx, ...           DALI's index of each shard (``v1.2``: ext, data offset, size, member)

The manifest records the dataset, the member extensions, and per split: how many names the
split listed, the samples left out at packing (``--skip-bad``) with the reason, every packed
sample (name, split index, image height and width, the label facts the loaders need, its shard
and the offset and size of each member's data) and every shard (sample count, bytes, SHA-256).

The loaders start from the manifest alone (one read): no per-file header reads, no listing of
objects. A packed sample's ``image`` and ``label`` are :class:`~dali_voc.storage.members.MemberRef`
(a byte range of a shard) instead of paths; :func:`~dali_voc.storage.members.read_source` reads either.
"""

from __future__ import annotations

import json
import os
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import PackError, StorageError, DatasetFormatError
from .scan import Sample, Selection, select_samples, size_problem
from ..storage.members import MemberRef, check_member_header, store_of
from ..storage.stores import is_url, join

MANIFEST_NAME = "dali_voc_pack.json"
PACK_FORMAT = "dali_voc-pack"
#: Version of the manifest and shard layout; a reader refuses another.
PACK_VERSION = 1
#: The member holding a sample's split index (int32, little-endian): what DALI's reader outputs
#: so that every batch names its samples.
ID_EXT = "id"
INDEX_VERSION = "v1.2"


def is_packed(root: Union[str, os.PathLike]) -> bool:
    """Whether ``root`` is packed data: an ``s3://`` location (only packed data is read from
    object stores) or a folder holding :data:`MANIFEST_NAME`."""
    return is_url(root) or (Path(root).expanduser() / MANIFEST_NAME).is_file()


def root_text(root: Union[str, os.PathLike]) -> str:
    """``root`` as the string :class:`MemberRef` and the stores use."""
    return root if is_url(root) else str(Path(root).expanduser())


def load_manifest(root: Union[str, os.PathLike]) -> dict[str, Any]:
    """The manifest at ``root`` (one read), checked for its format and version.

    Raises:
        StorageError: it cannot be read (naming the store's reason).
        PackError: it is not a manifest of this version.
    """
    store = store_of(root_text(root))
    data = store.read(MANIFEST_NAME)
    try:
        manifest = json.loads(data)
    except ValueError as err:
        raise PackError(f"{store.url(MANIFEST_NAME)} is not JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise PackError(f"{store.url(MANIFEST_NAME)} is not a dali_voc pack manifest")
    if manifest.get("version") != PACK_VERSION:
        raise PackError(f"{store.url(MANIFEST_NAME)} is pack version {manifest.get('version')!r}; this dali_voc reads "
                        f"version {PACK_VERSION}: pack the tree again")
    return manifest


def manifest_split(manifest: dict[str, Any], split: str, where: str) -> dict[str, Any]:
    """The record of ``split`` in ``manifest`` (``FileNotFoundError`` listing the packed splits)."""
    splits = manifest.get("splits", {})
    if split not in splits:
        raise FileNotFoundError(f"split {split!r} is not in the pack at {where} (packed splits: "
                                f"{', '.join(splits) or 'none'})")
    return splits[split]


def packed_samples(root: Union[str, os.PathLike], split: str, manifest: Optional[dict] = None
                   ) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The packed samples of ``split`` (in split-list order, members as :class:`MemberRef`)
    and ``(name, reason)`` of those the packer left out."""
    root = root_text(root)
    manifest = load_manifest(root) if manifest is None else manifest
    record = manifest_split(manifest, split, root)
    image_ext, label_ext = manifest["image_ext"], manifest["label_ext"]
    shards = [s["name"] for s in record["shards"]]
    placed = sum(s["samples"] for s in record["shards"])
    if placed != len(record["samples"]) or any(not 0 <= r["shard"] < len(shards) for r in record["samples"]):
        raise PackError(f"the manifest at {root} disagrees with itself for split {split!r}: its shards record {placed} "
                        f"samples, it lists {len(record['samples'])} (or places one in a shard it does not list)")
    samples = []
    for r in record["samples"]:
        members = (r["image"], r["label"], r["id"])
        if r["id"][1] != 4 or any(offset < tarfile.BLOCKSIZE or size <= 0 for offset, size in members):
            raise PackError(f"the manifest at {root} records impossible members for sample {r['name']!r} of split "
                            f"{split!r} (offsets, sizes {members}; the .id member holds 4 bytes)")
        shard = shards[r["shard"]]
        image = MemberRef(root, shard, f"{r['name']}.{image_ext}", *r["image"])
        label = MemberRef(root, shard, f"{r['name']}.{label_ext}", *r["label"])
        samples.append(Sample(r["index"], r["name"], image, label, r["height"], r["width"],  # type: ignore[arg-type]
                              bool(r["short_palette"]), bool(r["palette"])))
    samples.sort(key=lambda s: s.index)
    return samples, [tuple(s) for s in record.get("skipped", [])]  # type: ignore[misc]


def packed_selection(config, split: str) -> Selection:
    """What :func:`dali_voc.datasets.integrity.loader_selection` gives for packed data: the
    manifest's samples, the packer's left-out ones counted as skipped, oversized images
    refused (or skipped with ``on_error="skip"``), then the small-image policy. Every file
    was checked when it was packed, as ``check`` checks it.

    Raises:
        DatasetFormatError: the manifest is of another dataset, or an image is oversized.
    """
    root = root_text(config.root)
    manifest = load_manifest(root)
    if manifest["dataset"] != config.dataset:
        raise DatasetFormatError(f"the pack at {root} holds dataset {manifest['dataset']!r}, not {config.dataset!r}; "
                             f"pass dataset={manifest['dataset']!r} (load_data)")
    samples, skipped = packed_samples(root, split, manifest)
    kept = []
    for s in samples:
        oversized = size_problem(s.height, s.width, config.max_image_pixels)
        if oversized:
            if config.on_error != "skip":
                raise DatasetFormatError(f"sample {s.name!r}: image {s.image} {oversized}")
            skipped.append((s.name, f"image {s.image} {oversized}"))
            continue
        kept.append(s)
    return select_samples(kept, config.crop_size, config.small_image_policy, skipped)


def index_lines(entries: Sequence[tuple[str, int, int, str]]) -> str:
    """One line of a DALI index: ``ext offset size member`` per component."""
    return " ".join(f"{ext} {offset} {size} {member}" for ext, offset, size, member in entries)


def pack_id(index: int) -> bytes:
    """The ``.id`` member of a sample: its split index as int32 little-endian."""
    return struct.pack("<i", index)


@dataclass(frozen=True)
class ShardPlan:
    """What DALI's webdataset reader reads for a selection: the shards (URLs or paths) that
    hold at least one selected sample, in packed order, and an index file for each listing
    only the selected samples (written by :func:`write_selection_indexes`)."""

    paths: tuple[str, ...]
    index_paths: tuple[str, ...]
    ext: tuple[str, str, str]


def write_selection_indexes(root: Union[str, os.PathLike], split: str, samples: Sequence[Sample], folder: Path,
                            manifest: Optional[dict] = None) -> ShardPlan:
    """Write, into the local ``folder``, one DALI index per shard listing the selected
    ``samples`` only (dropped and skipped ones are not read at all), from the manifest's
    offsets: nothing is read from the shards. Samples keep their packed order in a shard.

    Raises:
        PackError: a sample is not in the manifest.
    """
    root = root_text(root)
    manifest = load_manifest(root) if manifest is None else manifest
    record = manifest_split(manifest, split, root)
    image_ext, label_ext = manifest["image_ext"], manifest["label_ext"]
    wanted = {s.index for s in samples}
    per_shard: dict[int, list[dict]] = {}
    for r in record["samples"]:
        if r["index"] in wanted:
            per_shard.setdefault(r["shard"], []).append(r)
    missing = wanted - {r["index"] for rows in per_shard.values() for r in rows}
    if missing:
        raise PackError(f"the manifest at {root} lists no sample with split index {sorted(missing)[0]}")
    paths, index_paths = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for k, shard in enumerate(record["shards"]):
        rows = sorted(per_shard.get(k, []), key=lambda r: r["image"][0])
        if not rows:
            continue
        lines = [f"{INDEX_VERSION} {len(rows)}"]
        for r in rows:
            lines.append(index_lines([(image_ext, *r["image"], f"{r['name']}.{image_ext}"),
                                      (label_ext, *r["label"], f"{r['name']}.{label_ext}"),
                                      (ID_EXT, *r["id"], f"{r['name']}.{ID_EXT}")]))
        index = folder / f"{split}-{k:06d}.idx"
        index.write_text("\n".join(lines) + "\n")
        paths.append(join(root, shard["name"]))
        index_paths.append(str(index))
    return ShardPlan(tuple(paths), tuple(index_paths), (image_ext, label_ext, ID_EXT))


def probe_shards(root: Union[str, os.PathLike], split: str) -> Optional[str]:
    """Why the shards of ``split`` cannot be read as the manifest says (a missing or
    unreadable object, a size other than recorded), or ``None`` when each answers with its
    recorded size and every member's tar header stands where the manifest places it: what the
    DALI loader reports when DALI's reader fails (DALI does not say which sample). One request
    per shard, then one per member (this runs on the way to an error only)."""
    root = root_text(root)
    try:
        manifest = load_manifest(root)
        store = store_of(root)
        for shard in manifest_split(manifest, split, root)["shards"]:
            size = store.size(shard["name"])
            if size != shard["bytes"]:
                return (f"{store.url(shard['name'])} holds {size} bytes, the manifest records {shard['bytes']} "
                        f"(a truncated or replaced shard)")
        samples, _ = packed_samples(root, split, manifest)
        for sample in samples:
            for ref in (sample.image, sample.label):
                check_member_header(ref, store.read_range(ref.shard, ref.offset - tarfile.BLOCKSIZE, tarfile.BLOCKSIZE))
    except (StorageError, PackError, FileNotFoundError) as err:
        return str(err)
    return None
