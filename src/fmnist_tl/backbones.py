"""Backbone registry: one row of facts per architecture, and the constructors.

Everything that differs between backbones lives in `BACKBONES`; the model builder and the
config validator read it and never special-case a name. Keras is imported lazily so that
validating a config stays fast.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import MissingFileError, first_line

Normalization = Literal["tf", "caffe", "unit"]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    description: str
    default_size: int
    min_size: int
    # "tf": [-1, 1] (MobileNetV2); "caffe": minus ImageNet BGR mean (ResNet50, VGG16);
    # "unit": [0, 1] (our from-scratch models).
    normalization: Normalization
    rgb: bool  # ImageNet backbones expect 3 channels; ours take the gray image as is
    pretrained: bool  # whether `weights: imagenet` exists for it
    default_unfreeze: str | None
    keras_app: str | None = None  # attribute of keras.applications
    # Sizes with their own ImageNet weights; others load the 224 file (Keras warns).
    weight_sizes: tuple[int, ...] = ()
    weights_file: str | None = None  # "{size}" is filled in for MobileNetV2


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        name="mobilenet_v2",
        description="MobileNetV2 (alpha 1.0) from keras.applications",
        default_size=96,
        min_size=32,
        normalization="tf",
        rgb=True,
        pretrained=True,
        default_unfreeze="block_13",
        keras_app="MobileNetV2",
        weight_sizes=(96, 128, 160, 192, 224),
        weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        description="ResNet50 from keras.applications",
        default_size=224,
        min_size=32,
        normalization="caffe",
        rgb=True,
        pretrained=True,
        default_unfreeze="conv5_block1",
        keras_app="ResNet50",
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "vgg16": BackboneSpec(
        name="vgg16",
        description="VGG16 from keras.applications",
        default_size=224,
        min_size=32,
        normalization="caffe",
        rgb=True,
        pretrained=True,
        default_unfreeze="block5_conv1",
        keras_app="VGG16",
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "cnn": BackboneSpec(
        name="cnn",
        description="conv blocks trained from scratch (model.cnn)",
        default_size=28,
        min_size=8,
        normalization="unit",
        rgb=False,
        pretrained=False,
        default_unfreeze="block",
    ),
    "dense": BackboneSpec(
        name="dense",
        description="flatten + dense layers trained from scratch (model.dense)",
        default_size=28,
        min_size=1,
        normalization="unit",
        rgb=False,
        pretrained=False,
        default_unfreeze="dense",
    ),
}

# ImageNet channel means in BGR order, as keras.applications' "caffe" preprocess_input uses.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def imagenet_weights_file(spec: BackboneSpec, size: int) -> str:
    """The file name keras.applications downloads for `weights="imagenet"` (no top)."""
    assert spec.weights_file is not None
    file_size = size if size in spec.weight_sizes else 224
    return spec.weights_file.format(size=file_size)


def build_backbone(spec: BackboneSpec, size: int, weights: str | None, model_cfg: Any) -> Any:
    """Build the headless backbone as a named sub-model taking preprocessed images."""
    import keras

    if spec.keras_app is not None:
        constructor = getattr(keras.applications, spec.keras_app)
        with _quiet_keras_app():
            return constructor(
                include_top=False,
                weights=weights,
                input_shape=(size, size, 3),
                name="backbone",
            )
    if spec.name == "cnn":
        return _cnn(size, model_cfg.cnn)
    return _dense(size, model_cfg.dense)


@contextlib.contextmanager
def _quiet_keras_app() -> Iterator[None]:
    """Keras's own words while it builds an application, held back unless verbose:

    - the UserWarning (with its source line) that MobileNetV2 at a size without its own
      ImageNet weights loads the 224 ones: a known fact of the registry (`weight_sizes`);
    - "Downloading data from https://..." and its bar: written out when the download
      succeeds, dropped when it fails, as the error then says which file to put where.
    """
    from . import tfenv

    if tfenv.verbose():
        yield
        return
    held = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(held):
        warnings.filterwarnings("ignore", message=".*input_shape. is undefined or non-square")
        yield
    sys.stdout.write(held.getvalue())  # not reached when the build fails


def _cnn(size: int, cfg: Any) -> Any:
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


def _dense(size: int, cfg: Any) -> Any:
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


def keras_models_dir() -> Path:
    """Where keras.applications caches weight files ($KERAS_HOME/models or ~/.keras/models)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def make_backbone(model_cfg: Any) -> tuple[Any, str, bool]:
    """Build the configured backbone; return (backbone, weights actually used, pretrained?).

    `weights: imagenet` goes through Keras's own download and cache. Offline, that fails:
    then either stop with a message saying which file to put where, or, when the config
    opts in with `allow_random_weights`, continue from random weights and say so loudly.
    """
    spec = BACKBONES[model_cfg.backbone]
    size = model_cfg.input_size
    weights = model_cfg.weights
    if weights == "none":
        return build_backbone(spec, size, None, model_cfg), "none (random init)", False
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise MissingFileError(
                f"model.weights: weights file {weights!r} {what}; give an existing "
                "weights file (.weights.h5 or .h5), 'imagenet' or 'none'"
            )
        backbone = build_backbone(spec, size, None, model_cfg)
        try:
            backbone.load_weights(str(path))
        except Exception as exc:  # h5py/Keras raise many types for a bad file
            raise MissingFileError(
                f"model.weights: cannot load {weights!r} into {spec.name} at {size}x{size}: "
                f"{first_line(exc)}"
            ) from None
        return backbone, f"file {path.resolve()}", True
    try:
        return build_backbone(spec, size, "imagenet", model_cfg), "imagenet", True
    except Exception as exc:  # Keras raises a bare Exception on URL fetch failure
        file = imagenet_weights_file(spec, size)
        reason = first_line(exc)
        if not model_cfg.allow_random_weights:
            raise MissingFileError(
                f"ImageNet weights for {spec.name} could not be loaded ({reason}); put "
                f"{file} in {keras_models_dir()}/, or set model.weights to 'none' (train "
                "from scratch) or to a local weights file, or set "
                "model.allow_random_weights=true to continue from random weights"
            ) from None
    print(
        f"WARNING: ImageNet weights for {spec.name} are unavailable ({file} not in "
        f"{keras_models_dir()}); continuing from RANDOM weights as model.allow_random_weights "
        "asks. Accuracy will NOT reflect transfer learning.",
        file=sys.stderr,
    )
    return (
        build_backbone(spec, size, None, model_cfg),
        "none (random init: ImageNet weights unavailable, allow_random_weights)",
        False,
    )
