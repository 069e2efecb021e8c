"""Old module paths of the flat package, still importable: ``dali_voc.pipeline`` is
``dali_voc.loaders.pipeline`` (the same module object), with a ``DeprecationWarning``.

One import hook serves every moved module, instead of a shim file per old name. New code imports
the public names from :mod:`dali_voc` or its wings (``dali_voc.loaders``, ``dali_voc.labels``, ...).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Optional, Sequence

#: Old module (below ``dali_voc.``) -> where it lives now.
MOVED: dict[str, str] = {
    "windows": "geometry.windows", "augment": "geometry.augment",
    "colors": "labels.tables", "png": "labels.png", "label_file": "labels.host", "label_batch": "labels.decoder",
    "label_decoders": "labels.choice", "gpu_labels": "labels.cupy_decoder", "label_plan": "labels.nvcomp_plan",
    "gpu_png": "labels.nvcomp_decoder",
    "voc": "datasets.voc", "layouts": "datasets.layouts", "integrity": "datasets.integrity",
    "images": "loaders.images", "loader_base": "loaders.base", "loader": "loaders.dali", "pipeline": "loaders.pipeline",
    "reference": "loaders.reference", "dali_verify": "loaders.dali_verify", "frameworks": "loaders.frameworks",
    "distributed": "loaders.distributed", "photometric": "loaders.photometric",
    "check": "tools.check", "download": "tools.download", "sbd": "tools.sbd", "synth": "tools.synth", "viz": "tools.viz",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import dali_voc.<old>`` with the module at its new place."""

    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None):
        prefix, _, old = fullname.partition(".")
        if prefix != self.package or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = f"{self.package}.{MOVED[spec.name.partition('.')[2]]}"
        warnings.warn(f"{spec.name} moved to {new}; import from there (or from dali_voc)", DeprecationWarning,
                      stacklevel=3)
        module = importlib.import_module(new)
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias's spec on the real module: give it its own back.
        module.__spec__ = self._real_spec


def install(package: str) -> None:
    """Install the hook once (idempotent)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules(package))
