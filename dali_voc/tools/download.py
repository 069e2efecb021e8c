"""Fetch, verify and safely extract the VOC2012 trainval archive.

``ensure_voc(root)`` leaves ``root/VOCdevkit/VOC2012`` ready:

1. a valid tree already there -> nothing is fetched (re-running is a no-op);
2. the archive is downloaded to ``root/<name>.tar.part`` with a progress bar; an interrupted
   transfer resumes with an HTTP ``Range`` request (a server that ignores ``Range`` answers
   200 and the transfer restarts from zero);
3. the archive's SHA-1 is checked; a mismatch raises :class:`ChecksumError` saying what was
   expected and what was found, and deletes nothing;
4. every member is checked before anything is written: no absolute paths, no ``..``, no device
   files, and no member whose path or link target leaves the target folder once the links
   created by earlier members are followed (a chain ``x -> ..``, ``x/esc -> ..``, ``x/esc/file``);
5. the archive is extracted into a staging folder inside ``root`` with Python's ``data``
   extraction filter, and moved into place only when all of it succeeded. On a Python without
   that filter (3.10.0-3.10.11, 3.11.0-3.11.3) archives holding links are refused.

``ensure_sbd(root)`` does the same for SBD's ``benchmark.tgz`` (checked by MD5, the only
published checksum) and returns ``root/benchmark_RELEASE/dataset``; :func:`dali_voc.tools.sbd.convert_sbd`
then turns it into VOC2012's ``SegmentationClassAug`` labels and ``train_aug`` split.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Optional

from ..errors import ChecksumError, DownloadError, MissingFileError, UnsafeArchiveError
from ..progress import progress_bar
from .sbd import SBD_DATASET_PARTS, is_sbd_dataset
from ..datasets.scan import name_problem
from ..datasets.voc import VOCLayout, read_split

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_SHA1 = "4e443f8a2eca6b1dac8a6c57641b67dd40621a49"
URL_ENV = "DALI_VOC_URL"
SBD_URL = ("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
           "benchmark.tgz")
#: The MD5 torchvision's ``SBDataset`` checks (no SHA-1 of the archive is published).
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"
SBD_URL_ENV = "DALI_VOC_SBD_URL"
#: How checksum messages name each algorithm :func:`digest_of` accepts.
ALGORITHM_NAMES = {"sha1": "SHA-1", "md5": "MD5"}
CHUNK = 1 << 20
TIMEOUT_S = 60


def tree_is_ready(root: Path) -> bool:
    """True when ``root`` holds a VOC tree with its train and val split lists."""
    try:
        layout = VOCLayout.locate(root)
        read_split(layout, "train")
        read_split(layout, "val")
    except (FileNotFoundError, ValueError):
        return False
    return True


def digest_of(path: Path, algorithm: str = "sha1") -> str:
    """Hex digest of the file ``path`` with ``algorithm`` (a key of :data:`ALGORITHM_NAMES`)."""
    if algorithm not in ALGORITHM_NAMES:
        raise ValueError(f"checksum algorithm {algorithm!r} is not one of {', '.join(ALGORITHM_NAMES)}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha1_of(path: Path) -> str:
    """Hex SHA-1 of the file ``path``."""
    return digest_of(path, "sha1")


def verify(archive: Path, expected: str, algorithm: str = "sha1") -> None:
    """Check the ``algorithm`` digest of ``archive`` against ``expected`` (hex, any case).

    Raises:
        ChecksumError: naming the file, what was found and what was expected; nothing is
            deleted (the archive stays for inspection).
    """
    found = digest_of(archive, algorithm)
    if found != expected.lower():
        raise ChecksumError(f"{archive} has {ALGORITHM_NAMES[algorithm]} {found}, expected {expected}; nothing "
                            f"was extracted or deleted. Delete {archive} to download it again, or pass the right "
                            f"{algorithm}.")


def fetch(url: str, dest: Path, progress: bool = True, url_env: str = URL_ENV) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` when it exists.

    ``url_env`` is the environment variable the error messages suggest for a mirror.

    Returns ``dest``.

    Raises:
        DownloadError: one line naming the address, what the server or network said and what
            to do; the partial file is kept for the next attempt.
    """
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    mirror = f"pass another address with --url (or ${url_env}, or url= in Python)"
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing past what we have: the partial file is complete
            part.replace(dest)
            return dest
        raise DownloadError(f"cannot download {url}: the server answered HTTP {err.code} {err.reason}; "
                            f"check the address, or {mirror}") from None
    except urllib.error.URLError as err:
        raise DownloadError(f"cannot reach {url}: {err.reason}; check the network and the address, or "
                            f"{mirror}") from None
    except (socket.timeout, OSError) as err:
        raise DownloadError(f"cannot reach {url}: {err}; check the network and the address, or {mirror}") from None
    with response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with open(part, mode) as out, progress_bar(total=total, initial=have, unit="B", unit_scale=True,
                                            unit_divisor=1024, desc=dest.name, disable=not progress) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            except (socket.timeout, ConnectionError, urllib.error.URLError) as err:
                raise DownloadError(f"download of {url} broke off at {part.stat().st_size} bytes ({err}); run "
                                    f"again to resume from {part}") from None
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                            f"run again to resume from {part}")
    part.replace(dest)
    return dest


