"""The tf.data pipeline a fit reads, and the mirror images the flip's views are made of.

Arrays stay uint8 (or cached float16 features/activations) in memory and are cast per batch:
the model resizes and normalises inside its own graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


def mirror(x: np.ndarray) -> np.ndarray:
    """The mirror images (left-right) of a batch of images (N, H, W[, C]), contiguous."""
    return np.ascontiguousarray(x[:, :, ::-1])


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_remainder: bool = False,
    views: bool = False,
) -> tf.data.Dataset:
    """uint8 in memory, float32 (0..255) per batch: the model resizes and normalises itself.

    `views`: axis 1 of `x` holds views of each example (cached activations or features of an
    image and of its mirror image); each epoch draws one per example, uniformly, from a
    seeded stream that differs from epoch to epoch, as a random flip of the images would.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(max(len(x), 1), seed=seed, reshuffle_each_iteration=True)
    if views:
        n_views = x.shape[1]
        # seed + 3: apart from the augmentation layers' seeds (seed .. seed + 2).
        draws = tf.data.Dataset.random(seed=seed + 3, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, draws).batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(
            lambda xy, r: (tf.gather(xy[0], r % n_views, axis=1, batch_dims=1), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
