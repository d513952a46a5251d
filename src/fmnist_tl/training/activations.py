"""Stage 2 on cached activations of the frozen bottom of the backbone.

Stage 2 unfreezes the backbone from a layer L. The layers before L stay frozen (BatchNorm in
inference mode), so when nothing random runs before L they compute the same tensor for every
image in every epoch. That tensor is computed once, cached, and the top of the model (L
onward plus the head) trains on it: the same optimisation as streaming images, without
re-running the frozen bottom every epoch.

The cut sits where the backbone's graph passes a single tensor (a MobileNetV2 block's input, a
ResNet50 stage or block boundary where the skip connections have merged, between VGG16's conv
blocks). A layer named inside a block moves the cut to the nearest such point before it; the
layers between run frozen inside the top, so the result is the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers

from ..models.assembly import find_backbone
from ..models.frozen import KERAS
from ..models.head import layers_from_pool

# Layers that are random while training: before the cut they would make a cache wrong.
RANDOM_LAYERS = (
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.AlphaDropout,
)


@dataclass(frozen=True)
class Cut:
    """A single-tensor point in the backbone: `layer` is the first layer after it."""

    layer: str  # the first layer of the top part
    producer: str  # the layer whose output is the one tensor crossing the cut
    requested: str  # the first layer that finetune.unfreeze_from names

    @property
    def moved(self) -> bool:
        return self.layer != self.requested


def _producers(layer_config: dict[str, Any]) -> list[str]:
    """Names of the layers whose outputs this layer's inbound nodes consume."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "__keras_tensor__":
                found.append(node["config"]["keras_history"][0])
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(layer_config.get("inbound_nodes", []))
    return found


def find_cut(backbone: keras.Model, prefix: str) -> Cut:
    """The nearest single-tensor point at or before the first layer named `prefix...`."""
    configs = backbone.get_config()["layers"]
    names = [c["name"] for c in configs]
    index = {n: i for i, n in enumerate(names)}
    consumers = {c["name"]: _producers(c) for c in configs}
    start = next(i for i, n in enumerate(names) if n.startswith(prefix))
    for i in range(start, 0, -1):
        crossing = {p for n in names[i:] for p in consumers[n] if index[p] < i}
        if len(crossing) == 1:
            return Cut(names[i], crossing.pop(), names[start])
    return Cut(names[1], names[0], names[start])  # the input itself: nothing is frozen below


@dataclass
class Parts:
    """The full model cut in two; every part shares its layers (and weights) with `model`."""

    bottom: keras.Model  # raw pixels -> the activations at the cut (frozen in stage 2)
    top: keras.Model  # activations -> probabilities: what stage 2 trains on the cache
    # activations -> pooled features: with `bottom`, one pass over the backbone gives stage 1's
    # features and stage 2's activations.
    features: keras.Model


def split_model(model: keras.Model, cut: Cut) -> Parts:
    """Cut a model built by `build_model` (or loaded from its .keras file) at `cut`."""
    backbone = find_backbone(model)
    at = backbone.get_layer(cut.producer).output
    backbone_bottom = keras.Model(backbone.input, at, name="backbone_bottom")
    backbone_top = keras.Model(at, backbone.output, name="backbone_top")
    head_layers = layers_from_pool(model)
    pixels = keras.Input(model.input_shape[1:], name="pixels")
    bottom = keras.Model(pixels, backbone_bottom(model.get_layer("preprocess")(pixels)))
    cached = keras.Input(tuple(at.shape[1:]), name="activations")
    pooled = head_layers[0](backbone_top(cached))
    y = pooled
    for layer in head_layers[1:]:
        y = layer(y)
    top = keras.Model(cached, y, name="top")
    return Parts(bottom, top, keras.Model(cached, pooled, name="top_features"))


def random_before_cut(model: keras.Model, cut: Cut, *, mirror_views: bool = False) -> str | None:
    """The first random layer (augmentation, dropout) that runs before the cut, if any.

    `mirror_views`: the augmentation is a flip alone, which the cache's mirror views stand in
    for; only the backbone's own random layers then count."""
    if not mirror_views and any(layer.name == "augment" for layer in model.layers):
        return "augment"
    backbone = find_backbone(model)
    for layer in backbone.layers:
        if layer.name == cut.layer:
            return None
        if isinstance(layer, RANDOM_LAYERS):
            return layer.name
    return None


def cache_key(
    bottom: keras.Model, x: np.ndarray, cut: Cut, dtype: str, mirror: bool, made_by: str = KERAS
) -> str:
    """A digest of everything the activations depend on: the bottom's own weights (so a
    fine-tuned or retrained bottom never reuses a stale file), its layers, the images, and the
    frozen pass that made them (models/frozen.py)."""
    return key_for(key_parts(bottom, x, cut, mirror), dtype, made_by)


def key_for(parts: dict[str, Any], dtype: str, made_by: str = KERAS) -> str:
    """The cache key of `key_parts` stored as `dtype` and made by the pass `made_by`: the
    parts are hashed once per pool. Keras's activations keep the key they always had."""
    extra = {"pass": made_by} if made_by != KERAS else {}
    text = json.dumps({**parts, "dtype": dtype, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def key_parts(bottom: keras.Model, x: np.ndarray, cut: Cut, mirror: bool) -> dict[str, Any]:
    """What the activations depend on, but their storage dtype (the costly hashes)."""
    h = hashlib.sha256()
    for w in bottom.weights:
        h.update(w.path.encode())
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    preprocess = bottom.get_layer("preprocess")  # resize size and interpolation, normalisation
    return {
        "weights": h.hexdigest(),
        "preprocess": [(layer.name, layer.get_config()) for layer in preprocess.layers],
        "layers": [layer.name for layer in bottom.layers],
        "cut": cut.producer,
        "mirror": mirror,
        "data": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(),
        "shape": list(x.shape),
        "keras": keras.__version__,
    }


def cut_bytes(parts: Parts, n: int, dtype: str, mirror: bool) -> int:
    """Bytes a cache of `n` images at this cut takes (twice with mirror views)."""
    per_image = int(np.prod(parts.top.input_shape[1:]))
    return per_image * n * np.dtype(dtype).itemsize * (2 if mirror else 1)
