"""What each benchmark row runs. Every row yields batches the way a training loop sees them:
the GPU rows return CUDA tensors; the reference rows copy their CPU batches to the GPU when
there is one (as the textbook's loop does), so all rows end with data on the same device."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from dali_voc.config import DEFAULT_HW_DECODER_LOAD, LoaderConfig, usable_cpu_count
from dali_voc.resolve import PREFETCH

TEXTBOOK_WORKERS = 4  # d2l.get_dataloader_workers()


@dataclass(frozen=True)
class Row:
    """One line of the benchmark table."""

    name: str
    what: str
    threads: int
    needs_gpu: bool = False
    needs_dali: bool = False
    needs_torchvision: bool = False
    label_decoder: str = "auto"
    #: the loader's ``augment`` preset (``"torchvision"`` rows: scale 0.5-2.0, flip, crop, pad)
    augment: str = "textbook"
    #: settings the ``tune-`` rows try against the shipped defaults (same run, same threads);
    #: ``prefetch`` None: the loader's default (:func:`dali_voc.resolve.resolve`)
    prefetch: Optional[int] = None
    nvcomp_known_sizes: bool = False


def plan_rows(threads: list[int]) -> list[Row]:
    """The rows of one run, in table order (the textbook baseline first)."""
    cores = usable_cpu_count()
    rows = [
        Row("reference-textbook", f"CPU reference loader, textbook settings ({TEXTBOOK_WORKERS} workers)",
            TEXTBOOK_WORKERS),
        Row("reference-allcores", f"CPU reference loader, all cores ({cores} workers)", cores),
        Row("dali-cpu", f"DALI pipeline in CPU mode ({cores} threads)", cores, needs_dali=True),
        Row("dali-cpu-stockpng", f"DALI pipeline in CPU mode, labels by DALI's PNG decoder ({cores} threads)", cores,
            needs_dali=True, label_decoder="dali"),
        Row("peer-torchvision-textbook", f"peer: torchvision v2 RandomCrop of image and mask, DataLoader "
            f"({TEXTBOOK_WORKERS} workers)", TEXTBOOK_WORKERS, needs_torchvision=True),
        Row("peer-torchvision-allcores", f"peer: torchvision v2 RandomCrop of image and mask, DataLoader "
            f"({cores} workers)", cores, needs_torchvision=True),
    ]
    for t in threads:
        rows.append(Row(f"dali-gpu-{t}t", f"GPU loader as shipped (labels inflated on the GPU), {t} CPU threads",
                        t, needs_gpu=True, needs_dali=True, label_decoder="auto"))
        rows.append(Row(f"dali-gpu-stockpng-{t}t", f"GPU loader, labels by DALI's stock PNG decoder, {t} CPU threads",
                        t, needs_gpu=True, needs_dali=True, label_decoder="dali"))
    rows += augmented_rows(threads)
    rows += cpu_tuning_rows()
    rows += [
        Row("jpeg-ceiling-dali", "ceiling: JPEG decode alone, DALI mixed decoder (no labels, no crop)",
            max(threads), needs_gpu=True, needs_dali=True),
        Row("jpeg-torchvision-gpu", "peer: torchvision batched GPU decode_jpeg (no labels, no crop)", 1,
            needs_gpu=True, needs_torchvision=True),
    ]
    return rows + tuning_rows(threads)  # last: optional, after every row the targets read


def augmented_rows(threads: list[int]) -> list[Row]:
    """The ``"torchvision"`` augmentation preset (random resize 0.5-2.0 of a 520 shorter side,
    flip, crop with padding) on our loaders and on torchvision's own transforms (the peer)."""
    cores = usable_cpu_count()
    return [
        Row("aug-reference-textbook", f"torchvision preset: CPU reference loader ({TEXTBOOK_WORKERS} workers)",
            TEXTBOOK_WORKERS, augment="torchvision"),
        Row("aug-reference-allcores", f"torchvision preset: CPU reference loader ({cores} workers)", cores,
            augment="torchvision"),
        Row("aug-dali-cpu", f"torchvision preset: DALI pipeline in CPU mode ({cores} threads)", cores,
            needs_dali=True, augment="torchvision"),
        Row("aug-dali-cpu-stockpng", f"torchvision preset: DALI pipeline in CPU mode, labels by DALI's PNG decoder "
            f"({cores} threads)", cores, needs_dali=True, augment="torchvision", label_decoder="dali"),
        Row(f"aug-dali-gpu-{max(threads)}t", f"torchvision preset: GPU loader as shipped, {max(threads)} CPU threads",
            max(threads), needs_gpu=True, needs_dali=True, augment="torchvision"),
        Row("aug-peer-torchvision-textbook", f"peer: torchvision v2 transforms of its VOC preset, DataLoader "
            f"({TEXTBOOK_WORKERS} workers)", TEXTBOOK_WORKERS, needs_torchvision=True, augment="torchvision"),
        Row("aug-peer-torchvision-allcores", f"peer: torchvision v2 transforms of its VOC preset, DataLoader "
            f"({cores} workers)", cores, needs_torchvision=True, augment="torchvision"),
    ]


