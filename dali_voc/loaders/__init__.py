"""Loaders: batches of one split, epoch after epoch.

:mod:`.base` (:class:`SegmentationLoader`: ``len``, epochs, ``set_epoch``, ``state_dict``, ``close``),
its two implementations :mod:`.dali` (:class:`DALILoader` over the graph in :mod:`.pipeline`) and
:mod:`.reference` (:class:`ReferenceLoader` over :class:`SegmentationDataset`, the CPU oracle), and
what they share: :mod:`.photometric` (the color jitter), :mod:`.frameworks` (JAX/TensorFlow
batches), :mod:`.distributed` (joining torchrun's processes), :mod:`.dali_verify` and :mod:`.images`.
"""

from .base import SegmentationLoader
from .dali import DALILoader
from .distributed import process_group
from .factory import make_loader
from .photometric import apply_jitter
from .pipeline import GRAPH_VERSION
from .reference import ReferenceLoader, SegmentationDataset, VOCSegmentation

__all__ = ["make_loader", "SegmentationLoader", "DALILoader", "ReferenceLoader", "SegmentationDataset", "VOCSegmentation",
           "GRAPH_VERSION", "apply_jitter", "process_group"]
