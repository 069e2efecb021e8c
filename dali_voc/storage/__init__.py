"""Storage: where a sample's bytes come from. :mod:`.stores` (a local folder or an S3 bucket
prefix behind one interface, every network call bounded) and :mod:`.members` (a path or a
packed shard's member, read by :func:`read_source`)."""

from .members import MemberRef, read_source
from .stores import Store, is_url, open_store

__all__ = ["Store", "open_store", "is_url", "MemberRef", "read_source"]
