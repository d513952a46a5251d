"""What stage 1 trains: the head on cached features, or the whole model on images.

One decision for `fmnist train` and every tune trial. Features are used when the backbone is
frozen for stage 1 and nothing random (augmentation) sits before it: training the head on
them is then the same optimisation, far faster. A flip alone keeps them: each image's and its
mirror image's features are kept, and each epoch draws one per example (pipeline.make_dataset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from .. import pipeline
from ..config import Config
from ..inference import infer
from ..model import Built, build_head, build_model, freeze_for_stage1, mirror_views
from .features import FeatureStore
from .splits import Splits, StageData


@dataclass
class Stage1:
    model: keras.Model  # what stage 1 fits: the head alone (on features) or the full model
    data: StageData
    built: Built | None  # None when only the head was built (features reused in memory)
    on_features: bool
    feature_cache: str | None = None  # "hit" or "miss" on features
    feature_seconds: float = 0.0


def stage1_inputs(
    config: Config,
    splits: Splits,
    store: FeatureStore,
    built: Built | None = None,
    *,
    allow_cache: bool = True,
    pooled: Callable[[], np.ndarray] | None = None,
) -> Stage1:
    """Freeze as configured and pick stage 1's model and data.

    With `built` None, features already in `store` for this backbone are reused and only the
    head is built; otherwise the model is built here. `pooled` computes the features another
    way on a cache miss (from stage 2's activations: one pass over the backbone for both).
    """
    views = mirror_views(config)  # features of each image and its mirror image, on axis 1
    feats = store.reusable(config) if built is None and allow_cache else None
    if feats is not None:
        head = build_head(config, tuple(feats.shape[1 + views :]))
        return Stage1(head, splits.of_pool(feats, config, views=views), None, True, "hit")
    built = built or build_model(config)
    frozen = freeze_for_stage1(config, built)
    cacheable = frozen and built.head is not None and config.train.feature_cache == "auto"
    if not (cacheable and allow_cache and built.feature_extractor is not None):
        return Stage1(built.model, splits.images(), built, False)
    extractor, x = built.feature_extractor, splits.x_pool

    def extract() -> np.ndarray:
        feats = infer(extractor, x, label="extracting features")
        if not views:
            return feats
        label = "extracting features (mirror images)"
        return np.stack([feats, infer(extractor, pipeline.mirror(x), label=label)], axis=1)

    feats, info = store.features(config, pooled or extract, built.weights_used, x)
    stage_data = splits.of_pool(feats, config, views=views)
    return Stage1(built.head, stage_data, built, True, info["cache"], info["seconds"])
