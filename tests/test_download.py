"""Download, resume, checksum and safe extraction against a real HTTP server on 127.0.0.1."""

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dali_voc.tools.download import (ChecksumError, UnsafeArchiveError, digest_of, ensure_sbd, ensure_voc, sha1_of,
                               tree_is_ready)
from dali_voc.tools.synth import SynthSpec, synthesize_voc
from dali_voc.datasets.voc import VOCLayout


class _Server:
    """Serves one archive, at any path (``url`` ends in ``name``). ``ranges``: honour Range;
    ``cut_first``: the first response stops after that many bytes (connection closed
    mid-transfer)."""

    def __init__(self, data: bytes, ranges: bool = True, cut_first=None, name: str = "VOCtrainval_11-May-2012.tar"):
        self.data, self.ranges, self.cut_first = data, ranges, cut_first
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append(dict(self.headers))
                start = 0
                header = self.headers.get("Range")
                if owner.ranges and header:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(owner.data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(owner.data) - 1}/{len(owner.data)}")
                else:
                    self.send_response(200)
                body = owner.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_first is not None and len(owner.requests) == 1:
                    self.wfile.write(body[: owner.cut_first])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def voc_tar(tmp_path_factory) -> bytes:
    """A small synthetic VOC tree packed like the official archive (VOCdevkit/VOC2012/...)."""
    src = tmp_path_factory.mktemp("tarsrc")
    synthesize_voc(src, SynthSpec(num_train=4, num_val=2, seed=9), workers=1, progress=False)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src / "VOCdevkit", arcname="VOCdevkit")
    return buf.getvalue()


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_clean_download_then_no_op(tmp_path, voc_tar):
    with _Server(voc_tar) as server:
        voc = ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
        assert voc == VOCLayout.locate(tmp_path).root and tree_is_ready(tmp_path)
        assert len(server.requests) == 1
        ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
        assert len(server.requests) == 1  # already valid: nothing fetched


def test_cut_transfer_resumes_with_range(tmp_path, voc_tar):
    half = len(voc_tar) // 2
    with _Server(voc_tar, cut_first=half) as server:
        with pytest.raises(OSError):
            ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
        part = tmp_path / "VOCtrainval_11-May-2012.tar.part"
        assert part.stat().st_size == half
        ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
        assert server.requests[1]["Range"] == f"bytes={half}-"
    assert tree_is_ready(tmp_path)


def test_server_without_range_restarts_from_zero(tmp_path, voc_tar):
    half = len(voc_tar) // 2
    with _Server(voc_tar, ranges=False, cut_first=half) as server:
        with pytest.raises(OSError):
            ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
        ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
        assert "Range" in server.requests[1]  # asked, got 200, started over
    assert tree_is_ready(tmp_path)
    assert (tmp_path / "VOCtrainval_11-May-2012.tar").read_bytes() == voc_tar


