"""The tf.data pipeline a fit reads, and the mirror images the flip's views are made of.

Arrays stay uint8 (or cached float16 features/activations) in memory and are cast per batch:
the model resizes and normalises inside its own graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class Rows:
    """Rows `index` of a memory-mapped cache (`view`: one view of each, else all of them),
    read batch by batch: a large activation cache is never copied into the process whole."""

    base: np.ndarray  # np.load(..., mmap_mode="r")
    index: np.ndarray
    view: int | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        rest = self.base.shape[1:] if self.view is None else self.base.shape[2:]
        return (len(self.index), *rest)

    def take(self, i: np.ndarray) -> np.ndarray:
        """Rows `self.index[i]`, in that order, as an in-memory array."""
        rows = self.base[self.index[i]]
        return rows if self.view is None else rows[:, self.view]


def mirror(x: np.ndarray) -> np.ndarray:
    """The mirror images (left-right) of a batch of images (N, H, W[, C]), contiguous."""
    return np.ascontiguousarray(x[:, :, ::-1])


def make_dataset(
    x: np.ndarray | Rows,
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
    `x` as `Rows`: the dataset holds row numbers and reads each batch's rows from the mapped
    file; shuffled with the same seed, the batches are the same as from the array in memory.
    """
    import tensorflow as tf

    rows = np.arange(len(x)) if isinstance(x, Rows) else x
    ds = tf.data.Dataset.from_tensor_slices((rows, y))
    if shuffle:
        ds = ds.shuffle(max(len(x), 1), seed=seed, reshuffle_each_iteration=True)

    def finish(a: tf.Tensor, b: tf.Tensor, draw: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        """One batch: its rows read from the mapped file, one view drawn, cast to float32."""
        if isinstance(x, Rows):
            a = tf.numpy_function(x.take, [a], tf.as_dtype(x.base.dtype))
            a = tf.ensure_shape(a, (None, *x.shape[1:]))
        if draw is not None:
            a = tf.gather(a, draw % x.shape[1], axis=1, batch_dims=1)
        return tf.cast(a, tf.float32), b

    if views:
        # seed + 3: apart from the augmentation layers' seeds (seed .. seed + 2).
        draws = tf.data.Dataset.random(seed=seed + 3, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, draws).batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(lambda ab, r: finish(*ab, r), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(lambda a, b: finish(a, b, None), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
