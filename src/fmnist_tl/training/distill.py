"""Knowledge distillation from a saved model (`train.teacher`): the student learns from a mix
of the labels and the teacher's softened probabilities (Hinton et al., 2015).

The teacher's probabilities are computed once per training-pool image by its frozen pass
(XNNPACK when it checks out, models/frozen.py), through the same verified cache as the frozen
features (features.cached_features), keyed by the teacher file's SHA-256, the images and the
pass that made them, so a second seed or a tune trial reads them back. With `augment.flip` they
are the mean over each image and its mirror image: what the teacher says of the garment,
whichever of the two views the student is shown that epoch. They travel with the labels as
one target per example, [label, p_1 .. p_10], which `DistillationLoss` and `LabelAccuracy`
take apart; validation is scored the same way, and the test on plain labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import atomic
from ..cache import load_array
from ..config import Config
from ..data.pipeline import mirror
from ..models.frozen import KERAS, FrozenPass
from ..paths import check_model_file
from .features import cached_features
from .runtime import frozen_setup

EPSILON = 1e-7  # the clip Keras's cross-entropy uses


def teacher_targets(config: Config, x_pool: np.ndarray) -> np.ndarray | None:
    """The teacher's probabilities for every pool image (N, 10), from the cache or computed;
    None without a teacher."""
    if config.train.teacher is None:
        return None
    from ..evaluation.loading import load_classifier

    path = check_model_file(config.train.teacher, key="train.teacher")
    parts = {
        "teacher": atomic.sha256_file(path),
        "data": hashlib.sha256(np.ascontiguousarray(x_pool).tobytes()).hexdigest(),
        "shape": list(x_pool.shape),
        "flip": config.augment.flip,
        "keras": keras.__version__,
    }

    def key_of(made_by: str) -> str:  # a Keras pass keeps the key it had before the choice
        keyed = parts if made_by == KERAS else {**parts, "pass": made_by}
        return (
            "teacher-" + hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:24]
        )

    n_images = len(x_pool) * (2 if config.augment.flip else 1)
    # Keras's pass under a strategy, as every frozen pass (the strategy is made later).
    setup = replace(frozen_setup(config), distributed=config.runtime.distribute != "none")
    cache_dir = Path(config.output.cache_dir)
    # Looked up before the teacher is loaded: a hit never reads the model file.
    found = load_array(
        cache_dir / f"{key_of(setup.intended(n_images))}.npy", len(x_pool), what="teacher cache"
    )
    if found is not None:
        return found
    frozen = FrozenPass(load_classifier(path), setup, n_images, what="the teacher's pass")

    def compute() -> tuple[np.ndarray, str]:
        probs = frozen(x_pool, label="teacher's probabilities")
        if config.augment.flip:
            label = "teacher's probabilities (mirror images)"
            probs = (probs + frozen(mirror(x_pool), label=label)) / 2
        return probs.astype(np.float32), frozen.name

    probs, _ = cached_features(frozen, compute, x_pool, key_of, cache_dir, what="teacher cache")
    return probs


def with_targets(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """[label, p_1 .. p_10] per example, float32: what the loss and the metric take apart."""
    return np.concatenate([labels[:, None].astype(np.float32), probs.astype(np.float32)], 1)


def _soften(probs: Any, temperature: float) -> Any:
    """softmax(log p / T): the probabilities at temperature T, from probabilities."""
    logits = keras.ops.log(keras.ops.clip(probs, EPSILON, 1.0)) / temperature
    return keras.ops.softmax(logits, axis=-1)


@keras.saving.register_keras_serializable(package="fmnist_tl")
class DistillationLoss(keras.losses.Loss):
    """(1 - alpha) x cross-entropy with the labels (label smoothing as train.label_smoothing)
    + alpha x T^2 x KL(teacher at T || student at T); T^2 keeps the soft part's gradients at the
    hard part's scale whatever T is."""

    def __init__(
        self,
        alpha: float = 0.5,
        temperature: float = 4.0,
        label_smoothing: float = 0.0,
        name: str = "distillation",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha, self.temperature, self.label_smoothing = alpha, temperature, label_smoothing

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops, classes = keras.ops, y_pred.shape[-1]
        labels = ops.one_hot(ops.cast(y_true[:, 0], "int32"), classes)
        labels = labels * (1 - self.label_smoothing) + self.label_smoothing / classes
        hard = -ops.sum(labels * ops.log(ops.clip(y_pred, EPSILON, 1.0)), axis=-1)
        teacher = _soften(y_true[:, 1:], self.temperature)
        student = _soften(y_pred, self.temperature)
        kl = ops.sum(
            teacher * (ops.log(ops.clip(teacher, EPSILON, 1.0)) - ops.log(student + EPSILON)), -1
        )
        return (1 - self.alpha) * hard + self.alpha * self.temperature**2 * kl

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
        }


@keras.saving.register_keras_serializable(package="fmnist_tl")
class LabelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy on the label of a distillation target [label, p_1 .. p_10]."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return super().update_state(y_true[:, :1], y_pred, sample_weight)