def cpu_tuning_rows() -> list[Row]:
    """DALI in CPU mode with the prefetch queue 2 deep (what shipped before, DALI's default)
    instead of the CPU default 1 (:data:`dali_voc.resolve.CPU_DALI_PREFETCH`), both presets: to
    compare with the ``dali-cpu`` and ``aug-dali-cpu`` rows of the same run."""
    cores = usable_cpu_count()
    return [
        Row("tune-cpu-prefetch2", f"DALI pipeline in CPU mode, prefetch queue 2 deep (shipped: 1), {cores} threads",
            cores, needs_dali=True, prefetch=2),
        Row("tune-cpu-aug-prefetch2", f"torchvision preset: DALI pipeline in CPU mode, prefetch queue 2 deep "
            f"(shipped: 1), {cores} threads", cores, needs_dali=True, augment="torchvision", prefetch=2),
    ]


def tuning_rows(threads: list[int]) -> list[Row]:
    """The GPU loader with one setting changed from what ships, to compare with its
    ``dali-gpu-<t>t`` row of the same run: DALI's prefetch queue 3 deep (default 2), and
    nvCOMP given the inflated sizes from the PNG headers (no size pass, no stream sync)."""
    t = max(threads)
    return [
        Row(f"tune-prefetch3-{t}t", f"GPU loader, prefetch queue 3 deep (shipped: 2), {t} CPU threads", t,
            needs_gpu=True, needs_dali=True, prefetch=3),
        Row(f"tune-knownsizes-{t}t", f"GPU loader, nvCOMP sized from the PNG headers (shipped: its size pass), "
            f"{t} CPU threads", t, needs_gpu=True, needs_dali=True, label_decoder="nvcomp", nvcomp_known_sizes=True),
    ]


def row_named(name: str, threads: int) -> Row:
    """The row called ``name`` in a run with ``threads`` CPU threads for the GPU rows.

    Raises:
        ValueError: no such row, listing the rows there are.
    """
    rows = plan_rows([threads])
    for row in rows:
        if row.name == name:
            return row
    raise ValueError(f"unknown row {name!r}; rows: {[r.name for r in rows]}")


def skip_reason(row: Row) -> Optional[str]:
    """Why ``row`` cannot run on this machine, or None."""
    if row.needs_gpu and not torch.cuda.is_available():
        return "no CUDA device on this machine"
    if row.needs_dali:
        try:
            import nvidia.dali  # noqa: F401
        except ImportError:
            return "NVIDIA DALI is not installed (pip install '.[cuda13]')"
    if row.needs_torchvision:
        try:
            import torchvision.io  # noqa: F401
        except Exception as err:  # a torchvision that does not match torch fails at import
            return f"torchvision is not usable here ({type(err).__name__}: {err})"
    return None