_MAX_LINK_HOPS = 40  # as the kernel's limit: deeper chains are refused, not followed forever


def _resolve(parts: tuple[str, ...], links: dict[tuple[str, ...], tuple[str, ...]], hops: int = 0
             ) -> Optional[tuple[str, ...]]:
    """Where the archive-relative path ``parts`` lands once ``..`` and the links already
    created (``links``: link path -> its resolved target) are followed; ``None`` if it leaves
    the target folder."""
    resolved: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get(tuple(resolved))
        if target is not None:  # follow it, and any link created on its way since it was made
            again = _resolve(target, links, hops + 1) if hops < _MAX_LINK_HOPS else None
            if again is None:
                return None
            resolved = list(again)
    return tuple(resolved)


def check_members(archive: tarfile.TarFile, target: Path, links_allowed: bool = True) -> list[tarfile.TarInfo]:
    """All members of ``archive``, after checking each stays inside ``target``: every path and
    link target is resolved as extraction would leave the tree, following the links that
    earlier members create.

    Raises:
        UnsafeArchiveError: naming the first offending member.
    """
    target = target.resolve()
    members = archive.getmembers()
    links: dict[tuple[str, ...], tuple[str, ...]] = {}
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or member.name.startswith(("/", "\\")) or ".." in path.parts:
            raise UnsafeArchiveError(f"archive member {member.name!r} would write outside {target}")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchiveError(f"archive member {member.name!r} is a device or special file")
        parent = _resolve(path.parts[:-1], links)
        if parent is None:
            raise UnsafeArchiveError(f"archive member {member.name!r} would write outside {target} through a link "
                                     f"an earlier member created")
        if not (member.issym() or member.islnk()) and _resolve(path.parts, links) is None:
            raise UnsafeArchiveError(f"archive member {member.name!r} would write outside {target} through a link "
                                     f"an earlier member created")
        if member.issym() or member.islnk():
            if not links_allowed:
                raise UnsafeArchiveError(f"archive member {member.name!r} is a link, and this Python's tarfile has "
                                         f"no 'data' extraction filter (Python >= 3.10.12 / 3.11.4 has it): links "
                                         f"are refused")
            if PurePosixPath(member.linkname).is_absolute():
                raise UnsafeArchiveError(f"archive member {member.name!r} links outside {target}: {member.linkname!r}")
            base = parent if member.issym() else ()  # a hard link names a path from the archive's root
            landing = _resolve(base + PurePosixPath(member.linkname).parts, links)
            if landing is None:
                raise UnsafeArchiveError(f"archive member {member.name!r} links outside {target}: {member.linkname!r}")
            if member.issym():
                links[parent + (path.name,)] = landing
    return members


def _move_into(source: Path, dest: Path) -> None:
    """Move the tree ``source`` onto ``dest`` (renames on one file system), merging folders."""
    if dest.is_dir() and not dest.is_symlink() and source.is_dir() and not source.is_symlink():
        for child in source.iterdir():
            _move_into(child, dest / child.name)
        source.rmdir()
    else:
        os.replace(source, dest)


