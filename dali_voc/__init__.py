"""dali_voc: Pascal VOC2012 semantic segmentation batches for PyTorch, decoded on the GPU.

>>> from dali_voc import load_data_voc
>>> train_iter, test_iter = load_data_voc(64, (320, 480), root="data")  # doctest: +SKIP
>>> for X, Y in train_iter: ...  # X float32 [64, 3, 320, 480], Y int64 [64, 320, 480]
"""

from .api import load_data_voc, make_loader
from .colors import ColorTable, UnknownColorError
from .config import LoaderConfig
from .voc import VOC_CLASSES, VOC_COLORMAP, VOID_COLOR, VOCFormatError

__all__ = [
    "load_data_voc", "make_loader", "LoaderConfig", "ColorTable", "UnknownColorError",
    "VOC_CLASSES", "VOC_COLORMAP", "VOID_COLOR", "VOCFormatError",
]
__version__ = "0.1.0"
