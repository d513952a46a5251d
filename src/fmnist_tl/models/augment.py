"""Augmentation on the 28x28 image, inside the model: random while training, identity after."""

from __future__ import annotations

import keras
from keras import layers

from ..config import AugmentConfig


def augmentation(augment: AugmentConfig, seed: int) -> keras.Sequential | None:
    """Random flip/translation/erasing as augment asks, seeded; None when it asks for none."""
    a = augment
    steps: list[layers.Layer] = []
    if a.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed, name="aug_flip"))
    if a.translate > 0:
        # Fashion-MNIST's background is 0: fill shifted-in pixels with it, not a reflection.
        steps.append(
            layers.RandomTranslation(
                a.translate,
                a.translate,
                fill_mode="constant",
                fill_value=0.0,
                seed=seed + 1,
                name="aug_translate",
            )
        )
    if a.erase > 0:
        steps.append(
            layers.RandomErasing(
                factor=a.erase,
                scale=(0.02, a.erase_area),
                value_range=(0, 255),
                seed=seed + 2,
                name="aug_erase",
            )
        )
    return keras.Sequential(steps, name="augment") if steps else None
