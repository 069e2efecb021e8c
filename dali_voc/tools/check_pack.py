"""``python -m dali_voc check DEST`` on packed data (a folder or ``s3://bucket/prefix``): does
every shard hold what the manifest says?

Per shard: the object exists; its size and SHA-256 are the recorded ones; its tar headers list
exactly the members the manifest places in it, each at the recorded data offset and size;
its DALI index file agrees with the tar; the sample counts agree. Each shard is read once,
streamed through the hash. The pixels were checked when the tree was packed (as ``check``
checks a tree); matching SHA-256 digests show the shards still hold those bytes.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Optional, Sequence

from ..datasets.integrity import ERROR, Problem
from ..datasets.packed import ID_EXT, INDEX_VERSION, load_manifest, root_text
from ..storage.members import store_of
from ..errors import PackError, StorageError
from ..progress import progress_bar
from .check import CheckReport


def _expected_members(record: dict, k: int, image_ext: str, label_ext: str) -> dict[str, tuple[int, int]]:
    """``{member: (offset, size)}`` the manifest places in shard ``k``."""
    members = {}
    for r in record["samples"]:
        if r["shard"] == k:
            for key, ext in (("image", image_ext), ("label", label_ext), ("id", ID_EXT)):
                members[f"{r['name']}.{ext}"] = tuple(r[key])
    return members


def _tar_members(data: bytes) -> dict[str, tuple[int, int]]:
    """``{member: (data offset, size)}`` of a tar's regular files (``tarfile.TarError`` when the
    headers cannot be read, e.g. a truncated archive)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        members = {m.name: (m.offset_data, m.size) for m in tf.getmembers() if m.isfile()}
    for name, (offset, size) in members.items():
        if offset + size > len(data):
            raise tarfile.ReadError(f"member {name} ends at byte {offset + size}, past the archive's end ({len(data)})")
    return members


def _index_members(text: str) -> tuple[Optional[int], dict[str, tuple[int, int]]]:
    """The sample count a DALI ``v1.2`` index states and its ``{member: (offset, size)}``."""
    lines = text.splitlines()
    head = lines[0].split() if lines else []
    count = int(head[1]) if len(head) == 2 and head[0] == INDEX_VERSION and head[1].isdigit() else None
    members = {}
    for line in lines[1:]:
        fields = line.split()
        for i in range(0, len(fields) - 3, 4):
            _, offset, size, member = fields[i:i + 4]
            members[member] = (int(offset), int(size))
    return count, members


def _differences(found: dict, expected: dict, what: str) -> list[str]:
    out = []
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    moved = sorted(m for m in set(found) & set(expected) if tuple(found[m]) != tuple(expected[m]))
    if missing:
        out.append(f"{len(missing)} member(s) the manifest records are not in the {what}, e.g. {missing[0]}")
    if extra:
        out.append(f"{len(extra)} member(s) in the {what} are not in the manifest, e.g. {extra[0]}")
    if moved:
        m = moved[0]
        out.append(f"{len(moved)} member(s) at another offset or size in the {what}, e.g. {m}: "
                   f"{tuple(found[m])} vs manifest {tuple(expected[m])}")
    return out


def check_pack(root: str, splits: Optional[Sequence[str]] = None, progress: bool = True) -> CheckReport:
    """Verify the packed data at ``root`` against its manifest (module docstring)."""
    root = root_text(root)
    store = store_of(root)
    report = CheckReport(root)
    try:
        manifest = load_manifest(root)
    except (StorageError, PackError) as err:
        report.problems.append(Problem("unreadable-manifest", ERROR, root, str(err)))
        return report
    image_ext, label_ext = manifest["image_ext"], manifest["label_ext"]
    for split in splits or list(manifest["splits"]):
        record = manifest["splits"].get(split)
        if record is None:
            report.problems.append(Problem("missing-split", ERROR, root, f"split {split!r} is not in the pack"))
            continue
        report.samples[split] = len(record["samples"])
        recorded = sum(s["samples"] for s in record["shards"])
        if recorded != len(record["samples"]):
            report.problems.append(Problem("count-mismatch", ERROR, store.url("dali_voc_pack.json"),
                                           f"split {split!r}: shards record {recorded} samples, the manifest lists "
                                           f"{len(record['samples'])}"))
        for k, shard in enumerate(progress_bar(record["shards"], desc=f"verify {split}", unit="shard",
                                               disable=not progress)):
            where = store.url(shard["name"])
            try:
                data = store.read(shard["name"])
            except StorageError as err:
                report.problems.append(Problem("unreadable-shard", ERROR, where, str(err)))
                continue
            if len(data) != shard["bytes"]:
                report.problems.append(Problem("shard-size", ERROR, where, f"{len(data)} bytes, the manifest records "
                                               f"{shard['bytes']} (truncated or replaced)"))
            elif hashlib.sha256(data).hexdigest() != shard["sha256"]:
                report.problems.append(Problem("shard-sha256", ERROR, where, "SHA-256 differs from the manifest's "
                                               "(the shard changed after packing)"))
            expected = _expected_members(record, k, image_ext, label_ext)
            if len(expected) != 3 * shard["samples"]:
                report.problems.append(Problem("count-mismatch", ERROR, where, f"the manifest places "
                                               f"{len(expected) // 3} samples here but records {shard['samples']}"))
            try:
                tar_members = _tar_members(data)
            except tarfile.TarError as err:
                report.problems.append(Problem("unreadable-shard", ERROR, where, f"not a readable tar: {err}"))
                tar_members = None
            if tar_members is not None:
                for why in _differences(tar_members, expected, "tar"):
                    report.problems.append(Problem("member-mismatch", ERROR, where, why))
            index_where = store.url(shard["index"])
            try:
                count, index_members = _index_members(store.read(shard["index"]).decode("utf-8", "replace"))
            except StorageError as err:
                report.problems.append(Problem("unreadable-index", ERROR, index_where, str(err)))
                continue
            if count != shard["samples"]:
                report.problems.append(Problem("index-mismatch", ERROR, index_where, f"states {count} samples, the "
                                               f"shard holds {shard['samples']}"))
            for why in _differences(index_members, tar_members if tar_members is not None else expected,
                                    "index" if tar_members is None else "index (against its tar)"):
                report.problems.append(Problem("index-mismatch", ERROR, index_where, why))
    return report
