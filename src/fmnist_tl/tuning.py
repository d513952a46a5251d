"""`fmnist tune`: random hyperparameter search, each trial scored on stage 1 on validation.

Keras Tuner's RandomSearch oracle samples the values (seeded by `seed`: the same seed gives the
same trials); `_Tuner.run_trial` runs each trial with this tool's own pieces: the base config
with the sampled values applied and validated, seeds reset, `build_model`, then stage 1 only:

* with the stage-1 backbone frozen, no augmentation and `train.feature_cache: auto` (when
  `fmnist train` caches), the pooled features come from the feature cache, extracted or loaded
  once per cache key for the whole search, and only the head trains on them (seconds a trial);
* otherwise the full model trains on streamed images, as `fmnist train` would.

A trial's numbers are the validation split's at the epoch early stopping keeps (the best
`train.monitor`); the test set is never used. A trial whose loss turns NaN/inf is recorded as
diverged and the search goes on. leaderboard.json, leaderboard.md and best.yaml are rewritten
after every trial, so Ctrl-C (exit 130) or a hard kill leaves the completed trials' results.
Keras Tuner's own project files (oracle state, one trial.json per trial, its choice values as
indices) stay in the folder's `keras_tuner/`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from . import atomic, data, features, runtime
from .callbacks import DivergenceGuard, plateau_callback
from .config import Config, SearchDim, apply_values, check_search, search_space
from .errors import ConfigError, Interrupted, TrainingDiverged
from .interrupts import StopSignals
from .model import Built, build_head, build_model, compile_model
from .resume import new_run_dir
from .trainer import (
    Splits,
    dataset,
    prepare_data,
    prepare_stage1,
    stage_summary,
    steps_per_epoch,
)

LEADERBOARD = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
BEST_CONFIG = "best.yaml"
KT_PROJECT = "keras_tuner"  # Keras Tuner's project folder inside the tune folder

TrialCallback = Callable[[dict[str, Any], int], None]


@dataclass
class TuneResult:
    tune_id: str
    tune_dir: Path
    leaderboard: dict[str, Any]  # what leaderboard.json holds
    best: dict[str, Any] | None  # the best trial's record (None when no trial finished)
    best_config: Path | None  # best.yaml


def tune(
    config: Config, trials: int | None = None, *, on_trial: TrialCallback | None = None
) -> TuneResult:
    """Search `config.tune.space` with `trials` trials (default tune.trials), write the results.

    `on_trial(record, trials)` is called after each trial with its leaderboard record.
    """
    t_start = time.perf_counter()
    n = check_search(config, trials)
    dims = search_space(config)
    runtime.apply(config)
    splits = prepare_data(config)  # before the folder: missing data leaves nothing behind
    named = config.model_copy(deep=True)
    named.output.name = f"{config.output.name or 'default'}-tune"
    tune_dir = new_run_dir(named)
    return _Search(config, dims, n, splits, tune_dir, on_trial, t_start).run()


class _Tuner(kt.RandomSearch):
    """RandomSearch whose trials `_Search.run_trial` runs (no HyperModel)."""

    def __init__(self, search: _Search, **kwargs: Any) -> None:
        self._search = search
        super().__init__(**kwargs)

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        try:
            return self._search.run_trial(trial.hyperparameters.values)
        except Exception as exc:  # not the trial's fault: stop the search, surface it below
            raise kt.errors.FatalError(str(exc)) from exc


class _Search:
    def __init__(
        self,
        config: Config,
        dims: list[SearchDim],
        trials: int,
        splits: Splits,
        tune_dir: Path,
        on_trial: TrialCallback | None,
        t_start: float,
    ) -> None:
        self.base, self.dims, self.trials, self.splits = config, dims, trials, splits
        self.dir, self.on_trial, self.t_start = tune_dir, on_trial, t_start
        self.objective = config.tune.objective
        self.direction = "max" if "accuracy" in self.objective else "min"
        self.records: list[dict[str, Any]] = []
        self.feature_log: list[dict[str, Any]] = []
        # The last cache key's features, in memory, with the backbone signature they came from.
        self._features: tuple[str, str, np.ndarray] | None = None
        self.stopped: str | None = None
        self.signals = StopSignals()

    def run(self) -> TuneResult:
        tuner = _Tuner(
            self,
            objective=kt.Objective(self.objective, self.direction),
            max_trials=self.trials,
            seed=self.base.seed,
            hyperparameters=_hyperparameters(self.dims),
            tune_new_entries=False,
            allow_new_entries=False,
            max_consecutive_failed_trials=self.trials + 1,  # failures are recorded, not fatal
            directory=str(self.dir),
            project_name=KT_PROJECT,
        )
        # Keras Tuner replaces a seed of 0 by a random one; the search must follow `seed`.
        tuner.oracle.seed = tuner.oracle._seed_state = self.base.seed
        try:
            # SIGINT/SIGTERM: the unfinished trial is dropped, the finished ones are kept.
            with self.signals, warnings.catch_warnings():
                self.signals.defer = True  # stop at the end of a batch or between trials
                # A failed trial's NaN score: numpy warns inside Keras Tuner's bookkeeping.
                warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
                tuner.search(verbose=0)
        except KeyboardInterrupt:
            self.stopped = "interrupted"
            result = self._write()
            best = f"; best so far: {result.best_config}" if result.best_config else ""
            raise Interrupted(
                f"interrupted after {len(self.records)} of {self.trials} trials; the "
                f"leaderboard of the completed trials is {self.dir / LEADERBOARD_MD}{best}"
            ) from None
        except kt.errors.FatalError as exc:
            self._write()  # the trials that completed stay on record
            raise (exc.__cause__ or exc) from None
        if len(self.records) < self.trials:
            self.stopped = "search space exhausted"  # the oracle found no new combination
        result = self._write()
        if result.best is None:
            self._no_result()
        return result

    def run_trial(self, hp_values: dict[str, Any]) -> dict[str, float]:
        self._stop_if_requested()
        t0 = time.perf_counter()
        values = _decode(self.dims, hp_values)
        record: dict[str, Any] = {
            "trial": len(self.records) + 1,
            "status": "ok",
            "values": values,
            "objective": None,
            "val_accuracy": None,
            "val_loss": None,
            "epochs_run": 0,
            "best_epoch": None,
            "seconds": None,
            "feature_cache": None,
            "message": None,
        }
        # Ctrl-C or an unexpected error propagates from here: an unfinished trial is not recorded.
        self._stage1(values, record)
        record["seconds"] = round(time.perf_counter() - t0, 3)
        self.records.append(record)
        self._write()
        if self.on_trial is not None:
            self.on_trial(record, self.trials)
        if record["status"] != "ok":
            # A NaN score makes Keras Tuner mark the trial FAILED and go on (FailedTrialError
            # would do the same but print a traceback: keras_tuner's DEBUG is on by default).
            return {self.objective: math.nan}
        return {"val_accuracy": record["val_accuracy"], "val_loss": record["val_loss"]}

    def _stage1(self, values: dict[str, Any], record: dict[str, Any]) -> None:
        """Train stage 1 of one trial and fill `record`; failures become its status."""
        try:
            config = apply_values(self.base, values)
        except ConfigError as exc:  # each value was valid alone, not with these others
            record.update(status="invalid", message=str(exc))
            return
        resolved = config.to_dict()  # record values as the config took them (1e-3 -> 0.001)
        record["values"] = {k: _get(resolved, k) for k in values}
        if self.base.tune.epochs is not None:
            config.train.epochs = self.base.tune.epochs
        keras.backend.clear_session()  # drop the last trial's models (also resets precision)
        runtime.apply(config)  # the same seeds for every trial: a trial is reproducible
        s = self.splits
        feats = self._features_in_memory(config)
        if feats is not None:  # same backbone as the last head-only trial: build the head only
            model, record["feature_cache"] = build_head(config, feats.shape[1:]), "hit"
        else:
            built = build_model(config)
            if prepare_stage1(config, built):
                feats, record["feature_cache"] = self._features_for(config, built)
                model = built.head
            else:
                model = built.model
        if feats is not None:
            (x_train, _), (x_val, _) = data.split_train_val(
                feats, s.y_pool, config.data.val_split, config.seed
            )
            verbose = 0  # epochs of milliseconds: no progress lines
        else:
            x_train, x_val = s.x_train, s.x_val
            verbose = runtime.verbosity(config)
        batch = config.train.batch_size
        compile_model(
            model,
            config,
            "head",
            steps_per_epoch(len(x_train), batch),
            on_features=feats is not None,
        )
        guard = DivergenceGuard()
        plateau = plateau_callback(config, "head", config.train.monitor)
        stop = keras.callbacks.LambdaCallback(on_train_batch_end=self._stop_if_requested)
        callbacks: list[keras.callbacks.Callback] = [guard, stop]
        if plateau is not None:
            callbacks.append(plateau)
        if config.train.patience is not None:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=config.train.monitor,
                    patience=config.train.patience,
                    restore_best_weights=True,
                )
            )
        t0 = time.perf_counter()
        history = model.fit(
            dataset(config, x_train, s.y_train, shuffle=True, batch=batch),
            validation_data=dataset(config, x_val, s.y_val, shuffle=False, batch=batch),
            epochs=config.train.epochs,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles, seeded
            verbose=verbose,
        )
        rows = [
            {"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items() if i < len(v)}}
            for i in range(len(history.epoch))
        ]
        summary = stage_summary(
            "head", rows, config.train.monitor, time.perf_counter() - t0, len(x_train)
        )
        record["epochs_run"] = summary["epochs_run"]
        if guard.diverged_at is not None:
            epoch, loss = guard.diverged_at
            lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))  # as scheduled
            record.update(
                status="diverged",
                message=f"the training loss became {loss} at epoch {epoch} (learning rate {lr:g})",
            )
            return
        objective = summary.get(f"best_{self.objective}")
        if objective is None or not math.isfinite(objective):
            record.update(status="failed", message=f"no epoch gave a finite {self.objective}")
            return
        record.update(
            objective=objective,
            val_accuracy=summary["best_val_accuracy"],
            val_loss=summary["best_val_loss"],
            best_epoch=summary["best_epoch"],
        )

    def _stop_if_requested(self, *args: Any, **kwargs: Any) -> None:
        """Between trials and after each batch: act on a SIGINT/SIGTERM the handler noted."""
        if self.signals.requested:
            raise KeyboardInterrupt  # leaves Keras Tuner's loop: not an Exception

    def _features_in_memory(self, config: Config) -> np.ndarray | None:
        """The features in memory when `config` would train its head on exactly those."""
        if self._features is None or self._features[1] != _backbone_signature(config):
            return None
        return self._features[2]

    def _features_for(self, config: Config, built: Built) -> tuple[np.ndarray, str]:
        """Pooled features of every training image: from memory, the cache, or extracted."""
        key = features.cache_key(config, built.weights_used, self.splits.x_pool)
        signature = _backbone_signature(config)
        if self._features is not None and self._features[0] == key:
            self._features = (key, signature, self._features[2])
            return self._features[2], "hit"
        self._features = None  # free the last key's features before loading others
        feats, info = features.cached_features(
            built.feature_extractor, self.splits.x_pool, key, Path(config.output.cache_dir)
        )
        self._features = (key, signature, feats)
        self.feature_log.append(
            {
                "trial": len(self.records) + 1,
                "key": key,
                "cache": info["cache"],
                "seconds": round(info["seconds"], 3),
                "path": info["path"],
            }
        )
        return feats, info["cache"]

    def _write(self) -> TuneResult:
        """leaderboard.json, leaderboard.md and best.yaml as of now (atomic writes)."""
        ranked = _rank(self.records, self.direction)
        best = ranked[0] if ranked and ranked[0]["status"] == "ok" else None
        best_path = None
        if best is not None:
            best_path = self.dir / BEST_CONFIG
            cfg = apply_values(self.base, best["values"])
            header = (
                f"# fmnist tune {self.dir.name}: the base config with trial {best['trial']}'s "
                f"values ({self.objective} {best['objective']:.4f} on the validation split "
                f"after stage 1).\n# Train it with: fmnist train {best_path}\n"
            )
            atomic.write_text(best_path, header + cfg.to_yaml())
        board = {
            "tune_id": self.dir.name,
            "config_name": self.base.output.name,
            "created": datetime.now().isoformat(timespec="seconds"),
            "complete": self.stopped is None,
            "stopped": self.stopped,
            "objective": self.objective,
            "direction": self.direction,
            "monitor": self.base.train.monitor,
            "scored_on": "validation split, stage 1 only",
            "trials_requested": self.trials,
            "trials_run": len(self.records),
            "seed": self.base.seed,
            "epochs_per_trial": self.base.tune.epochs or self.base.train.epochs,
            "space": self.base.tune.space,
            "best": None
            if best is None
            else {k: best[k] for k in ("trial", "values", "objective", "val_accuracy", "val_loss")},
            "best_config": str(best_path) if best_path else None,
            "total_seconds": round(time.perf_counter() - self.t_start, 3),
            "feature_seconds": round(sum(f["seconds"] for f in self.feature_log), 3),
            "features": self.feature_log,
            "data": {
                "source": self.splits.source,
                "train": int(len(self.splits.x_train)),
                "val": int(len(self.splits.x_val)),
            },
            "keras_tuner": {"version": kt.__version__, "project_dir": KT_PROJECT},
            "versions": runtime.versions(),
            "trials": ranked,
        }
        atomic.write_json(self.dir / LEADERBOARD, board)
        atomic.write_text(self.dir / LEADERBOARD_MD, markdown(board))
        return TuneResult(self.dir.name, self.dir, board, best, best_path)

    def _no_result(self) -> None:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        what = ", ".join(f"{v} {k}" for k, v in counts.items())
        where = self.dir / LEADERBOARD_MD
        if "diverged" in counts or "failed" in counts:
            raise TrainingDiverged(
                f"no trial finished ({what}); see {where}; narrow the space, e.g. a lower "
                "maximum train.learning_rate"
            )
        raise ConfigError(
            f"no trial could run ({what}): the sampled values clash; see {where} and narrow "
            "tune.space"
        )


def _backbone_signature(config: Config) -> str:
    """Everything but the head's width and dropout that decides stage 1's cached features.

    Two trials with the same signature train heads on the same features: the later one can
    skip building the backbone (seconds a trial for MobileNetV2).
    """
    d = config.to_dict()
    model = {k: v for k, v in d["model"].items() if k != "head"}
    parts = {
        "model": model,
        "pooling": d["model"]["head"]["pooling"],
        "augment": d["augment"],
        "feature_cache": d["train"]["feature_cache"],
        "runtime": d["runtime"],
        "seed": d["seed"],
    }
    return json.dumps(parts, sort_keys=True, default=str)


def _hyperparameters(dims: list[SearchDim]) -> kt.HyperParameters:
    """The space for Keras Tuner; a choice is sampled as an index, so any YAML value works."""
    hp = kt.HyperParameters()
    for d in dims:
        sampling = "log" if d.log else "linear"
        if d.kind == "choice":
            hp.Choice(d.key, list(range(len(d.values))))
        elif d.kind == "int":
            step = None if d.step is None else int(d.step)
            hp.Int(d.key, int(d.low), int(d.high), step=step, sampling=sampling)
        else:
            hp.Float(d.key, float(d.low), float(d.high), step=d.step, sampling=sampling)
    return hp


def _get(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        node = node[part]
    return node


def _decode(dims: list[SearchDim], hp_values: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as the config takes them, in tune.space order."""
    values: dict[str, Any] = {}
    for d in dims:
        v = hp_values[d.key]
        if d.kind == "choice":
            values[d.key] = d.values[int(v)]
        elif d.kind == "int":
            values[d.key] = int(v)
        else:  # a float step lands on min + k * step: drop the binary noise
            values[d.key] = round(float(v), 12) if d.step is not None else float(v)
    return values


