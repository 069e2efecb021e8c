"""Every error dali_voc raises on purpose, in one place (exported from :mod:`dali_voc`).

All derive from :class:`DaliVocError`, so ``except dali_voc.DaliVocError`` catches any of
them, and each also derives from the built-in exception a caller would expect (a damaged
file is an ``OSError``, a malformed file or setting a ``ValueError``). Messages name the file
and what was wrong with it.
"""

from __future__ import annotations


class DaliVocError(Exception):
    """Base of the errors dali_voc raises on purpose."""


class DatasetFormatError(DaliVocError, ValueError):
    """The tree, a split list or a file in it is not what the dataset's tree must hold."""


#: The name this error had while VOC was the only dataset; ``except VOCFormatError`` still
#: catches every :class:`DatasetFormatError`.
VOCFormatError = DatasetFormatError


class MissingFileError(DaliVocError, FileNotFoundError):
    """A file or folder dali_voc needs is not there (a tree, a split list, an image or label of
    a listed sample); the message names it. Also a ``FileNotFoundError``, as callers expect."""


class FileRefusedError(VOCFormatError):
    """A file of the tree that no path decodes, refused by what its header or layout says
    before anything decodes it (a 16-bit label or PNG image, data after a label's IEND, a
    directory or FIFO where a file should be). ``kind`` is ``check``'s name for the finding."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PNGFormatError(DaliVocError, ValueError):
    """The bytes are not a well-formed PNG (the message names the file)."""


class UnknownColorError(DaliVocError, ValueError):
    """A label holds a color that is neither a class color nor the void color."""

    @classmethod
    def in_label(cls, path: object, what: str) -> "UnknownColorError":
        """The error for a pixel of the label file ``path`` that holds ``what`` (e.g.
        ``"color (7, 7, 7)"``, or a palette index without a palette entry)."""
        return cls(f"label {path} holds {what}, which is neither a class color nor the void color")


class SampleDecodeError(DaliVocError, OSError):
    """An image or label file of a sample could not be decoded (the message names it)."""


class ReaderPairingError(DaliVocError, RuntimeError):
    """The image and label readers delivered different samples in one batch slot."""


class OptionError(DaliVocError, ValueError):
    """A combination of :class:`~dali_voc.config.LoaderConfig` options this machine or
    backend cannot honour (e.g. ``backend="reference"`` with ``device="gpu"``)."""


class LabelDecoderError(DaliVocError, RuntimeError):
    """The GPU label decoder itself failed (nvCOMP could not be set up, or it refused label
    streams that zlib inflates): no file is at fault; the message says what failed and how to
    load without it (``label_decoder="dali"``)."""


class LoaderStateError(DaliVocError, ValueError):
    """A ``state_dict`` that does not belong to this loader (other split, shard, seed, ...),
    or a ``set_epoch`` the loader cannot honour."""


class DownloadError(DaliVocError, OSError):
    """The archive could not be fetched (the message names the address, what the server or
    network said, and what to do); a partial file is kept for the next attempt."""


class ChecksumError(DaliVocError, RuntimeError):
    """The downloaded archive's checksum (SHA-1 or MD5) is not the expected one."""


class UnsafeArchiveError(DaliVocError, RuntimeError):
    """A tar member would write outside the target folder (directly, or through a link that
    the archive itself creates), is a device/special file, or could not be extracted safely."""


class StorageError(DaliVocError, OSError):
    """Packed data could not be read or written (a local folder or an ``s3://`` store): the
    message names the object and what the store said (no credentials, refused credentials,
    no such bucket or object, unreachable endpoint, timeout, truncated object)."""


class PackError(DaliVocError, ValueError):
    """Packed data disagrees with its manifest (shard size, SHA-256, sample count, a member
    missing or elsewhere than recorded, an index that disagrees with its tar), or a tree
    cannot be packed (it has errors and ``--skip-bad`` was not given); names the file."""
