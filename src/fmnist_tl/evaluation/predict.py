"""Class probabilities for the user's own images, with a saved self-contained model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..classes import CLASS_NAMES
from ..data.images import load_images

TOP_K = 3  # classes reported per image
PROGRESS_FROM = 256  # images from which predicting shows a progress bar (on a terminal)


def predict_images(
    model_path: str | os.PathLike[str],
    image_paths: Sequence[str | os.PathLike[str]],
    *,
    test_flip: bool | None = None,
) -> list[dict[str, Any]]:
    """The three most likely classes per image, most likely first.

    `test_flip` None: as the config saved with the model says (augment.test_flip).

    Returns [{"image": path, "top3": [{"class": index, "label": name, "probability": p}, ...]}].
    """
    # Images first, TensorFlow after: a bad image path fails at once, not after the import.
    x = load_images(image_paths)
    from ..models.frozen import FrozenPass
    from .report import load_classifier, saved_frozen_setup, saved_test_flip
    from .scores import predict_proba

    model = load_classifier(model_path)
    if test_flip is None:
        test_flip = saved_test_flip(model_path)
    label = "predicting" if len(x) >= PROGRESS_FROM else None  # no bar for a handful
    n_images = len(x) * (2 if test_flip else 1)  # auto: XNNPACK only for many images
    frozen = FrozenPass(model, saved_frozen_setup(model_path), n_images, what="the model's pass")
    probs = predict_proba(model, x, test_flip=test_flip, label=label, frozen=frozen)
    results = []
    for path, p in zip(image_paths, probs, strict=True):
        best = np.argsort(-p, kind="stable")[:TOP_K]
        results.append(
            {
                "image": str(path),
                "top3": [
                    {"class": int(k), "label": CLASS_NAMES[int(k)], "probability": float(p[k])}
                    for k in best
                ],
            }
        )
    return results
