"""Tools around the loaders, each a ``python -m dali_voc`` command: :mod:`.check` (every problem of
a tree), :mod:`.download` (VOC2012 and SBD archives, verified and safely extracted), :mod:`.sbd`
(SBD -> trainaug labels), :mod:`.synth` (synthetic trees of each dataset), :mod:`.viz` (pictures).

Imported on use (``from dali_voc.tools.synth import synthesize``): none is needed to load data.
"""
