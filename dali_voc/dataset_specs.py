"""The dataset registry: one :class:`DatasetSpec` per dataset the loaders serve, by name.

A leaf module (it imports nothing of the package), so that :class:`~dali_voc.config.LoaderConfig`
can validate ``dataset=`` and pick per-dataset defaults without an import cycle. The specs
themselves are written one file per dataset in :mod:`dali_voc.datasets` (``voc``, ``voc_aug``,
``ade20k``, ``cityscapes``), which register them when the package is imported; a new dataset is
one more such file, or a :func:`register_dataset` call from user code::

    register_dataset(DatasetSpec(name="toy", title="Toy", class_names=("bg", "fg"), train_split="train",
                                 val_split="val", whole_canvas=(64, 64), layout="...", label_encoding="...",
                                 locate=ToyLayout.locate, label_table=toy_table, class_colors=((0, 0, 0), (255, 0, 0))))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the loaders, ``check``, ``info`` and ``show`` need to know of one dataset.

    Attributes:
        name: the ``dataset=`` value.
        title: for messages.
        class_names: class ``i`` is ``class_names[i]``; labels hold ``[0, len)`` or the ignore index.
        train_split, val_split: the splits :func:`dali_voc.load_data` trains and evaluates on.
        whole_canvas: (height, width) holding every image of the real dataset's evaluation split
            (whole-image evaluation), or a size that holds most of them where a few are larger.
        layout: where the files are, in words (README and errors).
        label_encoding: how a label pixel becomes a class, in words.
        locate: ``locate(root)`` finds the dataset's tree at or under ``root`` and returns its
            :class:`~dali_voc.datasets.layouts.Layout`; raises ``FileNotFoundError`` naming what
            is expected there.
        label_table: ``label_table(void_index, ignore_index)`` returns the
            :class:`~dali_voc.labels.tables.ColorTable` or
            :class:`~dali_voc.labels.tables.ValueTable` every label path maps pixels with
            (``void_index``: the class of the dataset's void value, 0 or ``ignore_index``).
        class_colors: an RGB color per class, for pictures (``show``, overlays).
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    train_split: str
    val_split: str
    whole_canvas: tuple[int, int]
    layout: str
    label_encoding: str
    locate: Callable[[Path], Any]
    label_table: Callable[[int, int], Any]
    class_colors: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def inspection_table(self) -> Any:
        """The table ``check`` and ``info`` judge labels with: void and ignored values at 255,
        so that only values the dataset never uses count as unknown."""
        return self.label_table(255, 255)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    """Make ``spec`` loadable as ``dataset=spec.name``; returns it.

    Raises:
        ValueError: the name is taken (unless ``replace``), or the spec is inconsistent.
    """
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered ({_REGISTRY[spec.name].title})")
    if not spec.class_names or len(spec.class_names) > 255:
        raise ValueError(f"dataset {spec.name!r}: 1 to 255 classes, got {len(spec.class_names)}")
    if len(spec.class_colors) < len(spec.class_names):
        raise ValueError(f"dataset {spec.name!r}: {len(spec.class_names)} classes but {len(spec.class_colors)} colors")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Forget the dataset ``name`` (a no-op when it is not registered)."""
    _REGISTRY.pop(name, None)


def dataset_names() -> tuple[str, ...]:
    """The registered datasets' names, in registration order."""
    return tuple(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of the dataset ``name``.

    Raises:
        ValueError: no dataset of that name is registered (the message lists those that are).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"dataset={name!r} is not valid; expected one of "
                         f"{', '.join(map(repr, _REGISTRY))}") from None
