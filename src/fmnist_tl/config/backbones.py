"""The backbone registry: one row of facts per architecture, and the names a config may use.

The config validates against these rows (sizes, which weights exist, the default unfreeze
layer) before any model is built, so the registry sits in the config layer; models/ builds a
network from a row and never special-cases a name. Adding a keras.applications network is one
row here: its constructor is named by `keras_app`, its input scaling is an object below. A
from-scratch architecture also needs its builder in models/scratch.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Rescale:
    """Pixels 0..255 to `x * scale + offset`, one factor for every channel."""

    scale: float
    offset: float = 0.0

    def layer(self) -> Any:
        from keras import layers

        return layers.Rescaling(self.scale, offset=self.offset, name="normalize")


@dataclass(frozen=True)
class SubtractMean:
    """keras.applications' "caffe" mode: minus the ImageNet mean of each channel (BGR order;
    after gray->RGB the three channels are equal, so the RGB->BGR flip is moot)."""

    mean: tuple[float, ...]

    def layer(self) -> Any:
        """x + (-mean), per channel: what Normalization(mean, variance=1) computes, bit for
        bit, with the means as constants of the graph (Normalization holds them as captured
        tensors, which the ONNX converter turns into extra model inputs)."""
        from keras import layers

        return layers.Rescaling(1.0, offset=[-m for m in self.mean], name="normalize")


InputScaling = Rescale | SubtractMean
TO_SYMMETRIC = Rescale(1 / 127.5, -1.0)  # [-1, 1], as MobileNetV2 was trained
TO_UNIT = Rescale(1 / 255.0)  # [0, 1], what our from-scratch models take
CAFFE = SubtractMean((103.939, 116.779, 123.68))  # ResNet50, VGG16


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    description: str
    default_size: int
    min_size: int
    scaling: InputScaling  # what the network expects its pixels scaled to
    rgb: bool  # ImageNet backbones expect 3 channels; ours take the gray image as is
    pretrained: bool  # whether `weights: imagenet` exists for it
    default_unfreeze: str | None
    keras_app: str | None = None  # attribute of keras.applications; None: models/scratch.py
    # Sizes with their own ImageNet weights; others load the 224 file (Keras warns).
    weight_sizes: tuple[int, ...] = ()
    weights_file: str | None = None  # "{size}" is filled in for MobileNetV2

    def imagenet_weights_file(self, size: int) -> str:
        """The file name keras.applications downloads for `weights="imagenet"` (no top)."""
        assert self.weights_file is not None
        file_size = size if size in self.weight_sizes else 224
        return self.weights_file.format(size=file_size)


_ROWS = (
    BackboneSpec(
        name="mobilenet_v2",
        description="MobileNetV2 (alpha 1.0) from keras.applications",
        default_size=96,
        min_size=32,
        scaling=TO_SYMMETRIC,
        rgb=True,
        pretrained=True,
        default_unfreeze="block_13",
        keras_app="MobileNetV2",
        weight_sizes=(96, 128, 160, 192, 224),
        weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
    ),
    BackboneSpec(
        name="resnet50",
        description="ResNet50 from keras.applications",
        default_size=224,
        min_size=32,
        scaling=CAFFE,
        rgb=True,
        pretrained=True,
        default_unfreeze="conv5_block1",
        keras_app="ResNet50",
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    BackboneSpec(
        name="vgg16",
        description="VGG16 from keras.applications",
        default_size=224,
        min_size=32,
        scaling=CAFFE,
        rgb=True,
        pretrained=True,
        default_unfreeze="block5_conv1",
        keras_app="VGG16",
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    BackboneSpec(
        name="cnn",
        description="conv blocks trained from scratch (model.cnn)",
        default_size=28,
        min_size=8,
        scaling=TO_UNIT,
        rgb=False,
        pretrained=False,
        default_unfreeze="block",
    ),
    BackboneSpec(
        name="dense",
        description="flatten + dense layers trained from scratch (model.dense)",
        default_size=28,
        min_size=1,
        scaling=TO_UNIT,
        rgb=False,
        pretrained=False,
        default_unfreeze="dense",
    ),
)
BACKBONES: dict[str, BackboneSpec] = {row.name: row for row in _ROWS}
# model.backbone's type: the registry's names, so a new row is a name the config takes.
BackboneName = Literal[tuple(BACKBONES)]  # type: ignore[valid-type]