def _config(root: Path, batch_size: int, crop: tuple[int, int], threads: int, **kw) -> LoaderConfig:
    return LoaderConfig(root=root, batch_size=batch_size, crop_size=crop, num_workers=threads,
                        verbose=False, **kw)


def train_split(config: LoaderConfig) -> str:
    """The split the rows read: the dataset's training split."""
    return config.spec.train_split


def starter(row: Row, root: Path, batch_size: int, crop: tuple[int, int],
            hw_decoder_load: float = DEFAULT_HW_DECODER_LOAD, dataset: str = "voc") -> Callable[[], Callable[[], Iterator]]:
    """A function that builds the row's loader and returns its one-epoch iterator factory."""
    cuda = torch.cuda.is_available()
    base = _config(root, batch_size, crop, row.threads, augment=row.augment, dataset=dataset)
    if row.needs_gpu:  # the hardware JPEG engine exists on the GPU only (refused elsewhere)
        base = replace(base, hw_decoder_load=hw_decoder_load)

    if row.name.startswith(("peer-torchvision", "aug-peer-torchvision")):
        def start():
            return _torchvision_peer(base)
        return start

    if row.name.startswith(("reference", "aug-reference")):
        def start():
            from dali_voc.loaders.reference import ReferenceLoader
            loader = ReferenceLoader(base, train_split(base), shuffle=True)

            def epoch():
                for x, y in loader:
                    yield (x.cuda(non_blocking=True), y.cuda(non_blocking=True)) if cuda else (x, y)
            return epoch
        return start

    if row.name.startswith(("dali", "aug-dali", "tune-")):
        device = "gpu" if row.needs_gpu else "cpu"
        config = replace(base, device=device, label_decoder=row.label_decoder, backend="dali", prefetch=row.prefetch,
                         nvcomp_known_sizes=row.nvcomp_known_sizes)

        def start():
            from dali_voc.loaders.dali import DALILoader
            loader = DALILoader(config, train_split(config), shuffle=True)
            return lambda: iter(loader)
        return start

    if row.name == "jpeg-ceiling-dali":
        def start():
            return _dali_jpeg_only(base)
        return start

    if row.name == "jpeg-torchvision-gpu":
        def start():
            return _torchvision_jpeg(base)
        return start
    raise ValueError(f"unknown row {row.name!r}")


def _train_images(config: LoaderConfig) -> list[str]:
    from dali_voc.datasets.scan import load_selection
    return [str(s.image) for s in load_selection(config.root, train_split(config), config.crop_size, "drop",
                                                 dataset=config.dataset).samples]


def _dali_jpeg_only(config: LoaderConfig) -> Callable[[], Iterator]:
    """DALI reader + mixed JPEG decoder; a "batch" is the decoded TensorListGPU."""
    from nvidia.dali import fn, pipeline_def, types
    files = _train_images(config)

    @pipeline_def(batch_size=config.batch_size, num_threads=config.workers, device_id=torch.cuda.current_device(),
                  prefetch_queue_depth=config.prefetch or PREFETCH)
    def decode_only():
        jpegs, _ = fn.readers.file(files=files, random_shuffle=False, shuffle_after_epoch=True,
                                   pad_last_batch=True, name="r")
        images = fn.decoders.image(jpegs, device="mixed", output_type=types.RGB,
                                   hw_decoder_load=config.hw_decoder_load)
        return images  # variable-size HWC uint8 on the GPU; nothing else is done

    pipe = decode_only()
    pipe.build()
    batches_per_epoch = len(files) // config.batch_size

    def epoch():
        for _ in range(batches_per_epoch):
            (out,) = pipe.run()
            yield out
    return epoch


