"""A few training steps of a small segmentation net in MXNet Gluon, fed by the same loader:
``python -m dali_voc.examples.train_mxnet [--root R] [--backend dali|reference] [--steps N]``.

The loader yields ``mxnet.numpy.ndarray`` batches (``framework="mxnet"``: NCHW float32 images,
int32 labels, on the CPU, handed over through DLPack without a copy), used in MXNet's NumPy mode
(``npx.set_np()``), as the textbook's MXNet chapter does. The net is two strided convolutions, a
1x1 classifier and a transposed convolution initialised to bilinear upsampling (x4), hybridized;
the loss is Gluon's ``SoftmaxCrossEntropyLoss`` over the class axis, weighted 0 where the label is
``ignore_index``; the validation mIoU comes from :mod:`dali_voc.metrics`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from ..metrics import confusion_matrix, mean_iou
from .train_jax import NUM_CLASSES, example_loaders, example_parser


def build_net(classes: int = NUM_CLASSES) -> Any:
    """Conv 3x3/2 (16), conv 3x3/2 (32), conv 1x1 (classes), transposed conv 8x8/4 (bilinear):
    NCHW images ``[B, 3, H, W]`` (H, W multiples of 4) in, logits ``[B, classes, H, W]`` out."""
    import mxnet as mx
    from mxnet.gluon import nn
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, strides=2, padding=1, activation="relu"),
            nn.Conv2D(32, 3, strides=2, padding=1, activation="relu"),
            nn.Conv2D(classes, 1),
            nn.Conv2DTranspose(classes, 8, strides=4, padding=2, weight_initializer=mx.init.Bilinear()))
    return net


def masked_loss(loss_fn: Any, logits: Any, labels: Any, ignore_index: int) -> Any:
    """Mean cross-entropy over the pixels whose label is a class (a scalar ``mxnet.np`` array).

    ``SoftmaxCrossEntropyLoss`` has no ignore index: ignored pixels get weight 0 (their label is
    clipped into the class range by ``pick``, then multiplied away), and the per-sample means it
    returns are rescaled to a mean over the valid pixels."""
    from mxnet import np
    valid = (labels != ignore_index).astype("float32")
    per_sample = loss_fn(logits, labels, np.expand_dims(valid, 1))  # [B]: mean over the H*W pixels
    pixels = labels.shape[1] * labels.shape[2]
    return per_sample.sum() * pixels / valid.sum().clip(1, None)


def main(argv: Optional[Sequence[str]] = None) -> list[float]:
    import mxnet as mx
    from mxnet import autograd, gluon, npx

    npx.set_np()  # the loader's arrays are mxnet.numpy arrays: Gluon's NumPy mode
    args = example_parser("train_mxnet", __doc__).parse_args(argv)
    train_iter, test_iter = example_loaders(args, "mxnet")
    ignore = train_iter.config.ignore_index
    mx.random.seed(0)
    net = build_net()
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": args.lr})
    losses: list[float] = []
    while len(losses) < args.steps:
        for images, labels in train_iter:
            if len(losses) == args.steps:
                continue  # finish the epoch
            with autograd.record():
                loss = masked_loss(loss_fn, net(images), labels, ignore)
            loss.backward()
            trainer.step(1)  # the loss is already a mean
            losses.append(float(loss))
            print(f"step {len(losses)}: loss {losses[-1]:.3f}")
    cm = torch.zeros((NUM_CLASSES, NUM_CLASSES), dtype=torch.int64)
    for images, labels in test_iter:
        pred = net(images).argmax(axis=1).asnumpy()
        cm += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(labels.asnumpy()), NUM_CLASSES, ignore)
    print(f"val mIoU {mean_iou(cm):.3f} ({int(cm.sum())} labelled pixels)")
    return losses


if __name__ == "__main__":
    main()
