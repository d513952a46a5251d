"""Optimizers, learning-rate schedules and compiling a model for a stage."""

from __future__ import annotations

import math
from typing import Any

import keras

from .. import metrics
from ..config import Config

FEATURE_STEPS_PER_EXECUTION = 32  # see compile_model


def steps_per_epoch(n_train: int, batch: int) -> int:
    """Optimizer steps in one epoch: what learning-rate schedules count in."""
    return max(1, math.ceil(n_train / batch))


def _optimizer(config: Config, learning_rate: Any) -> keras.optimizers.Optimizer:
    t = config.train
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, nesterov=True, weight_decay=t.weight_decay or None
        )
    return keras.optimizers.Adam(learning_rate, weight_decay=t.weight_decay or None)


def learning_rate(config: Config, stage: str, steps_per_epoch: int) -> Any:
    """The stage's learning rate: a number, or a schedule stepped by the optimizer.

    Schedules count optimizer steps, which are saved with the optimizer, so a resumed run
    carries on at the right point of its warmup or cosine curve.
    """
    s = config.schedule(stage)
    warmup = round(s.warmup_epochs * steps_per_epoch)
    if s.schedule == "cosine":
        total = max(1, s.epochs * steps_per_epoch - warmup)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else s.learning_rate,
            decay_steps=total,
            alpha=s.min_learning_rate / s.learning_rate,
            warmup_target=s.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if warmup:  # constant after a linear warmup: a cosine that does not decay (alpha 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=1, alpha=1.0, warmup_target=s.learning_rate, warmup_steps=warmup
        )
    return s.learning_rate  # constant, or plateau (ReduceLROnPlateau lowers this variable)


def compile_model(
    model: keras.Model,
    config: Config,
    stage: str,
    steps_per_epoch: int,
    *,
    on_features: bool = False,
) -> None:
    """Compile for `stage` ("head" or "finetune") with its learning rate and schedule.

    A head trained on cached features (`on_features`) runs FEATURE_STEPS_PER_EXECUTION steps
    per call into TensorFlow: its steps take milliseconds, so per-step dispatch and callback
    overhead would otherwise be a large share of them. The steps themselves are unchanged.
    """
    t = config.train
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
        if t.label_smoothing > 0
        else keras.losses.SparseCategoricalCrossentropy()
    )
    steps = config.runtime.steps_per_execution
    model.compile(
        optimizer=_optimizer(config, learning_rate(config, stage, steps_per_epoch)),
        loss=loss,
        metrics=metrics.keras_metrics(),
        jit_compile=config.runtime.jit_compile,
        steps_per_execution=max(steps, FEATURE_STEPS_PER_EXECUTION) if on_features else steps,
    )
