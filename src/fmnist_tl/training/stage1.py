"""What stage 1 fits: the head on cached features, or the whole model on images.

One decision for `fmnist train` and every tune trial. Features are used when the backbone is
frozen for stage 1 and nothing random (augmentation) sits before it: training the head on
them is then the same optimisation, far faster. A flip alone keeps them: each image's and its
mirror image's features are kept, and each epoch draws one per example (data.pipeline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..data.pipeline import mirror
from ..models.assembly import Built, build_model
from ..models.frozen import KERAS, XNNPACK, FrozenPass
from ..models.head import build_head
from ..records import StageSummary
from .features import FeatureStore, cache_key
from .freezing import freeze_for_stage1, frozen_in_stage1
from .runtime import frozen_setup
from .splits import Splits
from .stage import StageInputs
from .stage2 import BackbonePass


@dataclass
class Stage1Inputs(StageInputs):
    built: Built | None = None  # None when only the head was built (features reused)
    feature_cache: str | None = None  # "hit" or "miss" on features
    feature_seconds: float = 0.0  # loading or computing them
    feature_pass: str | None = None  # the frozen pass that made them: "xnnpack" or "keras"
    # The pass over the feature extractor, for the test images' features (trainer.py).
    frozen: FrozenPass | None = None
    # The pass over the frozen backbone that gave the features, when it also gave stage 2's
    # activations: stage 2 takes it from here.
    backbone_pass: BackbonePass | None = None

    def fill(self, summary: StageSummary) -> None:
        if self.on_features:
            summary.feature_cache = self.feature_cache
            summary.feature_seconds = round(self.feature_seconds, 3)
            summary.feature_pass = self.feature_pass


def stage1_inputs(
    config: Config,
    splits: Splits,
    store: FeatureStore,
    built: Built | None = None,
    *,
    allow_cache: bool = True,
    backbone_pass: BackbonePass | None = None,
) -> Stage1Inputs:
    """Freeze as configured and pick stage 1's model and data.

    With `built` None, features already in `store` for this backbone are reused and only the
    head is built; otherwise the model is built here. `backbone_pass`: on a cache miss, the
    features come from it (from stage 2's activations: one pass over the backbone for both).
    """
    t0 = time.perf_counter()
    views = config.augment.mirror_views  # features of each image and its mirror, on axis 1
    found = store.reusable(config) if built is None and allow_cache else None
    if found is not None:
        feats, made_by = found
        head = build_head(config, tuple(feats.shape[1 + views :]))
        data = splits.of_pool(feats, config, views=views)
        return Stage1Inputs(
            head, data, True, feature_cache="hit", counts_pass=True, feature_pass=made_by
        )
    built = built or build_model(config)
    frozen = freeze_for_stage1(config, built)
    if not (frozen and allow_cache and _cacheable(config, built)):
        return Stage1Inputs(built.model, splits.images(), False, built=built)
    x = splits.x_pool
    extractor = FrozenPass(
        built.feature_extractor,
        frozen_setup(config),
        len(x) * (2 if views else 1),
        head=built.head,
        what="the backbone's features",
    )
    if backbone_pass is not None:  # the features come from the bottom's activations
        frozen_by, compute = backbone_pass.frozen, backbone_pass.features
    else:
        frozen_by, compute = extractor, lambda: _extract(extractor, x, views)
    feats, info = store.features(config, frozen_by, compute, built.weights_used, x)
    return Stage1Inputs(
        built.head,
        splits.of_pool(feats, config, views=views),
        True,
        seconds=time.perf_counter() - t0,
        counts_pass=True,
        built=built,
        feature_cache=info["cache"],
        feature_seconds=info["seconds"],
        feature_pass=info["pass"],
        frozen=extractor,
        backbone_pass=backbone_pass,
    )


def _cacheable(config: Config, built: Built) -> bool:
    """Whether a frozen stage 1 of `built` trains its head on cached features."""
    return (
        built.head is not None
        and built.feature_extractor is not None
        and config.train.feature_cache == "auto"
    )


def feature_cache_bytes(config: Config, built: Built, x_pool: np.ndarray, room: int = 0) -> int:
    """What stage 1's feature cache of `x_pool` will add under output.cache_dir: 0 when stage 1
    trains on images or the features are already there (made by either pass).

    `room`: the free bytes the cache must fit in. A cache that fits is not looked for on disk
    (its key hashes the pool and the weights file, a fraction of a second at every run's
    start): its size is returned whether or not it is there, which decides the same."""
    if not (frozen_in_stage1(config, built) and _cacheable(config, built)):
        return 0
    assert built.feature_extractor is not None
    views = config.augment.mirror_views
    per_image = int(np.prod(built.feature_extractor.output_shape[1:])) * 4  # float32
    size = len(x_pool) * (2 if views else 1) * per_image
    if size <= room:
        return size
    for made_by in (KERAS, XNNPACK):
        key = cache_key(config, built.weights_used, x_pool, views, made_by)
        if (Path(config.output.cache_dir) / f"{key}.npy").is_file():
            return 0
    return size


def _extract(extractor: FrozenPass, x: np.ndarray, views: bool) -> tuple[np.ndarray, str]:
    """The pooled features of `x` (and with `views` of its mirror images, on axis 1), and the
    pass that made them."""
    feats = extractor(x, label="extracting features")
    if views:
        label = "extracting features (mirror images)"
        feats = np.stack([feats, extractor(mirror(x), label=label)], axis=1)
    return feats, extractor.name
