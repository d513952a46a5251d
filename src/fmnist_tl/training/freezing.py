"""Which backbone layers train in which stage: training's policy over a built model.

Stage 1 freezes a pretrained backbone (a from-scratch one trains whole); stage 2 unfreezes
from a named layer. BatchNorm layers of a pretrained backbone stay frozen in both: in Keras 3
a BN layer normalises with batch statistics only when `training` and `trainable` are both
true, so BN layers with trainable=False keep their ImageNet moving statistics in every stage.
"""

from __future__ import annotations

import keras
from keras import layers

from ..config import Config
from ..errors import ConfigError
from ..models.assembly import Built


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
    features: docs/design.md).
    """
    frozen = frozen_in_stage1(config, built)
    set_backbone_trainable(built.backbone, not frozen, built.pretrained)
    return frozen


def frozen_in_stage1(config: Config, built: Built) -> bool:
    """Whether stage 1 freezes the backbone (freeze_for_stage1's rule, without freezing)."""
    m = config.model
    return m.freeze_backbone if m.freeze_backbone is not None else built.pretrained
