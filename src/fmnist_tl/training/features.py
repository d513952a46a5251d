"""Cached frozen-backbone features, on disk and in memory.

With a frozen backbone and no augmentation, stage 1 is a head trained on fixed features:
run the backbone once per image, keep the pooled features on disk, and train the head on
them. The cache key holds everything the features depend on, so a changed backbone,
weights file, size, interpolation, pooling or data subset never reuses a stale file; it also
names the pass that made them when that was XNNPACK (models/frozen.py), so features made by
Keras and by XNNPACK are never mixed (a Keras pass keeps the key it always had).
`FeatureStore` also keeps the last features in memory, so a tune trial whose backbone matches
the previous trial's trains its head without building or running the backbone again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import atomic
from ..cache import load_array, save_array
from ..config import Config
from ..data.pipeline import mirror
from ..models.frozen import KERAS, FrozenPass


def cache_key(
    config: Config, weights_used: str, x: np.ndarray, views: bool = False, made_by: str = KERAS
) -> str:
    """A digest of everything the pooled features depend on, and the pass that made them."""
    m = config.model
    weights_id = weights_used
    if weights_used.startswith("file "):
        weights_id += ":" + atomic.sha256_file(Path(weights_used.removeprefix("file ")))[:16]
    elif not weights_used.startswith("imagenet"):
        weights_id += f":seed={config.seed}"  # random init differs per seed
    parts = {
        "backbone": m.backbone,
        "weights": weights_id,
        "input_size": m.input_size,
        "resize_method": m.resize_method,
        "pooling": m.head.pooling,
        "cnn": m.cnn.model_dump() if m.backbone == "cnn" else None,
        "dense": m.dense.model_dump() if m.backbone == "dense" else None,
        "data": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(),
        "shape": list(x.shape),
        "keras": keras.__version__,
    }
    if views:  # each image's and its mirror image's features, stacked on axis 1
        parts["views"] = 2
    if made_by != KERAS:  # Keras's features keep the key they had before there was a choice
        parts["pass"] = made_by
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_features(
    frozen: FrozenPass,
    compute: Callable[[], tuple[np.ndarray, str]],
    x: np.ndarray,
    key_of: Callable[[str], str],
    cache_dir: Path,
    *,
    what: str = "feature cache",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features for `x`, from the verified cache when it holds them, else `compute()`d;
    returns (features, info).

    `key_of(pass)` is the cache key of features made by that pass. The cache is looked up
    under the pass `frozen` intends first; on a miss the pass is built and checked, and when it
    falls back to Keras, Keras's features are looked up before any are computed. `compute`
    returns the features and the pass that made them, which keys the file they are saved to.
    A damaged cache file (cut short, altered, a record that does not match) is never loaded:
    it is a miss, rebuilt here, and `cache.save_array` says so in one line (`what` names
    the cache there).
    """
    t0 = time.perf_counter()

    def path(made_by: str) -> Path:
        return Path(cache_dir) / f"{key_of(made_by)}.npy"

    made_by = frozen.intended
    feats = load_array(path(made_by), len(x), what=what)
    if feats is None and frozen.build(x) != made_by:
        made_by = frozen.name  # fell back to Keras: its features may be on disk
        feats = load_array(path(made_by), len(x), what=what)
    cache = "hit"
    if feats is None:
        feats, made_by = compute()
        save_array(path(made_by), feats)
        cache = "miss"
    info = {"cache": cache, "path": str(path(made_by)), "pass": made_by}
    return feats, {**info, "seconds": time.perf_counter() - t0}


def backbone_signature(config: Config) -> str:
    """Everything but the head's width and dropout that decides stage 1's cached features.

    A superset of `cache_key`'s config parts: two configs with the same signature train heads
    on the same features.
    """
    d = config.to_dict()
    parts = {
        "model": {k: v for k, v in d["model"].items() if k != "head"},
        "pooling": d["model"]["head"]["pooling"],
        "augment": d["augment"],
        "feature_cache": d["train"]["feature_cache"],
        "runtime": d["runtime"],
        "seed": d["seed"],
    }
    return json.dumps(parts, sort_keys=True, default=str)


class FeatureStore:
    """The features of the last cache key, in memory, and a log of every load or extraction."""

    def __init__(self) -> None:
        self._last: tuple[str, str, np.ndarray, str] | None = None  # key, signature, feats, pass
        self.log: list[dict[str, Any]] = []

    def reusable(self, config: Config) -> tuple[np.ndarray, str] | None:
        """The features in memory, and the pass that made them, when `config` would train its
        head on exactly those."""
        if self._last is None or self._last[1] != backbone_signature(config):
            return None
        return self._last[2], self._last[3]

    def features(
        self,
        config: Config,
        frozen: FrozenPass,
        compute: Callable[[], tuple[np.ndarray, str]],
        weights_used: str,
        x: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Pooled features of the images `x`: from memory, the disk cache, or `compute()`."""
        views = config.augment.mirror_views

        def key_of(made_by: str) -> str:
            return cache_key(config, weights_used, x, views, made_by)

        key, signature = key_of(frozen.intended), backbone_signature(config)
        if self._last is not None and self._last[0] == key:
            self._last = (key, signature, self._last[2], self._last[3])
            info = {"cache": "hit", "path": None, "seconds": 0.0, "pass": self._last[3]}
            return self._last[2], {**info, "key": key}
        self._last = None  # free the last key's features before loading others
        feats, info = cached_features(frozen, compute, x, key_of, Path(config.output.cache_dir))
        key = key_of(info["pass"])
        self._last = (key, signature, feats, info["pass"])
        info = {**info, "key": key}
        self.log.append(info)
        return feats, info


def features_of_test_images(
    config: Config, frozen: FrozenPass, weights_used: str, x_test: np.ndarray
) -> tuple[list[np.ndarray], float, str]:
    """Pooled features of the test images, and with augment.test_flip of their mirror images,
    from the same verified cache as the pool's; returns (views, seconds, the pass that made
    them). `frozen` is the pass over the feature extractor the pool's features came from.

    A run that trains only the head tests it on these: the model on the images is the head on
    their features, so the backbone runs once per test image, in the feature pass, and a
    repeat with another seed reads them from disk.
    """
    t0 = time.perf_counter()
    images = [x_test, mirror(x_test)] if config.augment.test_flip else [x_test]
    views, made = [], []
    for x, what in zip(images, ("test images", "mirror test images"), strict=False):
        label = f"extracting features ({what})"
        feats, info = cached_features(
            frozen,
            lambda x=x, label=label: (frozen(x, label=label), frozen.name),
            x,
            lambda made_by, x=x: cache_key(config, weights_used, x, made_by=made_by),
            Path(config.output.cache_dir),
        )
        views.append(feats)
        made.append(info["pass"])
    return views, time.perf_counter() - t0, made[0] if len(set(made)) == 1 else "mixed"