def _rank(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Finished trials best first, then the others in trial order.

    Ties on the objective go to the better other metric (equal val_accuracy: the lower
    val_loss), then to the earlier trial.
    """
    ok = [r for r in records if r["status"] == "ok"]
    if direction == "max":  # objective val_accuracy, tie-break val_loss
        ok.sort(key=lambda r: (-r["objective"], r["val_loss"], r["trial"]))
    else:  # objective val_loss, tie-break val_accuracy
        ok.sort(key=lambda r: (r["objective"], -r["val_accuracy"], r["trial"]))
    rest = [r for r in records if r["status"] != "ok"]
    return [{"rank": i + 1, **r} for i, r in enumerate(ok + rest)]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(board: dict[str, Any]) -> str:
    """leaderboard.md: every trial, best first."""
    obj, better = board["objective"], "higher" if board["direction"] == "max" else "lower"
    keys = list(board["space"])
    lines = [
        f"# Tuning {board['tune_id']}",
        "",
        f"Objective: **{obj}** ({better} is better), on the validation split after stage 1 "
        f"only, at the epoch early stopping keeps (best {board['monitor']}). "
        f"{board['trials_run']} of {board['trials_requested']} trials"
        + (f" ({board['stopped']})" if board["stopped"] else "")
        + f", {board['total_seconds']:.1f} s in all, feature extraction "
        f"{board['feature_seconds']:.1f} s.",
        "",
    ]
    if board["best_config"]:
        lines += [f"Best config: `{board['best_config']}`", ""]
    header = ["rank", "trial", "status", "val_accuracy", "val_loss", "epochs", "best epoch"]
    header += ["seconds", *keys]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in board["trials"]:
        cells = [
            str(r["rank"]),
            str(r["trial"]),
            r["status"],
            "" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}",
            "" if r["val_loss"] is None else f"{r['val_loss']:.4f}",
            str(r["epochs_run"]),
            "" if r["best_epoch"] is None else str(r["best_epoch"]),
            f"{r['seconds']:.1f}",
            *(format_value(r["values"][k]) for k in keys),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    failed = [r for r in board["trials"] if r["message"]]
    if failed:
        lines += ["", *(f"- trial {r['trial']} {r['status']}: {r['message']}" for r in failed)]
    return "\n".join(lines) + "\n"
