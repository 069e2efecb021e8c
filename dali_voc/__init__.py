"""dali_voc: semantic segmentation batches for PyTorch (and JAX, TensorFlow), decoded on the GPU.

>>> from dali_voc import load_data_voc
>>> train_iter, test_iter = load_data_voc(64, (320, 480), root="data")  # doctest: +SKIP
>>> for X, Y in train_iter: ...  # X float32 [64, 3, 320, 480], Y int64 [64, 320, 480]

What users may import is listed in ``__all__`` here and in each wing's ``__init__``
(:mod:`dali_voc.datasets`, :mod:`dali_voc.geometry`, :mod:`dali_voc.labels`,
:mod:`dali_voc.loaders`, :mod:`dali_voc.tools`); other modules are internals that may change.
"""

from . import _moved
from .api import default_root, load_data, load_data_voc, make_loader
from .batch import Batch
from .config import LoaderConfig
from .dataset_specs import DatasetSpec, dataset_names, dataset_spec, register_dataset, unregister_dataset
from .datasets import VOC_CLASSES, VOC_COLORMAP, VOID_COLOR
from .errors import (DaliVocError, DatasetFormatError, FileRefusedError, LabelDecoderError, LoaderStateError,
                     MissingFileError, OptionError, PNGFormatError, ReaderPairingError, SampleDecodeError,
                     UnknownColorError, VOCFormatError)
from .geometry import CropWindow
from .labels import ColorTable, ValueTable
from .loaders import (GRAPH_VERSION, DALILoader, ReferenceLoader, SegmentationDataset, SegmentationLoader,
                      VOCSegmentation, apply_jitter)
from .log import use_application_logging
from .resolve import Resolved, resolve

_moved.install(__name__)

__all__ = [
    "load_data", "load_data_voc", "make_loader", "default_root", "LoaderConfig", "resolve", "Resolved",
    "SegmentationLoader", "DALILoader", "ReferenceLoader", "SegmentationDataset", "VOCSegmentation", "Batch",
    "CropWindow", "apply_jitter", "GRAPH_VERSION", "use_application_logging",
    "DatasetSpec", "register_dataset", "unregister_dataset", "dataset_spec", "dataset_names",
    "ColorTable", "ValueTable", "VOC_CLASSES", "VOC_COLORMAP", "VOID_COLOR",
    "DaliVocError", "DatasetFormatError", "VOCFormatError", "PNGFormatError", "UnknownColorError",
    "SampleDecodeError", "ReaderPairingError", "OptionError", "LoaderStateError", "LabelDecoderError",
    "MissingFileError", "FileRefusedError",
]
__version__ = "0.1.0"
