"""A few training steps of a small segmentation net in TensorFlow, fed by the same loader:
``python -m dali_voc.examples.train_tf [--root R] [--backend dali|reference] [--steps N]``.

The loader yields ``tf.Tensor`` batches (``framework="tensorflow"``: NHWC float32 images, int32
labels, handed over through DLPack). The net is three Keras convolutions and a bilinear
upsampling; the loss is cross-entropy over the pixels whose label is not ``ignore_index`` (a
zero weight elsewhere); the validation mIoU comes from :mod:`dali_voc.metrics`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..metrics import confusion_matrix, mean_iou
from .train_jax import NUM_CLASSES, example_loaders, example_parser


def build_model(crop: tuple[int, int], classes: int = NUM_CLASSES):
    """Conv 3x3/2 (16), conv 3x3/2 (32), conv 1x1 (classes), bilinear upsampling x4: NHWC in, logits out."""
    import tensorflow as tf
    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input((crop[0], crop[1], 3)),
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(classes, 1),
        layers.UpSampling2D(4, interpolation="bilinear"),
    ])


def main(argv: Optional[Sequence[str]] = None) -> list[float]:
    import tensorflow as tf

    args = example_parser("train_tf", __doc__).parse_args(argv)
    train_iter, test_iter = example_loaders(args, "tensorflow")
    ignore = train_iter.config.ignore_index
    tf.random.set_seed(0)
    model = build_model(args.crop)
    optimizer = tf.keras.optimizers.SGD(args.lr)
    cross_entropy = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function
    def step(images, labels):
        valid = tf.cast(labels != ignore, tf.float32)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = cross_entropy(tf.where(labels == ignore, 0, labels), logits, sample_weight=valid)
            loss = loss / tf.maximum(tf.reduce_sum(valid), 1.0)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    losses: list[float] = []
    while len(losses) < args.steps:
        for images, labels in train_iter:
            if len(losses) == args.steps:
                continue  # finish the epoch
            losses.append(float(step(images, labels)))
            print(f"step {len(losses)}: loss {losses[-1]:.3f}")
    cm = torch.zeros((NUM_CLASSES, NUM_CLASSES), dtype=torch.int64)
    for images, labels in test_iter:
        pred = tf.argmax(model(images, training=False), axis=-1).numpy()
        cm += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(labels.numpy()), NUM_CLASSES, ignore)
    print(f"val mIoU {mean_iou(cm):.3f} ({int(cm.sum())} labelled pixels)")
    return losses


if __name__ == "__main__":
    main()
