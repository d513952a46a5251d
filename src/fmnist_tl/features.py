"""Cached frozen-backbone features.

With a frozen backbone and no augmentation, stage 1 is a head trained on fixed features:
run the backbone once per image, keep the pooled features on disk, and train the head on
them. The cache key holds everything the features depend on, so a changed backbone,
weights file, size, interpolation, pooling or data subset never reuses a stale file.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import atomic
from .config import Config
from .inference import infer


def cache_key(config: Config, weights_used: str, x: np.ndarray) -> str:
    """A digest of everything the pooled features depend on."""
    m = config.model
    weights_id = weights_used
    if weights_used.startswith("file "):
        weights_id += ":" + _file_digest(Path(weights_used.removeprefix("file ")))
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
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_features(
    extractor: keras.Model, x: np.ndarray, key: str, cache_dir: Path
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features for `x`, from the cache when present; returns (features, info)."""
    path = Path(cache_dir) / f"{key}.npy"
    t0 = time.perf_counter()
    if path.is_file():
        try:
            feats = np.load(path)
            if feats.shape[0] == x.shape[0]:
                info = {"cache": "hit", "path": str(path), "seconds": time.perf_counter() - t0}
                return feats, info
        except (OSError, ValueError):
            pass  # unreadable cache file: recompute and replace it
    feats = infer(extractor, x)
    atomic.write_with(path, lambda tmp: np.save(tmp, feats))
    return feats, {"cache": "miss", "path": str(path), "seconds": time.perf_counter() - t0}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
