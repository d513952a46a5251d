"""One tune trial: the base config with the sampled values, stage 1 run as every stage is run
(training.stage.run_stage), scored on the validation split at the epoch early stopping keeps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras

from ...config import Config, apply_values
from ...errors import ConfigError
from ...records import HEAD, TrialRecord
from ...training import hparams, runtime
from ...training.features import FeatureStore
from ...training.fit import FitOutcome, fit_stage
from ...training.interrupts import StopSignals
from ...training.splits import Splits, StageData
from ...training.stage import run_stage
from ...training.stage1 import stage1_inputs


def trial_config(base: Config, record: TrialRecord) -> Config | None:
    """The base config with the trial's values, or None (record marked invalid)."""
    try:
        config = apply_values(base, record.values)
    except ConfigError as exc:  # each value was valid alone, not with these others
        record.status, record.message = "invalid", str(exc)
        return None
    resolved = config.to_dict()  # record values as the config took them (1e-3 -> 0.001)
    record.values = {k: _get(resolved, k) for k in record.values}
    if base.tune.epochs is not None:
        config.train.epochs = base.tune.epochs
    return config


def run_trial(
    config: Config,
    record: TrialRecord,
    splits: Splits,
    store: FeatureStore,
    signals: StopSignals,
    log_dir: Path,
) -> list[dict[str, Any]]:
    """Train stage 1 of one trial and fill `record` (status, scores, epochs); returns its
    epochs' history rows."""
    keras.backend.clear_session()  # drop the last trial's models (also resets precision)
    runtime.apply(config)  # the same seeds for every trial: a trial is reproducible
    inputs = stage1_inputs(config, splits, store)
    record.feature_cache = inputs.feature_cache

    def fit(model: keras.Model, stage: str, data: StageData, *, on_features: bool) -> FitOutcome:
        return fit_stage(
            model,
            config,
            stage,
            data,
            signals=signals,
            end_epoch=config.train.epochs,
            verbose=0 if on_features else None,  # epochs of milliseconds: no lines
        )

    outcome = run_stage(config, HEAD, inputs, fit)
    if outcome.stopped:
        raise KeyboardInterrupt  # leaves Keras Tuner's loop: not an Exception
    _score(record, outcome, config.tune.objective)
    if record.status == "ok":
        scores = {"val_accuracy": record.val_accuracy, "val_loss": record.val_loss}
        hparams.log_hparams(log_dir, config, scores, keys=record.values)
    return outcome.rows


def _score(record: TrialRecord, outcome: FitOutcome, objective: str) -> None:
    summary, diverged = outcome.summary, outcome.diverged
    record.epochs_run = summary.epochs_run
    if diverged is not None:
        record.status = "diverged"
        record.message = (
            f"the training loss became {diverged.loss} at epoch {diverged.epoch} "
            f"(learning rate {diverged.learning_rate:g})"
        )
        return
    value = getattr(summary, f"best_{objective}")
    if value is None or not math.isfinite(value):
        record.status, record.message = "failed", f"no epoch gave a finite {objective}"
        return
    record.objective = value
    record.val_accuracy, record.val_loss = summary.best_val_accuracy, summary.best_val_loss
    record.best_epoch = summary.best_epoch


def _get(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        node = node[part]
    return node