def test_tampered_archive_raises_and_extracts_nothing(tmp_path, voc_tar):
    tampered = bytearray(voc_tar)
    tampered[len(tampered) // 2] ^= 0xFF
    mine = tmp_path / "my_notes.txt"
    mine.write_text("keep me")
    with _Server(bytes(tampered)) as server:
        with pytest.raises(ChecksumError, match=f"expected {_sha1(voc_tar)}"):
            ensure_voc(tmp_path, url=server.url, sha1=_sha1(voc_tar), progress=False)
    assert not (tmp_path / "VOCdevkit").exists()
    assert mine.read_text() == "keep me"
    assert (tmp_path / "VOCtrainval_11-May-2012.tar").exists()  # kept for inspection, not deleted


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_path_traversal_members_are_rejected(tmp_path, kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = tarfile.TarInfo("VOCdevkit/VOC2012/readme.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"hi"))
        if kind == "symlink":
            evil = tarfile.TarInfo("VOCdevkit/escape")
            evil.type = tarfile.SYMTYPE
            evil.linkname = "../../../etc"
            tar.addfile(evil)
        else:
            evil = tarfile.TarInfo("../evil.txt" if kind == "dotdot" else "/tmp/evil.txt")
            evil.size = 4
            tar.addfile(evil, io.BytesIO(b"evil"))
    data = buf.getvalue()
    target = tmp_path / "root"
    with _Server(data) as server:
        with pytest.raises(UnsafeArchiveError, match="outside"):
            ensure_voc(target, url=server.url, sha1=_sha1(data), progress=False)
    assert not (target / "VOCdevkit").exists()  # checked before anything was written
    assert not (tmp_path / "evil.txt").exists()


def test_cli_download(tmp_path, voc_tar, capsys):
    from dali_voc.cli import main
    with _Server(voc_tar) as server:
        assert main(["download", "--root", str(tmp_path), "--url", server.url, "--sha1", _sha1(voc_tar)]) == 0
    assert "VOC2012 ready" in capsys.readouterr().out


def test_loader_downloads_when_asked(tmp_path, voc_tar, monkeypatch):
    from dali_voc import load_data_voc
    with _Server(voc_tar) as server:
        monkeypatch.setenv("DALI_VOC_URL", server.url)
        monkeypatch.setattr("dali_voc.tools.download.VOC_SHA1", _sha1(voc_tar))
        train_iter, _ = load_data_voc(1, (100, 100), root=tmp_path, download=True, backend="reference",
                                      num_workers=0, verbose=False)
        x, y = next(iter(train_iter))
    assert x.shape == (1, 3, 100, 100)


def _archive(members) -> bytes:
    """A tar of ``(name, kind, data_or_linkname)``: kind "file", "dir", "sym" or "hard"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            info.linkname = value or ""
            tar.addfile(info)
    return buf.getvalue()


CHAIN = [("VOCdevkit/VOC2012/readme.txt", "file", b"hi"),
         ("x", "sym", ".."),                 # inside the staging folder: root itself
         ("x/esc", "sym", ".."),             # through x: the parent of root
         ("x/esc/planted.txt", "file", b"outside")]


@pytest.mark.parametrize("members, why", [
    (CHAIN, "through a link an earlier member created|links outside"),
    ([("a", "dir", None), ("b", "sym", "a"), ("a/up", "sym", "../.."), ("b/up/evil.txt", "file", b"x")],
     "through a link|links outside"),
    ([("loop", "sym", "loop"), ("loop/f", "file", b"x")], "through a link|links outside"),
])
def test_link_chains_that_leave_the_root_are_refused_before_anything_is_written(tmp_path, members, why):
    data = _archive(members)
    target = tmp_path / "root"
    with _Server(data) as server:
        for _ in range(2):  # a second run refuses again: nothing was left behind to look finished
            with pytest.raises(UnsafeArchiveError, match=why):
                ensure_voc(target, url=server.url, sha1=_sha1(data), progress=False)
    assert sorted(p.name for p in target.iterdir()) == ["VOCtrainval_11-May-2012.tar"]
    assert not (tmp_path / "planted.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_links_inside_the_root_still_extract(tmp_path, voc_tar):
    with tarfile.open(fileobj=io.BytesIO(voc_tar)) as src:
        members = [(m.name, "dir" if m.isdir() else "file", None if m.isdir() else src.extractfile(m).read())
                   for m in src.getmembers()]
    data = _archive(members + [("VOCdevkit/latest", "sym", "VOC2012")])
    with _Server(data) as server:
        ensure_voc(tmp_path, url=server.url, sha1=_sha1(data), progress=False)
    assert (tmp_path / "VOCdevkit" / "latest").is_symlink() and tree_is_ready(tmp_path)
    assert not list(tmp_path.glob(".dali_voc_extract_*"))  # the staging folder is gone


def test_without_the_data_filter_archives_with_links_are_refused(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    data = _archive([("VOCdevkit/VOC2012/readme.txt", "file", b"hi"), ("VOCdevkit/ok", "sym", "VOC2012")])
    with _Server(data) as server:
        with pytest.raises(UnsafeArchiveError, match="no 'data' extraction filter"):
            ensure_voc(tmp_path / "root", url=server.url, sha1=_sha1(data), progress=False)


class _Missing(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(404)
        self.end_headers()


def test_http_errors_and_unreachable_addresses_are_one_line_naming_the_url(tmp_path, capsys):
    from dali_voc.cli import main
    from dali_voc.errors import DownloadError
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Missing)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/VOCtrainval_11-May-2012.tar"
        with pytest.raises(DownloadError, match=rf"cannot download {url}: the server answered HTTP 404 .*--url"):
            ensure_voc(tmp_path / "a", url=url, progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    closed = f"http://127.0.0.1:{httpd.server_address[1]}/VOCtrainval_11-May-2012.tar"  # nobody listens now
    assert main(["download", "--root", str(tmp_path / "b"), "--url", closed]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot reach {closed}" in err and "Traceback" not in err


def test_digest_of_knows_sha1_and_md5(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 3_000_000)  # more than one read block
    assert digest_of(path, "md5") == hashlib.md5(path.read_bytes()).hexdigest()
    assert digest_of(path) == sha1_of(path) == _sha1(path.read_bytes())
    with pytest.raises(ValueError, match="sha256"):
        digest_of(path, "sha256")


@pytest.fixture(scope="module")
def sbd_tgz(tmp_path_factory) -> bytes:
    """A small SBD archive packed like the official benchmark.tgz (gzip, benchmark_RELEASE/dataset/...)."""
    pytest.importorskip("scipy.io")
    from tests.test_sbd import write_sbd
    src = tmp_path_factory.mktemp("sbdsrc")
    write_sbd(src / "benchmark_RELEASE" / "dataset")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_sbd_clean_download_then_no_op(tmp_path, sbd_tgz):
    with _Server(sbd_tgz, name="benchmark.tgz") as server:
        dataset = ensure_sbd(tmp_path, url=server.url, md5=_md5(sbd_tgz), progress=False)
        assert dataset == tmp_path / "benchmark_RELEASE" / "dataset"
        assert (dataset / "cls" / "s_1.mat").is_file() and (dataset / "val.txt").is_file()
        assert ensure_sbd(tmp_path, url=server.url, md5=_md5(sbd_tgz), progress=False) == dataset
        assert len(server.requests) == 1  # already there: nothing fetched
    assert (tmp_path / "benchmark.tgz").read_bytes() == sbd_tgz


def test_sbd_cut_transfer_resumes_with_range(tmp_path, sbd_tgz):
    half = len(sbd_tgz) // 2
    with _Server(sbd_tgz, cut_first=half, name="benchmark.tgz") as server:
        with pytest.raises(OSError):
            ensure_sbd(tmp_path, url=server.url, md5=_md5(sbd_tgz), progress=False)
        assert (tmp_path / "benchmark.tgz.part").stat().st_size == half
        ensure_sbd(tmp_path, url=server.url, md5=_md5(sbd_tgz), progress=False)
        assert server.requests[1]["Range"] == f"bytes={half}-"
    assert (tmp_path / "benchmark_RELEASE" / "dataset" / "train.txt").is_file()


def test_sbd_tampered_archive_raises_and_extracts_nothing(tmp_path, sbd_tgz):
    tampered = bytearray(sbd_tgz)
    tampered[len(tampered) // 2] ^= 0xFF
    with _Server(bytes(tampered), name="benchmark.tgz") as server:
        with pytest.raises(ChecksumError, match=f"benchmark.tgz has MD5 {_md5(bytes(tampered))}, expected "
                                                f"{_md5(sbd_tgz)}; nothing was extracted"):
            ensure_sbd(tmp_path, url=server.url, md5=_md5(sbd_tgz), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmark.tgz"]  # kept, nothing extracted


def test_sbd_url_comes_from_the_environment_and_errors_name_it(tmp_path, sbd_tgz, monkeypatch):
    from dali_voc.errors import DownloadError
    with _Server(sbd_tgz, name="benchmark.tgz") as server:
        monkeypatch.setenv("DALI_VOC_SBD_URL", server.url)
        ensure_sbd(tmp_path / "a", md5=_md5(sbd_tgz), progress=False)
        assert len(server.requests) == 1
    with pytest.raises(DownloadError, match=rf"cannot reach {server.url}: .*\$DALI_VOC_SBD_URL"):
        ensure_sbd(tmp_path / "b", progress=False)  # nobody listens there now


def test_downloaded_sbd_converts_into_a_voc_tree(tmp_path, sbd_tgz):
    from dali_voc.tools.sbd import convert_sbd
    from tests.test_sbd import TRAIN_AUG, write_voc
    voc = write_voc(tmp_path / "voc")
    with _Server(sbd_tgz, name="benchmark.tgz") as server:
        dataset = ensure_sbd(tmp_path / "sbd", url=server.url, md5=_md5(sbd_tgz), progress=False)
    result = convert_sbd(dataset, tmp_path / "voc", progress=False)
    assert result.train_aug == len(TRAIN_AUG) and result.written == 7
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == TRAIN_AUG


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/pascal/..", "http://127.0.0.1:9/pascal/.", "http://127.0.0.1:9/",
                                 "http://127.0.0.1:9/a/%2E%2E", "http://127.0.0.1:9/a/..%2Fescape.tar",
                                 "http://127.0.0.1:9/a/x%00.tar?y=1", "http://127.0.0.1:9/" + "a" * 300 + ".tar"])
def test_an_address_whose_last_segment_is_no_file_name_is_refused_naming_it(tmp_path, url):
    """Nothing is fetched or created: the archive name is checked first (no server listens)."""
    from dali_voc.errors import DownloadError
    with pytest.raises(DownloadError, match=r"cannot download .*: the archive's file name is taken from"):
        ensure_voc(tmp_path / "root", url=url, progress=False)
    assert not (tmp_path / "root").exists()


def test_the_archive_name_drops_query_and_fragment():
    from dali_voc.tools.download import archive_name
    assert archive_name("https://mirror.example/voc/VOCtrainval_11-May-2012.tar?token=a/b#x") == \
        "VOCtrainval_11-May-2012.tar"
