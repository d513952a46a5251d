"""Callbacks that outlive one `fit`: best-model checkpoint and history across stages."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import keras

from . import atomic

HISTORY_FIELDS = (
    "stage",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save `full_model` atomically whenever the monitored value improves.

    One instance serves both stages, so a worse stage-2 epoch can never overwrite a better
    stage-1 model (a fresh ModelCheckpoint per `fit` forgets its best value). It saves the
    full model even when `fit` trains only the head on cached features: the head's layers
    are shared with the full model.
    """

    def __init__(self, full_model: keras.Model, path: Path, monitor: str) -> None:
        super().__init__()
        self.full_model = full_model
        self.path = Path(path)
        self.monitor = monitor
        self.mode = "max" if "accuracy" in monitor else "min"
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_epoch: int | None = None  # 1-based, counted across stages
        # When set, keep the best weights of the model being fit in memory and save the full
        # model once at the end of `fit`: a head epoch on cached features takes milliseconds,
        # a full-model save about a second.
        self.defer = False
        self._pending: list[Any] | None = None

    def improved(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or not self.improved(float(value)):
            return
        self.best, self.best_epoch = float(value), epoch + 1
        if self.defer:
            self._pending = self.model.get_weights()
        else:
            self._save()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._pending is None:
            return
        current = self.model.get_weights()
        self.model.set_weights(self._pending)
        self._save()
        self.model.set_weights(current)
        self._pending = None

    def _save(self) -> None:
        atomic.write_with(self.path, lambda tmp: self.full_model.save(tmp))


class HistoryWriter(keras.callbacks.Callback):
    """Append one row per epoch to history.csv (rewritten atomically), tagged by stage."""

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = rows if rows is not None else []
        self.stage = "head"
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        lr = logs.get("learning_rate")
        if lr is None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"stage": self.stage, "epoch": epoch + 1, "learning_rate": float(lr)}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            row[key] = float(logs[key]) if key in logs else ""
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic.write_text(self.path, buf.getvalue())

    def stage_rows(self, stage: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["stage"] == stage]


class DivergenceGuard(keras.callbacks.Callback):
    """Stop at the first NaN or infinite training loss and remember where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.diverged_at: tuple[int, float] | None = None  # (1-based epoch, loss)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = (self.epoch, float(loss))
            self.model.stop_training = True
