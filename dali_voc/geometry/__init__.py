"""Geometry: where each output pixel comes from.

:mod:`.windows` holds the crop window and the one label resampling formula (NumPy and C, shared
by every label path); :mod:`.augment` the augmentation presets and the reference path's draws of
scale, window and flip.
"""

from .augment import PRESETS, Augmentation, draw_geometry
from .windows import GEOMETRY_COLUMNS, BatchGeometry, CropWindow, SampleGeometry, random_window

__all__ = ["CropWindow", "SampleGeometry", "BatchGeometry", "GEOMETRY_COLUMNS", "random_window", "Augmentation", "PRESETS", "draw_geometry"]
