"""One stage fit: the one `fit` that train, finetune, resume and every tune trial call.

`fit_stage` builds the datasets, stacks the callbacks every stage needs (history, divergence
guard, plateau schedule, early stopping, stop at a safe point) and returns a typed outcome. A
run adds its checkpoint, TensorBoard and per-epoch commit through `FitHooks`; a tune trial adds
nothing. A callback added here runs in every stage of every run and trial; metrics are
metrics.py's list (compiled in optim.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import keras
import numpy as np

from .. import metrics
from ..classes import NUM_CLASSES
from ..config import Config
from ..data import pipeline
from ..records import StageSummary
from . import runtime
from .callbacks import (
    DivergenceGuard,
    EmaWeights,
    HistoryWriter,
    ResumableEarlyStopping,
    ResumablePlateau,
    StepProgbar,
    plateau_callback,
)
from .interrupts import StopAtSafePoint, StopRequested, StopSignals
from .splits import StageData


class FitHooks(Protocol):
    """What a run adds around the fit: its history file, checkpoint, TensorBoard and commit."""

    history: HistoryWriter

    def before(self) -> list[keras.callbacks.Callback]:
        """Callbacks that run before early stopping and plateau (history first: it records
        the learning rate the epoch ran at, before plateau lowers it)."""
        ...

    def after(
        self, early: ResumableEarlyStopping | None, plateau: ResumablePlateau | None
    ) -> list[keras.callbacks.Callback]:
        """Callbacks that run last in each epoch, when the others' state is final."""
        ...

    def on_stopped(self) -> None:
        """Close what `fit` would have closed, after a stop between batches."""
        ...


@dataclass
class Resume:
    """Where a resumed stage left off: early-stopping and plateau state, best weights."""

    early_stopping: dict[str, Any] | None = None
    best_weights: list[Any] | None = None
    plateau: dict[str, Any] | None = None


@dataclass
class Divergence:
    epoch: int
    loss: float
    learning_rate: float  # as scheduled at that step


@dataclass
class FitOutcome:
    summary: StageSummary
    diverged: Divergence | None
    stopped: bool  # a SIGINT/SIGTERM asked for a stop; the unfinished epoch is dropped
    rows: list[dict[str, Any]] = field(default_factory=list)  # the stage's history rows


def monitor_for(config: Config, has_val: bool) -> str:
    """train.monitor, or without a validation split the training metric of the same kind."""
    return config.train.monitor if has_val else config.train.monitor.removeprefix("val_")


def dataset(
    config: Config,
    x: np.ndarray | pipeline.Rows,
    y: np.ndarray,
    *,
    shuffle: bool,
    batch: int,
    views: bool = False,
) -> Any:
    ds = pipeline.make_dataset(
        x, y, batch_size=batch, shuffle=shuffle, seed=config.seed, views=views
    )
    if config.train.label_smoothing > 0 and y.ndim == 1:  # one-hot for CategoricalCrossentropy
        import tensorflow as tf

        ds = ds.map(lambda a, b: (a, tf.one_hot(tf.cast(b, tf.int32), NUM_CLASSES)))
    return ds


def fit_stage(
    model: keras.Model,
    config: Config,
    stage: str,
    stage_data: StageData,
    *,
    signals: StopSignals,
    end_epoch: int,
    initial_epoch: int = 0,
    strategy: Any = None,
    hooks: FitHooks | None = None,
    resume: Resume | None = None,
    prior_seconds: float = 0.0,
    verbose: int | None = None,
) -> FitOutcome:
    """Fit `model` (compiled for `stage`) for epochs initial_epoch+1 .. end_epoch.

    `end_epoch == initial_epoch` runs no epoch, only the stage's end (a resumed stage that
    early stopping had already ended).
    """
    d = stage_data
    batch = config.train.batch_size * runtime.replicas(strategy)
    train_ds = dataset(config, d.x_train, d.y_train, shuffle=True, batch=batch, views=d.views)
    val_ds = dataset(config, d.x_val, d.y_val, shuffle=False, batch=batch) if len(d.x_val) else None
    monitor = monitor_for(config, len(d.x_val) > 0)
    history = hooks.history if hooks is not None else HistoryWriter(None)
    history.stage = stage
    guard = DivergenceGuard()
    callbacks = _callbacks(config, stage, monitor, resume or Resume(), hooks, history, guard)
    callbacks += [StopAtSafePoint(signals), StepProgbar()]  # StepProgbar: Keras's bar, capped
    stopped, deferred, t0 = False, signals.defer, time.perf_counter()
    signals.defer = True  # a signal now stops at the end of a batch, never mid-write
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=end_epoch,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles, seeded
            verbose=runtime.verbosity(config) if verbose is None else verbose,
        )
    except StopRequested:  # left between batches
        stopped = True
        if hooks is not None:
            hooks.on_stopped()
    finally:
        signals.defer = deferred
    seconds = prior_seconds + time.perf_counter() - t0
    rows = history.stage_rows(stage)
    summary = stage_summary(stage, rows, monitor, seconds, len(d.x_train))
    stopped = stopped or bool(signals.requested)
    return FitOutcome(summary, _divergence(guard, model), stopped, rows)


def _callbacks(
    config: Config,
    stage: str,
    monitor: str,
    resume: Resume,
    hooks: FitHooks | None,
    history: HistoryWriter,
    guard: DivergenceGuard,
) -> list[keras.callbacks.Callback]:
    """The hooks' callbacks around early stopping, the plateau schedule and the guard."""
    patience = config.schedule(stage).patience
    early = None
    if patience is not None:
        early = ResumableEarlyStopping(
            monitor=monitor,
            patience=patience,
            restore_best_weights=True,
            resume_from=resume.early_stopping,
            best_weights=resume.best_weights,
        )
    plateau = plateau_callback(config, stage, monitor, resume_from=resume.plateau)
    before = hooks.before() if hooks is not None else [history]
    after = hooks.after(early, plateau) if hooks is not None else []
    # First: every callback after it sees the averaged weights at an epoch's end.
    ema = [EmaWeights()] if config.schedule(stage).ema else []
    return [*ema, *before, *(c for c in (early, plateau) if c is not None), guard, *after]


def _divergence(guard: DivergenceGuard, model: keras.Model) -> Divergence | None:
    if guard.diverged_at is None:
        return None
    epoch, loss = guard.diverged_at
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    return Divergence(epoch, loss, lr)


def stage_summary(
    stage: str, rows: list[dict[str, Any]], monitor: str, seconds: float, n_train: int
) -> StageSummary:
    """Best epoch, wasted epochs after it, and speed, for the overfitting read-out."""
    images_per_s = round(n_train * len(rows) / seconds, 1) if seconds > 0 else None
    summary = StageSummary(stage, len(rows), monitor, round(seconds, 3), images_per_s)
    values = [r[monitor] for r in rows if _number(r.get(monitor)) is not None]
    if values:
        pick = max if metrics.direction(monitor) == "max" else min
        finite = [v for v in values if math.isfinite(v)] or values
        best_i = values.index(pick(finite))
        best = rows[best_i]
        summary.best_epoch = best["epoch"]
        summary.epochs_after_best = len(rows) - 1 - best_i
        summary.best_val_accuracy = _number(best.get("val_accuracy"))
        summary.best_val_loss = _number(best.get("val_loss"))
    return summary


def _number(value: Any) -> float | None:
    return None if value in ("", None) else float(value)
