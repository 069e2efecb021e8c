"""The loaders only read the dataset tree: on a real read-only mount both loaders,
``load_data_voc``, ``check`` and ``info`` work, and on a writable tree none of them leaves a
file, a changed time or a followed link behind (there is no size cache to write or to trust)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dali_voc.tools.check import check_tree
from dali_voc.cli import main as cli_main
from tests.helpers import BROKEN, broken_tree, config_for, loader_for

#: Both loaders, load_data_voc, check and info on the tree at argv[1]; one JSON line of results.
_ON_THE_TREE = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from dali_voc import LoaderConfig, load_data_voc, make_loader
    from dali_voc.tools.check import check_tree
    from dali_voc.cli import main as cli_main
    root = sys.argv[1]
    try:
        open(os.path.join(root, "probe"), "w")
        writable = True
    except OSError:
        writable = False
    out = {"writable": writable, "samples": {}}
    for backend, extra in (("reference", {"num_workers": 0}), ("dali", {"device": "cpu", "num_workers": 2})):
        config = LoaderConfig(root=root, batch_size=2, last_batch="partial", verbose=False, backend=backend, **extra)
        loader = make_loader(config, "train", True)
        out["samples"][backend] = sum(x.shape[0] for x, _ in loader)
    train, test = load_data_voc(2, (320, 480), root, test_split="train", verbose=False, backend="reference",
                                num_workers=0)
    out["load_data_voc"] = [tuple(next(iter(train))[0].shape), tuple(next(iter(test))[0].shape)]
    out["check_clean"] = check_tree(root, progress=False).clean
    with contextlib.redirect_stdout(io.StringIO()):
        out["info_rc"] = cli_main(["info", root])
    print(json.dumps(out))
""")


def _run_on_the_tree(root: Path, prefix: list[str], env: dict) -> dict:
    done = subprocess.run(prefix + [sys.executable, "-c", _ON_THE_TREE, str(root)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_read_only_tree_loads_checks_and_agrees(tmp_path):
    """A real read-only bind mount (as root; else in a user+mount namespace), with a read-only
    cache folder too: both loaders and load_data_voc load it, check says it is clean."""
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    source = broken_tree(tmp_path / "source", lambda voc: None)
    target = tmp_path / "ro"
    target.mkdir()
    env = dict(os.environ, PYTHONPATH=os.getcwd(), XDG_CACHE_HOME=str(target))
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
            result = _run_on_the_tree(target, [], env)
        finally:
            subprocess.run(["umount", str(target)], check=True)
    else:
        mount = f"mount --bind {source} {target} && mount -o remount,bind,ro {target} && exec \"$@\""
        result = _run_on_the_tree(target, ["unshare", "-rm", "sh", "-c", mount, "sh"], env)
    assert result["writable"] is False  # the mount really is read-only
    assert result["samples"] == {"reference": 5, "dali": 5}
    assert result["load_data_voc"] == [[2, 3, 320, 480], [2, 3, 320, 480]]
    assert result["check_clean"] is True and result["info_rc"] == 0


def _listing_digest(root: Path) -> str:
    """Every entry under ``root`` (hidden ones too) with its type, size, mtime and content hash."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        digest.update(f"{path.relative_to(root)} {st.st_mode} {st.st_size} {st.st_mtime_ns} {content}\n".encode())
    return digest.hexdigest()


def test_loading_never_writes_into_the_tree(tmp_path):
    """Both loaders built, an epoch each, check and info: the tree's listing hashes the same.
    Planted at the names the old size cache used: a malformed cache and a link (at the
    temporary name) to a file outside the tree; neither is read, followed or replaced."""
    root = broken_tree(tmp_path / "tree", lambda voc: None)
    split_dir = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (split_dir / ".train.dali_voc_sizes.json").write_text(json.dumps({"version": 3, "entries": {BROKEN: [1]}}))
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (split_dir / f".train.dali_voc_sizes.tmp{os.getpid()}").symlink_to(outside)
    before = _listing_digest(root)
    for backend in ("reference", "dali"):
        loader = loader_for(config_for(root, backend, batch_size=2, last_batch="partial"))
        assert sum(x.shape[0] for x, _ in loader) == 5
    assert check_tree(root, progress=False).clean  # hidden files are no samples
    assert cli_main(["info", str(root)]) == 0
    assert _listing_digest(root) == before
    assert outside.read_text() == "not yours"
