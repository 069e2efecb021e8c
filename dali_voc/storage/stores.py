"""Where packed data lives: a local folder or an S3 bucket prefix, behind one small interface.

``Store.at("s3://bucket/prefix")`` or ``Store.at("/data/packed")`` gives an object with
``read(name)``, ``read_range(name, offset, size)``, ``size(name)``, ``write(name, data)`` and
``url(name)``. S3 goes through boto3: the endpoint comes from ``AWS_ENDPOINT_URL`` (an
S3-compatible server: MinIO, Ceph, SeaweedFS, R2) and credentials from the standard AWS chain
(environment, profile, instance role). Every network call has a connect and a read timeout
and at most :data:`S3_ATTEMPTS` attempts, so an unreachable endpoint is an error in seconds,
never a hang. Every failure is a :class:`~dali_voc.errors.StorageError` naming the object and
what the store said (no credentials, access refused, no such bucket or object, unreachable).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Union

from ..errors import StorageError

S3_SCHEME = "s3://"
#: Seconds to wait for a connection, and for each read of a response.
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 60
#: Attempts per request (the first and its retries), for transient errors.
S3_ATTEMPTS = 3


def is_url(root: Union[str, os.PathLike]) -> bool:
    """Whether ``root`` names an object-store location (``s3://...``) rather than a folder."""
    return isinstance(root, str) and root.startswith(S3_SCHEME)


def join(root: str, name: str) -> str:
    """``root`` and a relative ``name`` joined with one ``/`` (URLs and local paths alike)."""
    return root.rstrip("/") + "/" + name


class LocalStore:
    """A folder on a local (or network-mounted) file system."""

    def __init__(self, root: Union[str, os.PathLike]):
        self.root = Path(root).expanduser()

    def url(self, name: str) -> str:
        return str(self.root / name)

    def size(self, name: str) -> int:
        try:
            return (self.root / name).stat().st_size
        except OSError as err:
            raise StorageError(f"{self.url(name)}: {err.strerror or err}") from err

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as err:
            raise StorageError(f"cannot read {self.url(name)}: {err.strerror or err}") from err

    def read_range(self, name: str, offset: int, size: int) -> bytes:
        try:
            with open(self.root / name, "rb") as f:
                f.seek(offset)
                data = f.read(size)
        except OSError as err:
            raise StorageError(f"cannot read {self.url(name)}: {err.strerror or err}") from err
        if len(data) != size:
            raise StorageError(f"{self.url(name)} ends at byte {offset + len(data)}, before the {size} bytes at "
                               f"offset {offset} that the manifest records (a truncated shard?)")
        return data

    def write_file(self, name: str, source: Path) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
            os.replace(tmp, target)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {target}: {err.strerror or err}") from err

    def write(self, name: str, data: bytes) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {target}: {err.strerror or err}") from err


class S3Store:
    """``s3://bucket/prefix`` through boto3 (endpoint from ``AWS_ENDPOINT_URL``, credentials
    from the AWS chain). The client is made per process and thread on first use, so the store
    survives ``fork`` (DataLoader workers) and is shared by no two threads."""

    def __init__(self, url: str):
        if not is_url(url):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len(S3_SCHEME):].partition("/")
        if not bucket:
            raise StorageError(f"{url!r} names no bucket (expected s3://bucket/prefix)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._local = threading.local()

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key(name)}"

    def _client(self):
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as err:
                raise StorageError("s3:// locations need boto3: pip install boto3 (or the 'cloud' extra)") from err
            config = Config(connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_READ_TIMEOUT_S,
                            retries={"max_attempts": S3_ATTEMPTS, "mode": "standard"})
            self._local.client = boto3.session.Session().client("s3", config=config)
            self._local.pid = pid
        return self._local.client

    def _failed(self, name: str, err: Exception, doing: str) -> StorageError:
        """One message per way an S3 request fails, naming the object."""
        from botocore.exceptions import (ClientError, ConnectTimeoutError, EndpointConnectionError,
                                         NoCredentialsError, ReadTimeoutError)
        where = self.url(name)
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "AWS's default endpoint")
        if isinstance(err, NoCredentialsError):
            why = ("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an "
                   "instance role)")
        elif isinstance(err, (EndpointConnectionError, ConnectTimeoutError)):
            why = f"cannot reach the endpoint {endpoint} ({err}); check AWS_ENDPOINT_URL"
        elif isinstance(err, ReadTimeoutError):
            why = f"the endpoint {endpoint} did not answer within {S3_READ_TIMEOUT_S} s"
        elif isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                why = f"the bucket {self.bucket!r} does not exist at {endpoint}"
            elif code in ("NoSuchKey", "404", "NotFound"):
                why = "no such object"
            elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden"):
                why = f"the store refused the credentials ({code}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            elif code == "InvalidRange":
                why = "the object is shorter than the byte range the manifest records (a truncated shard?)"
            else:
                why = f"{code or 'error'} (HTTP {status}): {err}"
        else:
            why = f"{type(err).__name__}: {err}"
        return StorageError(f"cannot {doing} {where}: {why}")

    def _call(self, name: str, doing: str, method: str, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return getattr(self._client(), method)(Bucket=self.bucket, Key=self.key(name), **kwargs)
        except (BotoCoreError, ClientError) as err:
            raise self._failed(name, err, doing) from err

    def size(self, name: str) -> int:
        return int(self._call(name, "stat", "head_object")["ContentLength"])

    def _body(self, name: str, response) -> bytes:
        from botocore.exceptions import BotoCoreError
        try:
            return response["Body"].read()
        except (BotoCoreError, OSError) as err:
            raise self._failed(name, err, "read") from err

    def read(self, name: str) -> bytes:
        return self._body(name, self._call(name, "read", "get_object"))

    def read_range(self, name: str, offset: int, size: int) -> bytes:
        data = self._body(name, self._call(name, "read", "get_object", Range=f"bytes={offset}-{offset + size - 1}"))
        if len(data) != size:
            raise StorageError(f"{self.url(name)} ends at byte {offset + len(data)}, before the {size} bytes at "
                               f"offset {offset} that the manifest records (a truncated shard?)")
        return data

    def write(self, name: str, data: bytes) -> None:
        self._call(name, "write", "put_object", Body=data)

    def write_file(self, name: str, source: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:  # multipart above boto3's threshold (8 MB parts)
            self._client().upload_file(str(source), self.bucket, self.key(name))
        except (BotoCoreError, ClientError) as err:
            raise self._failed(name, err, "write") from err
        except Exception as err:  # boto3's S3UploadFailedError wraps the ClientError
            cause = err.__context__ if isinstance(err.__context__, (BotoCoreError, ClientError)) else err
            raise self._failed(name, cause, "write") from err


Store = Union[LocalStore, S3Store]


def open_store(root: Union[str, os.PathLike]) -> Store:
    """The store at ``root``: :class:`S3Store` for ``s3://bucket/prefix``, else :class:`LocalStore`."""
    return S3Store(root) if is_url(root) else LocalStore(root)
