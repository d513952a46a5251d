"""Cached frozen-backbone features, on disk and in memory.

With a frozen backbone and no augmentation, stage 1 is a head trained on fixed features:
run the backbone once per image, keep the pooled features on disk, and train the head on
them. The cache key holds everything the features depend on, so a changed backbone,
weights file, size, interpolation, pooling or data subset never reuses a stale file.
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
from ..models.inference import infer


def cache_key(config: Config, weights_used: str, x: np.ndarray, views: bool = False) -> str:
    """A digest of everything the pooled features depend on."""
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
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_features(
    compute: Callable[[], np.ndarray], x: np.ndarray, key: str, cache_dir: Path
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features for `x`, from the verified cache when it holds them, else `compute()`d;
    returns (features, info).

    A damaged cache file (cut short, altered, a record that does not match) is never loaded:
    it is a miss, rebuilt here, and `cache.save_array` says so in one line.
    """
    path = Path(cache_dir) / f"{key}.npy"
    t0 = time.perf_counter()
    feats = load_array(path, len(x), what="feature cache")
    if feats is not None:
        return feats, {"cache": "hit", "path": str(path), "seconds": time.perf_counter() - t0}
    feats = compute()
    save_array(path, feats)
    return feats, {"cache": "miss", "path": str(path), "seconds": time.perf_counter() - t0}


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
        self._last: tuple[str, str, np.ndarray] | None = None  # key, signature, features
        self.log: list[dict[str, Any]] = []

    def reusable(self, config: Config) -> np.ndarray | None:
        """The features in memory when `config` would train its head on exactly those."""
        if self._last is None or self._last[1] != backbone_signature(config):
            return None
        return self._last[2]

    def features(
        self,
        config: Config,
        compute: Callable[[], np.ndarray],
        weights_used: str,
        x: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Pooled features of the images `x`: from memory, the disk cache, or `compute()`."""
        key = cache_key(config, weights_used, x, config.augment.mirror_views)
        signature = backbone_signature(config)
        if self._last is not None and self._last[0] == key:
            self._last = (key, signature, self._last[2])
            return self._last[2], {"cache": "hit", "path": None, "seconds": 0.0, "key": key}
        self._last = None  # free the last key's features before loading others
        feats, info = cached_features(compute, x, key, Path(config.output.cache_dir))
        self._last = (key, signature, feats)
        info = {**info, "key": key}
        self.log.append(info)
        return feats, info


def features_of_test_images(
    config: Config, extractor: keras.Model, weights_used: str, x_test: np.ndarray
) -> tuple[list[np.ndarray], float]:
    """Pooled features of the test images, and with augment.test_flip of their mirror images,
    from the same verified cache as the pool's; returns (views, seconds).

    A run that trains only the head tests it on these: the model on the images is the head on
    their features, so the backbone runs once per test image, in the feature pass, and a
    repeat with another seed reads them from disk.
    """
    t0 = time.perf_counter()
    images = [x_test, mirror(x_test)] if config.augment.test_flip else [x_test]
    views = []
    for x, what in zip(images, ("test images", "mirror test images"), strict=False):
        key = cache_key(config, weights_used, x)
        label = f"extracting features ({what})"
        feats, _ = cached_features(
            lambda x=x, label=label: infer(extractor, x, label=label),
            x,
            key,
            Path(config.output.cache_dir),
        )
        views.append(feats)
    return views, time.perf_counter() - t0
