"""The four ways the DALI loader turns a batch's labels into class indices, behind one interface
(:class:`~dali_voc.labels.decoder.LabelDecoder`), and the choice between them.

* :class:`NumpyColorDecoder`: DALI decoded and cropped the label PNGs on the CPU; NumPy maps
  colors through the color table (the DALI loader on CPU operators with ``label_decoder="dali"``).
* :class:`dali_voc.labels.cupy_decoder.CupyColorDecoder`: DALI decoded and cropped them on the GPU; a
  CuPy kernel maps colors.
* :class:`dali_voc.labels.nvcomp_decoder.NvcompLabelDecoder`: the PNG bytes leave DALI undecoded; nvCOMP
  inflates them on the GPU and kernels unfilter, crop and map.
* :class:`dali_voc.labels.zlib_decoder.ZlibLabelDecoder`: the same, on CPU threads: the nvCOMP
  path's plan, zlib for nvCOMP, NumPy for the kernels (the DALI loader on CPU operators).

Each takes a ``LabelBatch`` and returns ``DecodedLabels``: the labels and how many
pixels of each sample had a color the table does not know. The loader does the counting,
``unknown_colors="raise"`` and the naming of files once, for all four. With augmentation
each decoder also resamples the whole labels (scale, crop, flip) by the formula of
:mod:`dali_voc.geometry.windows`.
"""

from __future__ import annotations

import torch

from .decoder import LabelDecoder
from .numpy_decoder import NumpyColorDecoder
from .tables import LabelTable
from ..errors import OptionError
from ..resolve import Resolved


def make_label_decoder(resolved: Resolved, table: LabelTable, crop_hw: tuple[int, int],
                       dtype: torch.dtype) -> LabelDecoder:
    """The decoder of ``resolved.label_path`` on ``resolved``'s device (DALI backend only)."""
    if resolved.backend != "dali":
        raise OptionError(f"label decoders belong to the DALI backend, not {resolved.backend!r}")
    if resolved.label_path == "nvcomp":
        from .nvcomp_decoder import NvcompLabelDecoder  # needs CuPy and nvCOMP: imported only on this path
        return NvcompLabelDecoder(table, crop_hw, dtype, torch.device(resolved.device_name),
                                  known_sizes=resolved.nvcomp_known_sizes)
    if resolved.label_path == "zlib":
        from .zlib_decoder import ZlibLabelDecoder
        return ZlibLabelDecoder(table, crop_hw, dtype, resolved.workers)
    if resolved.use_gpu:
        from .cupy_decoder import CupyColorDecoder  # needs CuPy: imported only on the GPU
        return CupyColorDecoder(table, crop_hw, dtype, torch.device(resolved.device_name))
    return NumpyColorDecoder(table, crop_hw, dtype)
