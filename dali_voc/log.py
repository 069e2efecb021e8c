"""The ``dali_voc`` logger: what the loaders tell the user (kept counts, device, skipped files).

Loaders built with ``verbose=True`` log at INFO, others at DEBUG. By default the logger prints
INFO and above to stderr as ``dali_voc: <message>`` and does not pass records on to the root
logger, so a script that never configures logging still sees the lines. An application that
routes logging itself calls :func:`use_application_logging` once.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("dali_voc")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (pytest, notebooks
    and redirections replace it after import)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("dali_voc: %(message)s"))

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


_default_handler = _StderrHandler()
logger.addHandler(_default_handler)
logger.setLevel(logging.INFO)
logger.propagate = False


def use_application_logging() -> None:
    """Stop printing to stderr ourselves; pass records to the root logger's handlers."""
    logger.removeHandler(_default_handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def say(verbose: bool, message: str) -> None:
    """Log ``message`` at INFO (shown by default) when ``verbose``, else at DEBUG."""
    logger.log(logging.INFO if verbose else logging.DEBUG, message)
