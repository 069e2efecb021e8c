"""The DALI pipeline: paired readers, decode, ONE geometry per sample, normalize.

Graph, per sample (textbook: no resize, no flip)::

    image file --reader(images)--> JPEG bytes --decode--> HWC uint8 --crop+normalize+CHW--> X
    label file --reader(labels)--> PNG bytes  --decode--> HWC uint8 RGB --crop------------> label colors
    JPEG header --> (H, W) --+--> integer anchor (top, left), drawn once --> both crops + "windows" output
    uniform [0, 1) x 2 ------+

With augmentation (:mod:`dali_voc.geometry.augment`) a scale draw gives the scaled size, the part of
the image the window shows is resized (linear, antialiased; :func:`window_roi`)
before the crop, a coin flip mirrors the crop, and the
labels leave the pipeline WHOLE (decoded colors, or the PNG bytes on the nvCOMP path): the
label decoder resamples them from the drawn integers (``scaled``, ``windows``, ``flips``)
with the one nearest-neighbour formula of :mod:`dali_voc.geometry.windows`, which DALI's own resize
does not promise.

Both readers get the same file order, the same shuffle seed and the sample's split index as
their "label", so every batch carries two index vectors that the loader compares: the
pairing is checked on every batch, not assumed. Labels leave the pipeline either as RGB colors
at the window (DALI decodes the PNG) or as the PNG file's bytes (``label_path`` ``"nvcomp"``
on the GPU, ``"zlib"`` on the CPU: :data:`dali_voc.resolve.RAW_LABEL_PATHS`); a
label decoder (:mod:`dali_voc.labels.choice`) then turns them into class indices.

The random anchors come from the pipeline's seed, which is the shard's own
(:func:`dali_voc.resolve.shard_seed`): ranks draw independent windows. The shuffle seed is
the same on every shard, so the shards of an epoch partition one order. Checkpointing is
always on, so a loader can save and restore the readers' positions and the generators' states.

Without the GPU every operator runs on the CPU and the pipeline is built with
``device_id=None``, which DALI accepts on a machine without CUDA.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

from ..config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig
from ..resolve import RAW_LABEL_PATHS, Resolved
from ..datasets.packed import ShardPlan
from ..datasets.scan import Sample
from .shard_reader import read_shards

IMAGE_READER = "images"
LABEL_READER = "labels"
#: Output names, in pipeline output order; with geometric augmentation
#: :data:`GEOMETRY_OUTPUTS` follow (see :func:`pipeline_outputs`).
OUTPUTS = ("images", "labels", "windows", "shapes", "label_shapes", "image_ids", "label_ids")
GEOMETRY_OUTPUTS = ("scaled", "flips")
#: Version of the graph's random operators (which ones, in which order, how their draws become
#: windows). A DALI checkpoint restores generator states operator by operator, so a state saved
#: with another version would resume with other windows: the loader refuses it. Version 2 draws
#: both axes' uniforms with one operator (version 1 drew one per axis; its states record no
#: version).
GRAPH_VERSION = 2


def pipeline_outputs(config: LoaderConfig) -> tuple[str, ...]:
    """The output names of :func:`build_pipeline` for ``config``, in order."""
    return OUTPUTS + (GEOMETRY_OUTPUTS if config.augmentation.geometric else ())


def _scaled_size(factor, shape):
    """DALI-graph ``max(1, floor(f * (H, W) + 0.5))`` as int32 ``[2]`` (see :mod:`dali_voc.geometry.augment`)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types
    return fn.cast(dmath.max(dmath.floor(factor * shape + 0.5), 1.0), dtype=types.INT32)