def _torchvision_jpeg(config: LoaderConfig) -> Callable[[], Iterator]:
    """torchvision: read files on the CPU, decode lists of ``batch_size`` JPEGs on the GPU."""
    from torchvision.io import decode_jpeg, read_file
    files = _train_images(config)
    b = config.batch_size

    def epoch():
        for i in range(0, len(files) - b + 1, b):
            data = [read_file(f) for f in files[i:i + b]]
            yield decode_jpeg(data, device="cuda")
    return epoch


def _torchvision_transform(config: LoaderConfig):
    """torchvision ``v2`` transforms of image and mask for the peer rows.

    ``augment="textbook"``: the textbook's one random crop (``RandomCrop`` of image and mask
    together, drawn once per sample), padded with 0 / 255 where ``small_image_policy`` is
    ``"pad"`` (the default ``"drop"`` leaves out images smaller than the crop before, as our
    rows do). ``augment="torchvision"``: what torchvision's ``references/segmentation`` trains
    VOC with: ``RandomResize`` of the shorter side 260-1040, flip 0.5, crop padded with 0 / 255.
    Both then convert to float32 in [0, 1] and normalize with the ImageNet mean and std (as
    every loader of the table does); masks become int64.
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from dali_voc.config import IMAGENET_MEAN, IMAGENET_STD

    fill = {tv_tensors.Image: 0, tv_tensors.Mask: 255}
    pad = config.small_image_policy == "pad"
    if config.augment == "textbook":
        geometric = [v2.RandomCrop(config.crop_size, pad_if_needed=pad, fill=fill)]
    elif config.augment == "torchvision":
        geometric = [v2.RandomResize(min_size=260, max_size=1040, antialias=True), v2.RandomHorizontalFlip(0.5),
                     v2.RandomCrop(config.crop_size, pad_if_needed=True, fill=fill)]
    else:
        raise ValueError(f"no torchvision peer for augment={config.augment!r}")
    return v2.Compose(geometric + [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
    ])


def _torchvision_peer(config: LoaderConfig) -> Callable[[], Iterator]:
    """The peer rows: what a torchvision user writes for ``config.augment``
    (:func:`_torchvision_transform`): JPEG decode (``torchvision.io``), the label's palette
    indices as stored (PIL's ``P`` mode, as torchvision's ``VOCSegmentation`` reads them), the
    v2 transforms, a ``DataLoader`` with the row's workers, the batch size, shuffle and
    last-batch policy of our rows; batches copied to the GPU as the textbook's loop does."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import tv_tensors
    from torchvision.io import decode_jpeg, read_file

    from dali_voc.datasets.scan import load_selection

    samples = load_selection(config.root, train_split(config), config.crop_size, config.small_image_policy,
                             dataset=config.dataset).samples
    transform = _torchvision_transform(config)

    class PeerVOC(Dataset):
        def __len__(self) -> int:
            return len(samples)

        def __getitem__(self, i: int):
            image = tv_tensors.Image(decode_jpeg(read_file(str(samples[i].image))))
            with Image.open(samples[i].label) as label:
                mask = tv_tensors.Mask(torch.from_numpy(np.array(label)))
            return transform(image, mask)

    loader = DataLoader(PeerVOC(), batch_size=config.batch_size, shuffle=True, drop_last=config.last_batch == "drop",
                        num_workers=config.workers,
                        prefetch_factor=(config.prefetch or PREFETCH) if config.workers > 0 else None,
                        persistent_workers=config.workers > 0)
    cuda = torch.cuda.is_available()

    def epoch():
        for x, y in loader:
            yield (x.cuda(non_blocking=True), y.cuda(non_blocking=True)) if cuda else (x, y)
    return epoch


def batch_images(batch) -> int:
    """Number of images in a batch of any row."""
    if isinstance(batch, tuple):
        return int(batch[0].shape[0])
    if isinstance(batch, list):
        return len(batch)
    return len(batch)  # a DALI TensorList


def cpu_count_note() -> str:
    return f"{usable_cpu_count()} usable of {os.cpu_count()} CPUs"