def extract(archive_path: Path, target: Path) -> None:
    """Extract ``archive_path`` into ``target``: every member checked first
    (:func:`check_members`), extracted into a staging folder with the ``data`` filter, moved
    into place only when all of it succeeded.

    Raises:
        UnsafeArchiveError: an unsafe member, or one the ``data`` filter refused (named); nothing
            of the archive is left in ``target``.
    """
    has_filter = hasattr(tarfile, "data_filter")
    staging = target / f".dali_voc_extract_{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive_path) as archive:
            members = check_members(archive, staging, links_allowed=has_filter)
            kwargs = {"filter": "data"} if has_filter else {}
            try:
                archive.extractall(staging, members=members, **kwargs)
            except tarfile.TarError as err:  # FilterError and its kin name the member
                raise UnsafeArchiveError(f"{archive_path}: extraction refused: {err}") from err
        for entry in staging.iterdir():
            _move_into(entry, target / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def archive_name(url: str) -> str:
    """The file name the archive at ``url`` is saved under in the root: the last segment of
    the URL's path (query and fragment dropped, percent-escapes decoded), checked as any name
    that becomes a file in a folder (:func:`~dali_voc.datasets.scan.name_problem`).

    Raises:
        DownloadError: naming the URL, when that segment is empty, ``.``/``..``, holds a
            separator or NUL once decoded, or is too long for a file name.
    """
    segment = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1], errors="surrogateescape")
    problem = "it is empty (the address ends with '/')" if not segment else name_problem(segment)
    if problem:
        raise DownloadError(f"cannot download {url}: the archive's file name is taken from the address's last "
                            f"segment {segment!r}, and {problem}; pass the archive's own address with --url")
    return segment


def _fetch_verify_extract(root: Path, url: str, expected: str, algorithm: str, progress: bool,
                          url_env: str) -> Path:
    """Download ``url`` into ``root`` (unless the archive is already there), check its
    checksum and extract it into ``root``; returns the archive's path."""
    archive = root / archive_name(url)
    root.mkdir(parents=True, exist_ok=True)
    if not archive.exists():
        fetch(url, archive, progress=progress, url_env=url_env)
    verify(archive, expected, algorithm)
    extract(archive, root)
    return archive


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
    archive = _fetch_verify_extract(root, url, sha1 or VOC_SHA1, "sha1", progress, URL_ENV)
    if not tree_is_ready(root):
        raise MissingFileError(f"{archive} extracted into {root}, but no VOCdevkit/VOC2012 tree with "
                                f"train/val split lists is there")
    return VOCLayout.locate(root).root


def ensure_sbd(root: os.PathLike | str, url: Optional[str] = None, md5: Optional[str] = None,
               progress: bool = True) -> Path:
    """Make sure ``root`` holds SBD's ``benchmark_RELEASE/dataset``; download and extract
    ``benchmark.tgz`` (about 1.4 GB) if not. Resumable, checked and extracted as
    :func:`ensure_voc` does.

    Args:
        root: folder to hold ``benchmark_RELEASE`` (created if missing).
        url: archive address; default ``$DALI_VOC_SBD_URL`` or :data:`SBD_URL` (Berkeley's).
        md5: expected MD5 of the archive; default :data:`SBD_MD5` (the official one).

    Returns the ``dataset`` folder (``cls/``, ``img/``, ``train.txt``, ``val.txt``), which
    :func:`dali_voc.tools.sbd.convert_sbd` takes.

    Raises:
        DownloadError: the archive could not be fetched (one line naming the address).
        ChecksumError: its MD5 is not the expected one (nothing extracted or deleted).
        UnsafeArchiveError: a member would land outside ``root``.
        FileNotFoundError: the archive held no ``benchmark_RELEASE/dataset``.
    """
    root = Path(root).expanduser()
    dataset = root.joinpath(*SBD_DATASET_PARTS)
    if is_sbd_dataset(dataset):
        return dataset
    url = url or os.environ.get(SBD_URL_ENV) or SBD_URL
    archive = _fetch_verify_extract(root, url, md5 or SBD_MD5, "md5", progress, SBD_URL_ENV)
    if not is_sbd_dataset(dataset):
        raise MissingFileError(f"{archive} extracted into {root}, but {dataset} with cls/ and train.txt "
                                f"is not there")
    return dataset
