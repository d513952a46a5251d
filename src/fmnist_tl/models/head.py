"""The classifier head: pooling over the backbone's map, [Dense(relu)], [dropout], softmax.

The head's layers are shared between the full model and a model on pooled features, so
training the head on cached features trains the full model's head in place.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from ..classes import NUM_CLASSES
from ..config import Config

POOL = "head_pool"  # the first head layer: everything after the backbone starts here
PREFIXES = ("head_", "predictions")  # every head layer's name starts with one of these


def head_layers(config: Config) -> list[layers.Layer]:
    """Dense(relu) + dropout + softmax; initialisers seeded, so build order does not matter."""
    # seed + 10/11: apart from the seeds augmentation (seed..seed+2) and dropout (seed) use.
    m, seed = config.model, config.seed
    head: list[layers.Layer] = []
    if m.head.units > 0:
        head.append(
            layers.Dense(
                m.head.units,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 10),
                name="head_dense",
            )
        )
    if m.head.dropout > 0:
        head.append(layers.Dropout(m.head.dropout, seed=seed, name="head_dropout"))
    # Softmax in float32 even under mixed precision, for a stable loss.
    head.append(
        layers.Dense(
            NUM_CLASSES,
            activation="softmax",
            dtype="float32",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 11),
            name="predictions",
        )
    )
    return head


def pooling(kind: str, shape: tuple[Any, ...]) -> layers.Layer:
    """The head's first layer, over the backbone's output of `shape`."""
    if len(shape) == 2:  # the dense backbone already outputs a vector
        return layers.Identity(name=POOL)
    if kind == "avg":
        return layers.GlobalAveragePooling2D(name=POOL)
    if kind == "max":
        return layers.GlobalMaxPooling2D(name=POOL)
    return layers.Flatten(name=POOL)


def apply(stack: list[layers.Layer], t: Any) -> Any:
    for layer in stack:
        t = layer(t)
    return t


def head_model(stack: list[layers.Layer], feature_shape: tuple[int, ...]) -> keras.Model:
    """The layers as a model on pooled features (N, *feature_shape) -> probabilities."""
    feat_in = keras.Input(feature_shape, name="features")
    return keras.Model(feat_in, apply(stack, feat_in), name="head")


def build_head(config: Config, feature_shape: tuple[int, ...]) -> keras.Model:
    """The head alone (pooled features -> probabilities), as `build_model` would build it.

    Its initial weights are the same as in a full build with the same seed, so a tuning trial
    that builds only the head trains exactly what `fmnist train` would train in stage 1.
    """
    return head_model(head_layers(config), feature_shape)


def head_of(model: keras.Model) -> keras.Model:
    """The head of a model built by `build_model` (or loaded from its .keras file), as a model
    on pooled features sharing its layers: the model on images is the head on the features."""
    names = [layer.name for layer in model.layers]
    pool = model.get_layer(POOL)
    return head_model(model.layers[names.index(POOL) + 1 :], tuple(pool.output.shape[1:]))


def layers_from_pool(model: keras.Model) -> list[layers.Layer]:
    """The head's layers of a built or loaded model, pooling first."""
    names = [layer.name for layer in model.layers]
    return model.layers[names.index(POOL) :]
