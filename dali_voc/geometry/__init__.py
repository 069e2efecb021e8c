"""Geometry: where each output pixel comes from.

:mod:`.windows` holds the crop window and the one label resampling formula (NumPy and C, shared
by every label path); :mod:`.augment` the augmentation presets and the reference path's draws of
scale, window and flip.
"""

from .augment import PRESETS, Augmentation, SampleGeometry, draw_geometry
from .windows import CropWindow, random_window

__all__ = ["CropWindow", "random_window", "Augmentation", "PRESETS", "SampleGeometry", "draw_geometry"]
