"""Model assembly: raw pixels -> [augment] -> preprocess -> backbone -> head.

The saved model is self-contained: it takes raw 28x28x1 pixels (0..255) and resizes,
converts to RGB and normalises inside its own graph, with stock Keras layers only, so
`keras.models.load_model` needs neither a config nor `safe_mode=False`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

from .backbones import BACKBONES, CAFFE_MEAN_BGR, BackboneSpec, make_backbone
from .classes import NUM_CLASSES
from .config import Config
from .errors import ConfigError

INPUT_SHAPE = (28, 28, 1)


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
    augment = augmentation(config)
    x = augment(pixels) if augment is not None else pixels
    x = preprocessing(spec, m.input_size, m.resize_method)(x)
    # Keras 3 passes the outer `training` flag through nested models, overriding a
    # `training=False` given at construction; what keeps a pretrained backbone's BatchNorm
    # in inference mode is `trainable=False` on those layers (see set_backbone_trainable).
    x = backbone(x)
    features = _pooling(m.head.pooling, backbone.output.shape)(x)

    head_layers = _head_layers(config)
    model = keras.Model(pixels, _apply(head_layers, features), name=f"fmnist_{m.backbone}")
    feature_extractor = head = None
    if augment is None or mirror_views(config):  # a flip: features of both views (stage1.py)
        feature_extractor = keras.Model(pixels, features, name="feature_extractor")
        head = _head_model(head_layers, tuple(features.shape[1:]))
    return Built(model, backbone, feature_extractor, head, weights_used, pretrained)


def build_head(config: Config, feature_shape: tuple[int, ...]) -> keras.Model:
    """The head alone (pooled features -> probabilities), as `build_model` would build it.

    Its initial weights are the same as in a full build with the same seed, so a tuning trial
    that builds only the head trains exactly what `fmnist train` would train in stage 1.
    """
    return _head_model(_head_layers(config), feature_shape)


def head_of(model: keras.Model) -> keras.Model:
    """The head of a model built by `build_model` (or loaded from its .keras file), as a model
    on pooled features sharing its layers: the model on images is the head on the features."""
    names = [layer.name for layer in model.layers]
    pool = model.get_layer("head_pool")
    return _head_model(model.layers[names.index("head_pool") + 1 :], tuple(pool.output.shape[1:]))


def _head_layers(config: Config) -> list[layers.Layer]:
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


def _apply(head_layers: list[layers.Layer], t: Any) -> Any:
    for layer in head_layers:
        t = layer(t)
    return t


def _head_model(head_layers: list[layers.Layer], feature_shape: tuple[int, ...]) -> keras.Model:
    feat_in = keras.Input(feature_shape, name="features")
    return keras.Model(feat_in, _apply(head_layers, feat_in), name="head")


def mirror_views(config: Config) -> bool:
    """Whether the only augmentation is the random horizontal flip: a cache then keeps each
    image's and its mirror image's features or activations and draws one per epoch, the same
    distribution as flipping the image. Shifts and erasing have no finite set of views."""
    a = config.augment
    return a.flip and a.translate == 0 and a.erase == 0


def augmentation(config: Config) -> keras.Sequential | None:
    """Random flip/translation/erasing on the 28x28 image; identity at inference."""
    a, seed = config.augment, config.seed
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


def preprocessing(spec: BackboneSpec, size: int, method: str) -> keras.Model:
    """Resize, gray->RGB and the backbone's own input normalisation, as stock layers."""
    inputs = keras.Input(INPUT_SHAPE, name="raw")
    x = inputs
    if size != INPUT_SHAPE[0]:
        x = layers.Resizing(size, size, interpolation=method, name="resize")(x)
    if spec.rgb:
        x = layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
    if spec.normalization == "tf":  # MobileNetV2 expects [-1, 1]
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(x)
    elif spec.normalization == "caffe":
        # keras.applications' "caffe" mode flips RGB->BGR and subtracts the BGR means; the
        # three channels are equal after gray->RGB, so the flip is moot.
        x = layers.Normalization(
            mean=list(CAFFE_MEAN_BGR), variance=[1.0, 1.0, 1.0], name="normalize"
        )(x)
    else:  # our from-scratch models take [0, 1]
        x = layers.Rescaling(1 / 255.0, name="normalize")(x)
    return keras.Model(inputs, x, name="preprocess")


def _pooling(kind: str, shape: tuple[Any, ...]) -> layers.Layer:
    if len(shape) == 2:  # the dense backbone already outputs a vector
        return layers.Identity(name="head_pool")
    if kind == "avg":
        return layers.GlobalAveragePooling2D(name="head_pool")
    if kind == "max":
        return layers.GlobalMaxPooling2D(name="head_pool")
    return layers.Flatten(name="head_pool")


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


def set_backbone_trainable(backbone: keras.Model, trainable: bool, pretrained: bool) -> None:
    """Freeze or unfreeze the backbone; a pretrained one keeps its BatchNorm frozen.

    In Keras 3 a BN layer normalises with batch statistics only when `training` and
    `trainable` are both true, so BN layers with trainable=False keep their ImageNet moving
    statistics in every stage, even when the rest of the backbone trains.
    """
    backbone.trainable = trainable  # recursive: resets every sub-layer
    if pretrained:
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False


def unfreeze_from(backbone: keras.Model, prefix: str) -> int:
    """Make layers from the first one named `prefix...` on trainable; return its index.

    BatchNorm layers stay frozen: in Keras 3 a BN layer with trainable=False runs in
    inference mode, so its ImageNet moving statistics never move in stage 2.
    """
    names = [layer.name for layer in backbone.layers]
    start = next((i for i, n in enumerate(names) if n.startswith(prefix)), None)
    if start is None:
        raise ValueError(prefix)
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
    return start


def check_unfreeze_layer(backbone: keras.Model, prefix: str | None) -> None:
    """A ConfigError listing valid prefixes when no backbone layer starts with `prefix`."""
    names = [layer.name for layer in backbone.layers]
    if not prefix or not any(n.startswith(prefix) for n in names):
        raise ConfigError(
            f"finetune.unfreeze_from: no layer of the backbone starts with {prefix!r}; "
            f"valid prefixes: {', '.join(layer_prefixes(backbone))}"
        )


def layer_prefixes(backbone: keras.Model) -> list[str]:
    """Distinct block-level name prefixes (e.g. block_13, conv5_block1) for error messages."""
    seen: dict[str, None] = {}
    for layer in backbone.layers:
        parts = layer.name.split("_")
        key = "_".join(parts[:2]) if len(parts) > 2 else layer.name
        seen.setdefault(key, None)
    return list(seen)


def freeze_for_stage1(config: Config, built: Built) -> bool:
    """Freeze the backbone for stage 1 as configured; return whether it is frozen.

    A pretrained backbone is frozen and a from-scratch one trains whole, unless
    model.freeze_backbone says otherwise (a frozen random backbone outputs near-constant
    features: DESIGN.md).
    """
    m = config.model
    frozen = m.freeze_backbone if m.freeze_backbone is not None else built.pretrained
    set_backbone_trainable(built.backbone, not frozen, built.pretrained)
    return frozen
