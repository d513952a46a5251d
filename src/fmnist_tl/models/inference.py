"""Batched inference over raw images: the one way features and predictions are computed.

A plain loop over a `tf.function` of the model, not `model.predict`: on 2 CPU cores,
MobileNetV2 at 96x96 ran 1.3-2x faster this way at the same batch size (predict adds
per-batch callback and output-gathering overhead). Each batch of 128 runs as two independent
halves of 64 in one graph: TensorFlow runs the two op chains side by side, which fills the
core time that MobileNetV2's small depthwise convs leave idle (1.9 vs 1.75 cores busy,
identical outputs; scripts/bench_frozen.py, README).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from .. import progress

INFER_BATCH = 128
BRANCHES = 2  # independent halves per batch


def graph_step(model: keras.Model, shape: tuple[int, ...]) -> Any:
    """`model(batch, training=False)` as one `tf.function` over float32 batches of images of
    `shape` and any size, each run as `BRANCHES` independent parts (module docstring)."""
    import tensorflow as tf

    def halves(b: tf.Tensor) -> tf.Tensor:
        n = tf.shape(b)[0]
        # A last batch of one image would leave a branch empty, which BatchNorm rejects:
        # run it twice and keep one copy.
        b = tf.cond(n < BRANCHES, lambda: tf.repeat(b, BRANCHES, axis=0), lambda: b)
        m = tf.shape(b)[0]
        cuts = [m * i // BRANCHES for i in range(BRANCHES + 1)]
        parts = [b[lo:hi] for lo, hi in zip(cuts, cuts[1:], strict=False)]
        return tf.concat([model(p, training=False) for p in parts], axis=0)[:n]

    # One trace for every batch size (the last batch is smaller): tracing costs seconds.
    spec = tf.TensorSpec((None, *shape), tf.float32)
    return tf.function(halves, input_signature=[spec])


def infer(
    model: keras.Model, x: np.ndarray, batch_size: int = INFER_BATCH, *, label: str | None = None
) -> np.ndarray:
    """`model(x, training=False)` in batches, as float32 numpy; `x` is uint8 or float pixels.

    With `label`, a progress bar of that name counts the images (on a terminal only).
    """
    import tensorflow as tf

    if len(x) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    step = graph_step(model, x.shape[1:])
    ds = (
        tf.data.Dataset.from_tensor_slices(x)
        .batch(batch_size)
        .map(lambda b: tf.cast(b, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    if label is None:
        return np.concatenate([np.asarray(step(b), dtype=np.float32) for b in ds])
    outputs = []
    with progress.task(label, len(x)) as advance:
        for b in ds:
            outputs.append(np.asarray(step(b), dtype=np.float32))
            advance(len(outputs[-1]))
    return np.concatenate(outputs)
