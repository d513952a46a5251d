"""The from-scratch backbones: the seeds' conv blocks (`cnn`) and dense baseline (`dense`).

Each takes the input side and its config section (model.cnn, model.dense) and returns the
headless network as a sub-model named "backbone", taking the preprocessed gray image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def cnn(size: int, cfg: Any) -> Any:
    """Conv blocks (conv-[BN]-relu x N, [max-pool], dropout), the seeds' scratch CNN family."""
    import keras
    from keras import layers

    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    inputs = keras.Input((size, size, 1))
    x = inputs
    blocks = zip(cfg.filters, cfg.block_convs(), cfg.block_pools(), strict=True)
    for b, (filters, convs, pool) in enumerate(blocks, start=1):
        for c in range(1, convs + 1):
            name = f"block{b}_conv{c}"
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=not cfg.batch_norm,
                kernel_regularizer=reg,
                name=name,
            )(x)
            if cfg.batch_norm:
                x = layers.BatchNormalization(name=f"{name}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_relu")(x)
        if pool and min(x.shape[1], x.shape[2]) >= 2:
            x = layers.MaxPooling2D(name=f"block{b}_pool")(x)
        if cfg.dropout > 0:
            x = layers.Dropout(cfg.dropout, name=f"block{b}_dropout")(x)
    return keras.Model(inputs, x, name="backbone")


def dense(size: int, cfg: Any) -> Any:
    """Flatten + dense layers: the seeds' fully connected baseline."""
    import keras
    from keras import layers

    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    inputs = keras.Input((size, size, 1))
    x = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(cfg.units, start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"dense{i}")(x)
        if cfg.dropout > 0:
            x = layers.Dropout(cfg.dropout, name=f"dense{i}_dropout")(x)
    return keras.Model(inputs, x, name="backbone")


# The registry row's name -> its builder (a row without keras_app is built here).
SCRATCH: dict[str, Callable[[int, Any], Any]] = {"cnn": cnn, "dense": dense}
