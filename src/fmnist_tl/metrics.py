"""The one list of metrics: what Keras computes while training, what the test reports, and
which way each improves.

`compile` asks Keras for each metric that has a Keras name (the loss is the loss function);
history.csv and TensorBoard get a column per metric and its val_ twin; the test pass computes
each from the class probabilities (evaluation.json, metrics.json's test scores); the run's
summary and `fmnist evaluate` print each. A new metric is one `Metric` in `METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The clip Keras's cross-entropy uses, so the test loss matches `model.evaluate`.
EPSILON = 1e-7


def _cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], EPSILON, 1.0))))


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == y))


@dataclass(frozen=True)
class Metric:
    name: str  # as Keras logs it: history.csv's column, evaluation.json's key
    direction: str  # "max" or "min": which way it improves
    keras: str | None  # what compile's metrics= takes; None for the loss (the loss function)
    compute: Callable[[np.ndarray, np.ndarray], float]  # from probabilities and int labels
    headline: bool = False  # the one results are ranked by, shown first


LOSS = Metric("loss", "min", None, _cross_entropy)
ACCURACY = Metric("accuracy", "max", "accuracy", _accuracy, headline=True)
METRICS: tuple[Metric, ...] = (LOSS, ACCURACY)  # Keras's log order: history.csv's columns


def shown() -> list[Metric]:
    """The metrics in the order a summary prints them: the headline first."""
    return sorted(METRICS, key=lambda m: not m.headline)


def keras_metrics() -> list[str]:
    """What `model.compile(metrics=...)` takes."""
    return [m.keras for m in METRICS if m.keras is not None]


def logged() -> list[str]:
    """The per-epoch values Keras logs: each metric, then each on the validation split."""
    return [*(m.name for m in METRICS), *(f"val_{m.name}" for m in METRICS)]


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every metric of the class probabilities against the labels."""
    y = np.asarray(y, dtype=np.int64)
    return {m.name: m.compute(probs, y) for m in METRICS}


def direction(monitor: str) -> str:
    """ "max" or "min": which way a monitored value (e.g. val_accuracy) improves."""
    name = monitor.removeprefix("val_")
    for m in METRICS:
        if m.name == name:
            return m.direction
    raise ValueError(f"unknown metric {monitor!r}; known: {', '.join(logged())}")
