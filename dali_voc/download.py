"""Fetch, verify and safely extract the VOC2012 trainval archive.

``ensure_voc(root)`` leaves ``root/VOCdevkit/VOC2012`` ready:

1. a valid tree already there -> nothing is fetched (re-running is a no-op);
2. the archive is downloaded to ``root/<name>.tar.part`` with a progress bar; an interrupted
   transfer resumes with an HTTP ``Range`` request (a server that ignores ``Range`` answers
   200 and the transfer restarts from zero);
3. the archive's SHA-1 is checked; a mismatch raises :class:`ChecksumError` saying what was
   expected and what was found, and deletes nothing;
4. every member is checked before anything is written (no absolute paths, no ``..``, no link
   leaving the target, no device files), then the archive is extracted.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Optional

from .progress import progress_bar
from .voc import VOCLayout, read_split

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_SHA1 = "4e443f8a2eca6b1dac8a6c57641b67dd40621a49"
URL_ENV = "DALI_VOC_URL"
CHUNK = 1 << 20
TIMEOUT_S = 60


class ChecksumError(RuntimeError):
    """The downloaded archive's SHA-1 is not the expected one."""


class UnsafeArchiveError(RuntimeError):
    """A tar member would write outside the target folder (or is a device/special file)."""


def tree_is_ready(root: Path) -> bool:
    """True when ``root`` holds a VOC tree with its train and val split lists."""
    try:
        layout = VOCLayout.locate(root)
        read_split(layout, "train")
        read_split(layout, "val")
    except (FileNotFoundError, ValueError):
        return False
    return True


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` when it exists.

    Returns ``dest``. Raises ``urllib.error.URLError``/``OSError`` on network failure, with
    the partial file kept for the next attempt."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing past what we have: the partial file is complete
            part.replace(dest)
            return dest
        raise
    with response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with open(part, mode) as out, progress_bar(total=total, initial=have, unit="B", unit_scale=True,
                                            unit_divisor=1024, desc=dest.name, disable=not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise OSError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                      f"run again to resume from {part}")
    part.replace(dest)
    return dest


def check_members(archive: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    """All members of ``archive``, after checking each would stay inside ``target``.

    Raises:
        UnsafeArchiveError: naming the first offending member.
    """
    target = target.resolve()
    members = archive.getmembers()
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or member.name.startswith(("/", "\\")) or ".." in path.parts:
            raise UnsafeArchiveError(f"archive member {member.name!r} would write outside {target}")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchiveError(f"archive member {member.name!r} is a device or special file")
        if member.issym() or member.islnk():
            base = (target / path).parent if member.issym() else target
            link = (base / member.linkname).resolve()
            if PurePosixPath(member.linkname).is_absolute() or not link.is_relative_to(target):
                raise UnsafeArchiveError(f"archive member {member.name!r} links outside {target}: {member.linkname!r}")
    return members


def extract(archive_path: Path, target: Path) -> None:
    """Extract ``archive_path`` into ``target`` after :func:`check_members` accepted all of it."""
    with tarfile.open(archive_path) as archive:
        members = check_members(archive, target)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(target, members=members, **kwargs)


def ensure_voc(root: os.PathLike | str, url: Optional[str] = None, sha1: Optional[str] = None,
               progress: bool = True) -> Path:
    """Make sure ``root`` holds ``VOCdevkit/VOC2012``; download and extract it if not.

    Args:
        root: folder to hold ``VOCdevkit/VOC2012`` (created if missing).
        url: archive address; default ``$DALI_VOC_URL`` or the official Pascal VOC address.
        sha1: expected SHA-1 of the archive; default :data:`VOC_SHA1` (the official one).

    Returns the ``VOC2012`` folder.
    """
    root = Path(root).expanduser()
    if tree_is_ready(root):
        return VOCLayout.locate(root).root
    url = url or os.environ.get(URL_ENV) or VOC_URL
    sha1 = sha1 or VOC_SHA1
    root.mkdir(parents=True, exist_ok=True)
    archive = root / Path(url.split("?")[0]).name
    if not archive.exists():
        fetch(url, archive, progress=progress)
    found = sha1_of(archive)
    if found != sha1:
        raise ChecksumError(f"{archive} has SHA-1 {found}, expected {sha1}; nothing was extracted "
                            f"or deleted. Delete {archive} to download it again, or pass the right sha1.")
    extract(archive, root)
    if not tree_is_ready(root):
        raise FileNotFoundError(f"{archive} extracted into {root}, but no VOCdevkit/VOC2012 tree with "
                                f"train/val split lists is there")
    return VOCLayout.locate(root).root
