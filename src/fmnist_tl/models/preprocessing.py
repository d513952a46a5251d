"""What a backbone's pixels go through first, inside the saved model: resize, gray->RGB and the
network's own input scaling, as stock Keras layers (no Lambda: the model loads anywhere).

A `Preprocessing` is built from a registry row (config/backbones.py), whose `scaling` object
makes the normalisation layer, so no backbone name is switched on here.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from ..config.backbones import BackboneSpec, InputScaling

INPUT_SHAPE = (28, 28, 1)  # raw Fashion-MNIST pixels, 0..255: what every saved model takes


@dataclass(frozen=True)
class Preprocessing:
    size: int  # the side the 28x28 images are resized to
    method: str  # the resize's interpolation
    rgb: bool  # the network takes 3 channels: the gray one, repeated
    scaling: InputScaling

    @classmethod
    def for_backbone(cls, spec: BackboneSpec, size: int, method: str) -> Preprocessing:
        return cls(size, method, spec.rgb, spec.scaling)

    def model(self) -> keras.Model:
        """Raw pixels (N, 28, 28, 1) -> the backbone's input, as a sub-model "preprocess"."""
        inputs = keras.Input(INPUT_SHAPE, name="raw")
        x = inputs
        if self.size != INPUT_SHAPE[0]:
            x = layers.Resizing(self.size, self.size, interpolation=self.method, name="resize")(x)
        if self.rgb:
            x = layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
        x = self.scaling.layer()(x)
        return keras.Model(inputs, x, name="preprocess")