def _integer_anchor(u, extent, crop):
    """DALI-graph version of :func:`dali_voc.geometry.windows.anchor_from_uniform`, both axes at once.

    ``u``: float ``[2]`` uniforms in [0, 1); ``extent``: int32 ``[2]`` the (scaled) image's
    (height, width); ``crop``: int32 ``[2]`` constant. Returns ``(anchor, pos)``: the int32
    ``[2]`` anchor (top, left), uniform over the integers between 0 and ``extent - crop``, and
    the float ``[2]`` positions in [0, 1] that DALI's crop operators turn back into it
    (``round(pos * (extent - crop))``). ``pos`` is ``k / span`` for the integer ``k``, so
    ``pos * slack`` lies within float rounding of ``+-k``, and DALI's cast, which rounds to
    nearest, recovers the signed anchor exactly, as the crops do.
    """
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    slack = extent - crop
    span = dmath.abs(slack)
    k = dmath.min(dmath.floor(u * (span + 1)), span)  # u < 1, the min only guards rounding
    pos = k / dmath.max(span, 1)
    return fn.cast(pos * slack, dtype=types.INT32), pos


class WindowROI(NamedTuple):
    """DALI-graph nodes that resize only the part of an image its window shows (see
    :func:`window_roi`): float ``[2]`` ``roi_start``, ``roi_end`` (in the original image's
    pixels, (y, x)) and ``size`` (the part's scaled (height, width)), and the crop positions
    ``(pos_y, pos_x)`` that place the part in the crop."""

    roi_start: object
    roi_end: object
    size: object
    crop_pos: tuple


def window_roi(shape, scaled, anchor, crop) -> WindowROI:
    """Where to resize only the part of each image its window shows (DALI-graph).

    The image scaled to ``scaled`` and cropped at ``anchor`` equals the region of interest
    ``[y0, y1) x [x0, x1)`` of the scaled image (the window clipped to it, never empty: either
    the window lies in the image or the image in the window), resized from the matching
    region of the original, then placed at offset ``(y0 - top, x0 - left)`` of the crop. DALI
    samples a region of interest exactly where the full resize would, so this is the full
    resize then crop, without computing the pixels the crop throws away (up to 4x at scale 2;
    ``python -m benchmarks.resize_roi`` measures both).

    All int32 ``[2]`` (y, x): ``shape`` the image's size, ``scaled``, ``anchor``, ``crop`` (a
    constant). The crop positions are normalized; DALI rounds them back to the exact integer
    offsets (as in :func:`_integer_anchor`).
    """
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    start = dmath.max(anchor, 0)
    end = dmath.min(anchor + crop, scaled)
    part = end - start
    # offset a = anchor - start <= 0 in a part of extent e <= crop: DALI's anchor round(pos * (e - c))
    # gives a back for pos = a / (e - c); when e == c, a == 0 and the min() keeps pos 0.
    pos = (anchor - start) / dmath.min(part - crop, -1)
    return WindowROI(start * shape / scaled, end * shape / scaled, fn.cast(part, dtype=types.FLOAT),
                     (pos[0], pos[1]))


class GraphGeometry(NamedTuple):
    """One sample's drawn geometry as DALI-graph nodes (all CPU; ``[2]`` vectors are (y, x)).

    Attributes:
        shape: int32 ``[2]`` the image's (height, width) from its header.
        scaled: int32 ``[2]`` the scaled image's (height, width) (``shape`` without scaling).
        anchor: int32 ``[2]`` (top, left) crop anchor in the (scaled) image, uniform over the
            integers of :func:`dali_voc.geometry.windows.anchor_range`.
        crop_pos: ``(pos_y, pos_x)`` normalized positions DALI's crops turn back into the anchor.
        flips: int32 1 where the crop is mirrored (with geometric augmentation; never with
            ``flip_prob`` 0), or the constant 0 without.
        roi: with scaling, the :class:`WindowROI` the image is resized at; else ``None``.
    """

    shape: object
    scaled: object
    anchor: object
    crop_pos: tuple
    flips: object
    roi: Optional[WindowROI]


