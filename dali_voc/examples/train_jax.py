"""A few training steps of a small segmentation net in JAX, fed by the same loader:
``python -m dali_voc.examples.train_jax [--root R] [--backend dali|reference] [--steps N]``.

The loader yields ``jax.Array`` batches (``framework="jax"``: NHWC float32 images, int32
labels, on the device the loader produced them on, no copy). The net is three convolutions and
a bilinear upsampling, written with ``jax.lax`` only; the loss is cross-entropy over the pixels
whose label is not ``ignore_index``; the validation mIoU comes from :mod:`dali_voc.metrics`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..cli import parse_crop
from ..metrics import confusion_matrix, mean_iou

NUM_CLASSES = 21


def init_params(seed: int, classes: int = NUM_CLASSES) -> dict:
    """He-initialised weights (HWIO) of conv 3x3/2 (3->16), conv 3x3/2 (16->32), conv 1x1 (32->classes)."""
    import jax
    import jax.numpy as jnp
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    shapes = [(3, 3, 3, 16), (3, 3, 16, 32), (1, 1, 32, classes)]
    return {f"w{k}": jax.random.normal(key, shape) * jnp.sqrt(2.0 / np.prod(shape[:3]))
            for k, (key, shape) in enumerate(zip(keys, shapes))}


def forward(params: dict, images):
    """Logits ``[B, H, W, classes]`` for NHWC ``images``."""
    import jax
    from jax import lax
    dims = ("NHWC", "HWIO", "NHWC")
    x = jax.nn.relu(lax.conv_general_dilated(images, params["w0"], (2, 2), "SAME", dimension_numbers=dims))
    x = jax.nn.relu(lax.conv_general_dilated(x, params["w1"], (2, 2), "SAME", dimension_numbers=dims))
    x = lax.conv_general_dilated(x, params["w2"], (1, 1), "SAME", dimension_numbers=dims)
    batch, height, width, _ = images.shape
    return jax.image.resize(x, (batch, height, width, x.shape[-1]), "bilinear")


def loss_fn(params: dict, images, labels, ignore_index: int):
    """Mean cross-entropy over the pixels whose label is a class."""
    import jax
    import jax.numpy as jnp
    logits = forward(params, images)
    valid = labels != ignore_index
    picked = jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return -(picked * valid).sum() / jnp.maximum(valid.sum(), 1)


def main(argv: Optional[Sequence[str]] = None) -> list[float]:
    import jax

    args = example_parser("train_jax", __doc__).parse_args(argv)
    train_iter, test_iter = example_loaders(args, "jax")
    ignore = train_iter.config.ignore_index
    params = init_params(0)
    step = jax.jit(jax.value_and_grad(loss_fn), static_argnums=3)
    losses: list[float] = []
    while len(losses) < args.steps:
        for images, labels in train_iter:
            if len(losses) == args.steps:
                continue  # finish the epoch
            loss, grads = step(params, images, labels, ignore)
            params = jax.tree_util.tree_map(lambda w, g: w - args.lr * g, params, grads)
            losses.append(float(loss))
            print(f"step {len(losses)}: loss {losses[-1]:.3f}")
    cm = torch.zeros((NUM_CLASSES, NUM_CLASSES), dtype=torch.int64)
    for images, labels in test_iter:
        pred = np.array(forward(params, images).argmax(-1))  # copies: JAX's host buffers are read-only
        cm += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(np.array(labels)), NUM_CLASSES, ignore)
    print(f"val mIoU {mean_iou(cm):.3f} ({int(cm.sum())} labelled pixels)")
    return losses


def example_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The command line the small framework examples share."""
    p = argparse.ArgumentParser(prog=f"python -m dali_voc.examples.{name}", description=doc.splitlines()[0])
    p.add_argument("--root", type=Path, default=None, help="a VOC tree (default: the demo's synthetic tree)")
    p.add_argument("--backend", choices=("auto", "dali", "reference"), default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=parse_crop, default=(320, 480), help="HxW, multiples of 4")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=None)
    return p


def example_loaders(args: argparse.Namespace, framework: str):
    """``(train_iter, test_iter)`` of the examples' arguments, as ``framework`` batches."""
    from .. import load_data_voc
    return load_data_voc(args.batch_size, args.crop, root=args.root or _demo_tree(), backend=args.backend,
                         framework=framework, void_label="ignore", num_workers=args.workers)


def _demo_tree() -> Path:
    from ..cli import DEMO_ROOT, DEMO_SPEC
    from ..tools.synth import SynthSpec, synthesize_voc
    synthesize_voc(DEMO_ROOT, SynthSpec(**DEMO_SPEC))
    return DEMO_ROOT


if __name__ == "__main__":
    main()
