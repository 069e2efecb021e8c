"""A sample's files, wherever they are: a path on a file system, or a member of a packed shard
(:class:`MemberRef`, a byte range of a tar file in a folder or an ``s3://`` prefix).

:func:`read_source` reads either; the label and image decoders call it, so they need not know
where a sample came from. Below the datasets wing (it imports only the stores and the errors),
so every wing may read sources.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from typing import Union

from ..errors import PackError
from .stores import Store, join, open_store


@dataclass(frozen=True)
class MemberRef:
    """One member of a shard: the bytes ``[offset, offset + size)`` of ``shard`` under ``root``
    (a folder or ``s3://`` prefix). ``str()`` gives ``<shard url>:<member>`` for messages."""

    root: str
    shard: str
    member: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{join(self.root, self.shard)}:{self.member}"


_STORES: dict[str, Store] = {}


def store_of(root: str) -> Store:
    """The (cached, per process) store at ``root``."""
    if root not in _STORES:
        _STORES[root] = open_store(root)
    return _STORES[root]


def read_source(source: Union[MemberRef, str, os.PathLike]) -> bytes:
    """The bytes of a sample file: a path's contents, or a packed member's byte range.

    Raises:
        OSError: a path that cannot be read; :class:`~dali_voc.errors.StorageError` (an
            ``OSError``) for a member, naming the shard.
    """
    if isinstance(source, MemberRef):
        return read_member(source)
    with open(source, "rb") as f:
        return f.read()


def read_member(ref: MemberRef) -> bytes:
    """A member's data, read together with the tar header just before it (one request), which
    must name that member and its size: a shard that lost, gained or reordered members since
    the manifest was written is named, never read out of step.

    Raises:
        PackError: the header is not this member's; StorageError: the store failed.
    """
    data = store_of(ref.root).read_range(ref.shard, ref.offset - tarfile.BLOCKSIZE, ref.size + tarfile.BLOCKSIZE)
    check_member_header(ref, data)
    return data[tarfile.BLOCKSIZE:]


def check_member_header(ref: MemberRef, data: bytes) -> None:
    """Raise :class:`PackError` unless ``data`` starts with ``ref``'s tar header."""
    try:
        header = tarfile.TarInfo.frombuf(data[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        header = None
    # a name too long for the header's 100 bytes lives in a PAX record before it: compare its start
    if header is None or header.size != ref.size or not ref.member.startswith(header.name):
        found = "no tar header" if header is None else f"the header of {header.name!r} ({header.size} bytes)"
        raise PackError(f"{ref}: the shard holds {found} where the manifest places this member ({ref.size} bytes at "
                        f"offset {ref.offset}): the shard and its manifest disagree; 'python -m dali_voc check "
                        f"{ref.root}' verifies every shard")
