"""Labels: label PNG -> class indices at the sample's window, the same on every path.

- :mod:`.tables`: the lookup tables (:class:`ColorTable` for color labels, :class:`ValueTable`
  for class-index labels) every path maps pixels with;
- :mod:`.png`: the strict PNG container parser and NumPy unfiltering;
- :mod:`.host`: a label file -> class indices on the CPU (the contract the others match);
- :mod:`.decoder`: the decoder interface (:class:`LabelBatch` -> :class:`DecodedLabels`);
- its implementations, chosen by :mod:`.choice`: :mod:`.numpy_decoder` (colors on the CPU), :mod:`.zlib_decoder`
  (the nvCOMP path's plan on CPU threads), :mod:`.cupy_decoder`
  (CuPy kernel on the GPU), :mod:`.nvcomp_plan` + :mod:`.nvcomp_decoder` (inflated on the GPU by nvCOMP).
"""

from .decoder import DecodedLabels, LabelBatch, LabelDecoder
from .host import LabelImage, decode_label, read_label
from .tables import UNKNOWN, ColorTable, LabelTable, ValueTable

__all__ = ["ColorTable", "ValueTable", "LabelTable", "UNKNOWN", "LabelImage", "read_label", "decode_label",
           "LabelBatch", "DecodedLabels", "LabelDecoder"]
