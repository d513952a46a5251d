"""Model assembly: raw pixels -> [augment] -> preprocess -> backbone -> head.

The saved model is self-contained: it takes raw 28x28x1 pixels (0..255) and resizes,
converts to RGB and normalises inside its own graph, with stock Keras layers only, so
`keras.models.load_model` needs neither a config nor `safe_mode=False`. Which layers train in
which stage is training's policy (training/freezing.py), not the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from ..config import Config
from ..config.backbones import BACKBONES
from .augment import augmentation
from .backbones import make_backbone
from .head import apply, head_layers, head_model, pooling
from .preprocessing import INPUT_SHAPE, Preprocessing


@dataclass
class Built:
    """The assembled model and the pieces the trainer needs."""

    model: keras.Model
    backbone: keras.Model
    # Raw pixels -> pooled features, and pooled features -> probabilities. Both share
    # their layers with `model`, so training `head` trains the model's head in place.
    # None when the model augments with more than a flip (features would differ every epoch);
    # the extractor runs in inference mode, so it never augments.
    feature_extractor: keras.Model | None
    head: keras.Model | None
    weights_used: str
    pretrained: bool  # whether the backbone actually holds trained weights


def build_model(config: Config) -> Built:
    """Build the full model for `config` (weights resolved by `make_backbone`)."""
    m = config.model
    spec = BACKBONES[m.backbone]
    backbone, weights_used, pretrained = make_backbone(m)
    if not pretrained:
        _fast_batchnorm(backbone)

    pixels = keras.Input(INPUT_SHAPE, name="pixels")
    augment = augmentation(config.augment, config.seed)
    x = augment(pixels) if augment is not None else pixels
    x = Preprocessing.for_backbone(spec, m.input_size, m.resize_method).model()(x)
    # Keras 3 passes the outer `training` flag through nested models, overriding a
    # `training=False` given at construction; what keeps a pretrained backbone's BatchNorm
    # in inference mode is `trainable=False` on those layers (training/freezing.py).
    x = backbone(x)
    features = pooling(m.head.pooling, backbone.output.shape)(x)

    stack = head_layers(config)
    model = keras.Model(pixels, apply(stack, features), name=f"fmnist_{m.backbone}")
    feature_extractor = head = None
    if augment is None or config.augment.mirror_views:  # a flip: features of both views
        feature_extractor = keras.Model(pixels, features, name="feature_extractor")
        head = head_model(stack, tuple(features.shape[1:]))
    return Built(model, backbone, feature_extractor, head, weights_used, pretrained)


def find_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone of a built or loaded model (named "backbone" by construction)."""
    return model.get_layer("backbone")


def _fast_batchnorm(backbone: keras.Model) -> None:
    """Let a from-scratch backbone's BatchNorm statistics settle within a short run.

    keras.applications builds MobileNetV2 with momentum 0.999: after a few hundred steps its
    moving statistics are still near their initial 0/1, and inference-mode accuracy stays at
    chance while training accuracy climbs (measured: 0.82 train vs 0.10 validation).
    """
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.9
