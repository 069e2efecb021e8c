"""Batches for JAX, TensorFlow and MXNet: the torch tensors the loaders make, handed over
through DLPack on the same device, without a copy.

The contract per framework (both loaders produce their tensors on torch's current stream):

* **JAX**: ``jax.dlpack.from_dlpack(tensor)``. JAX asks the tensor for a capsule on JAX's own
  stream (``__dlpack__(stream=...)``), and torch makes that stream wait for its own: no host
  synchronisation, nothing copied.
* **TensorFlow**: ``tf.experimental.dlpack.from_dlpack(capsule)`` takes no stream, so on the GPU
  torch's current stream is synchronised before the capsule is handed over (once per batch).
  On the CPU nothing waits.
* **MXNet** (CPU only, see :mod:`dali_voc.resolve`): ``mx.nd.from_dlpack(capsule)``, then
  ``as_np_ndarray()``, a second handle on the same memory: ``mxnet.numpy.ndarray``, the array
  type of MXNet's NumPy interface (``npx.set_np()``), which the textbook's MXNet chapter uses and
  MXNet 2 made the default (``.as_nd_ndarray()`` gives the legacy ``NDArray``, again without a
  copy). MXNet 1.9's DLPack has no bool: bool tensors (``Batch.flips``) are handed over as
  uint8 0/1, reinterpreted in place.

Images in ``NHWC`` are made by one transposing copy on the batch's device before the hand-over.
Labels keep ``[B, H, W]`` in the resolved label dtype (int32 by default for all three).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..batch import Batch
from ..resolve import Resolved


def _to_jax(tensor: torch.Tensor) -> Any:
    import jax.dlpack
    return jax.dlpack.from_dlpack(tensor.contiguous())


def _to_tensorflow(tensor: torch.Tensor) -> Any:
    import tensorflow as tf
    if tensor.is_cuda:
        torch.cuda.current_stream(tensor.device).synchronize()  # TF's from_dlpack takes no stream
    return tf.experimental.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(tensor.contiguous()))


def _to_mxnet(tensor: torch.Tensor) -> Any:
    import mxnet as mx
    if tensor.dtype == torch.bool:
        tensor = tensor.view(torch.uint8)  # same bytes: MXNet 1.9 refuses DLPack's bool type
    return mx.nd.from_dlpack(torch.utils.dlpack.to_dlpack(tensor.contiguous())).as_np_ndarray()


def batch_converter(resolved: Resolved, meta: bool) -> Callable[[Batch], Any]:
    """What a loader yields for each :class:`~dali_voc.loaders.base.Batch`: ``(X, Y)`` or the
    whole ``Batch`` (``meta``), in ``resolved``'s framework and image layout."""
    to_framework: Callable[[torch.Tensor], Any] = {"torch": lambda t: t, "jax": _to_jax, "tensorflow": _to_tensorflow,
                                                   "mxnet": _to_mxnet}[resolved.framework]
    nhwc = resolved.layout == "NHWC"

    def convert(batch: Batch) -> Any:
        images = batch.images.permute(0, 2, 3, 1).contiguous() if nhwc else batch.images
        if meta:
            return Batch(*(to_framework(t) for t in (images,) + tuple(batch[1:])))
        return to_framework(images), to_framework(batch.labels)

    return convert
