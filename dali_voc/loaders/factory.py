"""One loader for one split, of the backend a config resolves to (:func:`make_loader`)."""

from __future__ import annotations

from typing import Optional

from ..config import LoaderConfig
from ..log import say
from ..resolve import Resolved, resolve
from .base import SegmentationLoader
from .dali import DALILoader
from .reference import ReferenceLoader


def make_loader(config: LoaderConfig, split: str, shuffle: bool,
                resolved: Optional[Resolved] = None) -> SegmentationLoader:
    """One loader for one split: a :class:`~dali_voc.loaders.dali.DALILoader` or a
    :class:`~dali_voc.loaders.reference.ReferenceLoader`, as ``config.backend`` resolves
    (``resolved``: a :func:`~dali_voc.resolve.resolve` of ``config`` made earlier)."""
    resolved = resolve(config) if resolved is None else resolved
    loader: SegmentationLoader
    if resolved.backend == "dali":
        loader = DALILoader(config, split, shuffle, resolved)
    else:
        loader = ReferenceLoader(config, split, shuffle, resolved)
    say(config.verbose, repr(loader))
    skipped = loader.selection.skipped_line(split)
    if skipped:
        say(config.verbose, skipped)
    return loader
