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
    model_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    image_paths: Sequence[str | os.PathLike[str]],
    *,
    test_flip: bool | None = None,
) -> list[dict[str, Any]]:
    """The three most likely classes per image, most likely first; with several models, of
    their ensemble (the mean of their probabilities), each member's top class beside.

    `test_flip` None: as the config saved with each model says (augment.test_flip).

    Returns [{"image": path, "top3": [{"class": index, "label": name, "probability": p}, ...]}]
    (and "members": [{"model": path, "class": index, "label": name, "probability": p}, ...]).
    """
    # Images first, TensorFlow after: a bad image path fails at once, not after the import.
    x = load_images(image_paths)
    from .ensemble import ensemble_probabilities, load_members, member_probabilities

    paths = [model_path] if isinstance(model_path, str | os.PathLike) else list(model_path)
    members = load_members(paths, test_flip)
    probs = member_probabilities(members, x, bars=len(x) >= PROGRESS_FROM)  # none for a handful
    mean = ensemble_probabilities(probs)
    results = []
    for i, (path, p) in enumerate(zip(image_paths, mean, strict=True)):
        result: dict[str, Any] = {"image": str(path), "top3": [_guess(p, k) for k in _top(p)]}
        if len(members) > 1:
            result["members"] = [
                {"model": str(m.path), **_guess(q[i], int(np.argmax(q[i])))}
                for m, q in zip(members, probs, strict=True)
            ]
        results.append(result)
    return results


def _top(p: np.ndarray) -> list[int]:
    return [int(k) for k in np.argsort(-p, kind="stable")[:TOP_K]]


def _guess(p: np.ndarray, k: int) -> dict[str, Any]:
    return {"class": k, "label": CLASS_NAMES[k], "probability": float(p[k])}
