"""Which files DALI's own decoders refuse: the check behind ``on_error="skip"`` (and behind
naming the file of a failed batch) for the DALI loader.

PIL and DALI do not accept the same files (libjpeg-turbo in DALI decodes arithmetic-coded JPEGs
that PIL refuses; DALI's PNG decoder refuses chunk orders PIL reads), so the DALI loader checks
files with the decoder that will load them: the same ``fn.decoders.image`` on the same device,
fed the files' bytes in batches. One pipeline serves every batch (its ``external_source`` takes
batches up to its size, so the last short chunk and single files need no other); a batch that
fails is retried one file at a time to find the culprits, and since a DALI pipeline that failed
cannot be used again, a new one is built only after a failure.

DALI's decoders print their own log lines for every file they refuse (``[ERROR] [jpeg_parser]
...``, ``libpng error: ...``) straight to the process's stderr, and DALI offers no switch below
"errors". The check is synchronous, so its stderr is captured while it runs and only lines that
are not the decoders' own are written back: the user reads our message naming the file instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..progress import progress_bar
from ..resolve import Resolved

_BATCH = 16  # see _decoder_pipeline
#: A log line of DALI's image decoders (nvImageCodec, with or without color codes) or of libpng.
_DECODER_LOG_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\[(FATAL|ERROR|WARNING|INFO|DEBUG|TRACE)\] "
                               r"|^libpng (error|warning): ")


@contextlib.contextmanager
def decoder_log_lines_dropped() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for a synchronous DALI call, then write back
    to the real stderr every line that is not a decoder log line (:data:`_DECODER_LOG_LINE`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not _DECODER_LOG_LINE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _decoder_pipeline(resolved: Resolved, batch_size: int):
    from nvidia.dali import fn, pipeline_def, types

    # DALI 2.4.0's CPU decoder, given a batch of 32 holding a file it refuses (GIF data, garbage),
    # crashed the process (SIGSEGV) in Pipeline.run with the pipelined executor (9 of 20 runs
    # here; none of 18 synchronous) and when the failed pipeline was destroyed (about half the
    # processes that destroyed six; none with batches of 16, 24 or 28 over 5 processes each).
    # Hence synchronous execution and chunks of 16 (_BATCH).
    @pipeline_def(batch_size=batch_size, num_threads=resolved.workers, device_id=resolved.cuda_device,
                  prefetch_queue_depth=1, exec_pipelined=False, exec_async=False)
    def decode():
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        return fn.decoders.image(encoded, device="mixed" if resolved.use_gpu else "cpu", output_type=types.RGB,
                                 adjust_orientation=False)

    pipe = decode()
    pipe.build()
    return pipe


class _Verifier:
    """Runs batches of encoded files through one decoder pipeline, rebuilt only after a failure."""

    def __init__(self, resolved: Resolved):
        self.resolved = resolved
        self.pipe = None
        self.builds = 0  # how many pipelines were built (the tests count them)

    def decodes(self, paths: Sequence[str]) -> bool:
        """True when DALI decodes every file of ``paths`` (at most ``_BATCH``) in one batch."""
        with decoder_log_lines_dropped():  # a failed pipeline's teardown logs too: drop it inside
            try:
                if self.pipe is None:
                    self.pipe = _decoder_pipeline(self.resolved, _BATCH)
                    self.builds += 1
                self.pipe.feed_input("encoded", [np.fromfile(p, dtype=np.uint8) for p in paths])
                self.pipe.run()
            except RuntimeError:
                self.pipe = None  # a failed pipeline cannot run again
                return False
        return True


def refused_by_dali(paths: Sequence[str], resolved: Resolved, progress: bool = False) -> dict[str, str]:
    """``{path: reason}`` for the files DALI's image decoder refuses on ``resolved``'s device."""
    refused: dict[str, str] = {}
    verifier = _Verifier(resolved)
    chunks = [list(paths[i:i + _BATCH]) for i in range(0, len(paths), _BATCH)]
    for chunk in progress_bar(chunks, desc="verifying with DALI", unit="batch", leave=False, disable=not progress):
        if verifier.decodes(chunk):
            continue
        for path in chunk:
            if not verifier.decodes([path]):
                where = "on the GPU" if resolved.use_gpu else "on the CPU"
                refused[path] = f"DALI's decoder ({where}) cannot decode it"
    return refused


@dataclass(frozen=True)
class DaliFileCheck:
    """The DALI loader's :class:`~dali_voc.datasets.integrity.FileCheck`: images, and labels when DALI
    decodes them (``label_path == "dali"``), through :func:`refused_by_dali`."""

    resolved: Resolved
    progress: bool = False

    @property
    def labels(self) -> bool:
        return self.resolved.label_path == "dali"

    def refused(self, paths: Sequence[str]) -> dict[str, str]:
        return refused_by_dali(paths, self.resolved, self.progress)
