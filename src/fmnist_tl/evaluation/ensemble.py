"""Several saved models as one: the mean of their class probabilities.

Models that learned differently (MobileNetV2 on ImageNet features, a CNN from scratch, or one
recipe's seeds) make different mistakes, and averaging their probabilities keeps what they
agree on. Every member takes raw 28x28x1 pixels (load_classifier checks each: a model that does
not is one line, exit 2) and runs with its own test-time flip setting, from its saved config,
unless the caller chooses one for all. Exporting an ensemble is out of scope: each member
exports alone (`fmnist export`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import metrics
from ..errors import ConfigError
from ..models.frozen import FrozenPass
from .loading import load_classifier, saved_frozen_setup, saved_test_flip
from .scores import predict_proba


@dataclass
class Member:
    path: Path
    model: keras.Model
    test_flip: bool
    frozen_pass: str | None = None  # the pass that gave its probabilities: xnnpack or keras


def load_members(paths: Sequence[str | Path], test_flip: bool | None = None) -> list[Member]:
    """Each model loaded and checked; `test_flip` None: each member's own saved setting."""
    resolved = [Path(p) for p in paths]
    if len({p.resolve() for p in resolved}) != len(resolved):
        raise ConfigError("an ensemble names the same model twice; give each member once")
    members = []
    for path in resolved:
        flip = saved_test_flip(path) if test_flip is None else test_flip
        members.append(Member(path, load_classifier(path), flip))
    return members


def member_probabilities(
    members: list[Member], x: np.ndarray, *, bars: bool = True
) -> list[np.ndarray]:
    """Each member's class probabilities of the images (its flip averaged in when it has one),
    each through its frozen pass as its saved config asks (models/frozen.py), whose name each
    member keeps; `bars`: a progress bar per member, on a terminal."""
    probs = []
    for i, m in enumerate(members):
        one = len(members) == 1
        label = "predicting" if one else f"member {i + 1}/{len(members)}"
        n_images = len(x) * (2 if m.test_flip else 1)  # auto: XNNPACK only for many images
        what = "the model's pass" if one else f"member {i + 1}'s pass"
        frozen = FrozenPass(m.model, saved_frozen_setup(m.path), n_images, what=what)
        probs.append(
            predict_proba(
                m.model, x, test_flip=m.test_flip, label=label if bars else None, frozen=frozen
            )
        )
        m.frozen_pass = frozen.name
    return probs


def member_scores(members: list[Member], probs: list[np.ndarray], y: np.ndarray) -> list[dict]:
    """What each member scores alone, beside the ensemble's figures."""
    return [
        {
            "model": str(m.path),
            "test_flip": m.test_flip,
            "frozen_pass": m.frozen_pass,
            **metrics.scores(p, y),
        }
        for m, p in zip(members, probs, strict=True)
    ]


def report_name(paths: Sequence[Path]) -> str:
    """evaluation.ensemble-<digest>.json: the digest of the members, so a rerun of the same
    ensemble replaces its own report and never a run's evaluation.json."""
    names = "\n".join(sorted(str(p.resolve()) for p in paths))
    return f"evaluation.ensemble-{hashlib.sha256(names.encode()).hexdigest()[:8]}.json"


def ensemble_probabilities(probs: list[np.ndarray]) -> np.ndarray:
    """The ensemble's prediction: the plain mean of its members' probabilities."""
    return np.mean(probs, axis=0)


def describe(members: list[Member]) -> dict[str, Any]:
    return {"models": [str(m.path) for m in members], "size": len(members)}