def geometry_in_graph(image_shape, config: LoaderConfig) -> GraphGeometry:
    """DALI-graph: draw each sample's scale, crop anchor and flip from the pipeline's seed.

    ``image_shape``: the ``peek_image_shape`` node (int32 ``[H, W, C]``). The integers are the
    ones :mod:`dali_voc.geometry.windows` and :mod:`dali_voc.geometry.augment` define, computed in the graph so
    image and label share them exactly. Both axes go through each operator together (``[2]``
    vectors): every operator costs DALI a per-batch dispatch on the CPU, whatever it computes
    (``python -m benchmarks.geometry_graph`` times this graph).
    """
    import numpy as np
    from nvidia.dali import fn, types

    aug = config.augmentation
    crop = types.Constant(np.array(config.crop_size, dtype=np.int32), device="cpu")
    shape = image_shape[0:2]
    scaled = shape
    if aug.scale_range is not None:
        factor = fn.random.uniform(range=list(aug.scale_range))
        if aug.scale_base:
            factor = factor * float(aug.scale_base) / fn.reductions.min(shape)
        scaled = _scaled_size(factor, shape)
    if config.whole_images:  # the window at (0, 0)
        u = 0.0
    else:
        u = fn.random.uniform(range=[0.0, 1.0], shape=[2])
    anchor, pos = _integer_anchor(u, scaled, crop)
    flips = fn.random.coin_flip(probability=aug.flip_prob, dtype=types.INT32) if aug.geometric else 0
    roi = window_roi(shape, scaled, anchor, crop) if aug.scale_range is not None else None
    return GraphGeometry(shape, scaled, anchor, (pos[0], pos[1]), flips, roi)


def geometry_outputs(geometry: GraphGeometry, config: LoaderConfig) -> tuple:
    """The pipeline outputs ``windows`` and ``shapes``, then with geometric augmentation
    ``scaled`` and ``flips`` (see :func:`build_pipeline`), from the drawn geometry."""
    from nvidia.dali import fn

    outputs = (geometry.anchor, geometry.shape)
    if config.augmentation.geometric:
        outputs += (geometry.scaled, fn.reshape(geometry.flips, shape=[1]))
    return outputs


