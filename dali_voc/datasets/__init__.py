"""Datasets: where each dataset's files are, how its labels map to classes, and the scan that
turns a split into the samples a loader uses.

One file per dataset (``voc``, ``voc_aug``, ``ade20k``, ``cityscapes``) defines its layout,
label table, classes, colors, splits and canvas as one :class:`~dali_voc.dataset_specs.DatasetSpec`
and registers it; :func:`~dali_voc.dataset_specs.register_dataset` adds another from user code.
The generic parts: :mod:`.layouts` (the :class:`Layout` interface), :mod:`.scan` (split entries
-> :class:`Sample` with header sizes -> :class:`Selection` after the small-image policy) and
:mod:`.integrity` (per-file inspection shared by the loaders and ``check``).
"""

from ..dataset_specs import DatasetSpec, dataset_names, dataset_spec, register_dataset, unregister_dataset
from . import voc, voc_aug, ade20k, cityscapes  # noqa: F401,I001  (each registers its spec, in this order)
from .layouts import Layout
from .scan import Sample, Selection, load_selection, scan_samples, select_samples
from .voc import VOC_CLASSES, VOC_COLORMAP, VOID_COLOR, VOCLayout, voc_color_table

__all__ = [
    "DatasetSpec", "register_dataset", "unregister_dataset", "dataset_spec", "dataset_names",
    "Layout", "Sample", "Selection", "load_selection", "scan_samples", "select_samples",
    "VOCLayout", "VOC_CLASSES", "VOC_COLORMAP", "VOID_COLOR", "voc_color_table",
]
