"""dali_voc: Pascal VOC2012 semantic segmentation batches for PyTorch, decoded on the GPU.

>>> from dali_voc import load_data_voc
>>> train_iter, test_iter = load_data_voc(64, (320, 480), root="data")  # doctest: +SKIP
>>> for X, Y in train_iter: ...  # X float32 [64, 3, 320, 480], Y int64 [64, 320, 480]
"""

from .api import load_data, load_data_voc, make_loader
from .labels.tables import ColorTable
from .config import LoaderConfig
from .errors import (DaliVocError, LoaderStateError, MissingFileError, OptionError, PNGFormatError, ReaderPairingError,
                     SampleDecodeError, UnknownColorError, VOCFormatError)
from .loaders.dali import DALILoader
from .batch import Batch
from .loaders.base import SegmentationLoader
from .loaders.reference import ReferenceLoader
from .resolve import Resolved, resolve
from .datasets.scan import VOC_CLASSES, VOC_COLORMAP, VOID_COLOR

__all__ = [
    "load_data", "load_data_voc", "make_loader", "LoaderConfig", "resolve", "Resolved", "SegmentationLoader", "DALILoader",
    "ReferenceLoader", "Batch", "ColorTable", "VOC_CLASSES", "VOC_COLORMAP", "VOID_COLOR",
    "DaliVocError", "VOCFormatError", "PNGFormatError", "UnknownColorError", "SampleDecodeError",
    "ReaderPairingError", "OptionError", "LoaderStateError",
    "MissingFileError",
]
__version__ = "0.1.0"