def build_pipeline(config: LoaderConfig, resolved: Resolved, samples: Sequence[Sample], shuffle: bool,
                   checkpoint: Optional[bytes] = None, shards: Optional[ShardPlan] = None):
    """Define (not yet build or run) the DALI pipeline over ``samples`` for one shard.

    ``resolved`` says where operators run (``use_gpu``, ``cuda_device``), the shard, the thread
    count, the hardware-decoder share, the window seed and whether labels stay encoded
    (``label_path`` in :data:`~dali_voc.resolve.RAW_LABEL_PATHS`). ``checkpoint``: DALI's serialized
    checkpoint (from a loader's saved state); the pipeline resumes exactly there. ``shards``: packed
    data's shards, read by one webdataset reader (:mod:`dali_voc.loaders.shard_reader`) instead of
    the file readers.

    Outputs (:func:`pipeline_outputs`), per sample:
      * ``images``: float32 ``[3, crop_h, crop_w]`` normalized (0.0 in padding); GPU or CPU.
      * ``labels``: uint8 ``[crop_h, crop_w, 3]`` label colors at the same window (0 in padding);
        with a raw ``label_path`` (``"nvcomp"``, ``"zlib"``): uint8 ``[L]`` the PNG file's bytes, zero-padded to the
        longest file of the batch (``DALIGenericIterator`` needs one shape per batch).
      * ``windows``: int32 ``[2]`` ``(top, left)`` of the crop in image pixels (CPU).
      * ``shapes``: int32 ``[2]`` ``(height, width)`` of the full image (CPU), from the file's
        header as read now (the loader compares it with the size the split was scanned with).
      * ``label_shapes``: int32 ``[2]`` ``(height, width)`` of the label, from its header (CPU).
      * ``image_ids``, ``label_ids``: int32 ``[1]`` split index each reader read (CPU).
      * with geometric augmentation, ``labels`` are whole (uint8 ``[Hmax, Wmax, 3]`` colors,
        zero-padded to the batch's largest, or the PNG bytes as above), and
        ``scaled``: int32 ``[2]`` the drawn scaled (height, width) (CPU);
        ``flips``: int32 ``[1]``, 1 where the crop is mirrored (CPU).
    """
    from nvidia.dali import fn, pipeline_def, types

    crop_h, crop_w = config.crop_size
    files_img = [str(s.image) for s in samples]
    files_lbl = [str(s.label) for s in samples]
    ids = [s.index for s in samples]
    use_gpu = resolved.use_gpu
    raw_labels = resolved.label_path in RAW_LABEL_PATHS
    decode_device = "mixed" if use_gpu else "cpu"
    aug = config.augmentation
    # "error": without rescaling, a window outside a kept image is a bug that must not pad silently
    bounds = "pad" if config.small_image_policy == "pad" or aug.scale_range is not None else "error"
    reader_args = dict(
        labels=ids, random_shuffle=False, shuffle_after_epoch=shuffle, seed=config.seed,
        shard_id=resolved.shard_id, num_shards=resolved.num_shards,
        pad_last_batch=True,  # each epoch starts at its shard's start; no sample leaks across epochs
    )
    if shuffle:
        reader_args["shuffle_after_epoch_seed"] = config.seed  # one order for all shards

    @pipeline_def(batch_size=config.batch_size, num_threads=resolved.workers, device_id=resolved.cuda_device,
                  seed=resolved.window_seed, prefetch_queue_depth=resolved.prefetch, enable_checkpointing=True,
                  checkpoint=checkpoint)
    def voc_pipeline():
        if shards is None:
            jpegs, image_ids = fn.readers.file(files=files_img, name=IMAGE_READER, **reader_args)
            pngs, label_ids = fn.readers.file(files=files_lbl, name=LABEL_READER, **reader_args)
        else:  # one reader: image, label and index of a sample come together
            jpegs, pngs, image_ids = read_shards(shards, config, resolved, shuffle, IMAGE_READER, len(samples))
            label_ids = image_ids
        # Pixels as stored, on every path: EXIF orientation is ignored (labels are in stored-pixel
        # coordinates, and PIL, the reference decoder, does not apply it either).
        image_shape = fn.peek_image_shape(jpegs, dtype=types.INT32, adjust_orientation=False)  # [H, W, C]
        label_shape = fn.peek_image_shape(pngs, dtype=types.INT32, adjust_orientation=False)
        geometry = geometry_in_graph(image_shape, config)
        window = dict(crop_h=crop_h, crop_w=crop_w, crop_pos_y=geometry.crop_pos[0], crop_pos_x=geometry.crop_pos[1],
                      out_of_bounds_policy=bounds)
        decode_args = dict(device=decode_device, output_type=types.RGB, adjust_orientation=False)
        image_decode_args = dict(decode_args)
        if use_gpu:
            # The hardware decoder and the chroma upsampling are JPEG's: the image decoder gets the
            # resolved share, the PNG label decoder none (0.0; DALI's default would be 0.65).
            image_decode_args.update(hw_decoder_load=resolved.hw_decoder_load,
                                     jpeg_fancy_upsampling=config.jpeg_fancy_upsampling)
            decode_args["hw_decoder_load"] = 0.0
        images = fn.decoders.image(jpegs, **image_decode_args)
        image_window = window
        if geometry.roi is not None:  # resize only what the window shows (window_roi)
            roi = geometry.roi
            images = fn.resize(images, size=roi.size, roi_start=roi.roi_start, roi_end=roi.roi_end,
                               roi_relative=False, interp_type=types.INTERP_LINEAR, antialias=True)
            image_window = dict(window, crop_pos_y=roi.crop_pos[0], crop_pos_x=roi.crop_pos[1])
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW", mirror=geometry.flips,
            mean=[255.0 * m for m in IMAGENET_MEAN], std=[255.0 * s for s in IMAGENET_STD],
            fill_values=0.0, **image_window)
        if raw_labels:
            labels = fn.pad(pngs, fill_value=0)
        elif aug.geometric:  # whole: the label decoder resamples them (module docstring)
            labels = fn.pad(fn.decoders.image(pngs, **decode_args), axes=(0, 1), fill_value=0)
        else:
            labels = fn.decoders.image(pngs, **decode_args)
            labels = fn.crop(labels, fill_values=0, **window)
        windows, shapes, *augmented = geometry_outputs(geometry, config)
        label_shapes = label_shape[0:2]
        return (images, labels, windows, shapes, label_shapes, image_ids, label_ids, *augmented)

    return voc_pipeline()
