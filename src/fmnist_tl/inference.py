"""Batched inference over raw images: the one way features and predictions are computed.

A plain loop over a `tf.function` of the model, not `model.predict`: on 2 CPU cores,
MobileNetV2 at 96x96 ran 1.3-2x faster this way at the same batch size (predict adds
per-batch callback and output-gathering overhead), and batches of 64 beat 256 (large
activations spill out of cache). Measured with scripts/bench_frozen.py; see the README.
"""

from __future__ import annotations

import keras
import numpy as np

INFER_BATCH = 64


def infer(model: keras.Model, x: np.ndarray, batch_size: int = INFER_BATCH) -> np.ndarray:
    """`model(x, training=False)` in batches, as float32 numpy; `x` is uint8 or float pixels."""
    import tensorflow as tf

    if len(x) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    # One trace for every batch size (the last batch is smaller): tracing costs seconds.
    spec = tf.TensorSpec((None, *x.shape[1:]), tf.float32)
    step = tf.function(lambda b: model(b, training=False), input_signature=[spec])
    ds = (
        tf.data.Dataset.from_tensor_slices(x)
        .batch(batch_size)
        .map(lambda b: tf.cast(b, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return np.concatenate([np.asarray(step(b), dtype=np.float32) for b in ds])
