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

from . import atomic, ktdist, runtime
from .cli.render import tune_markdown
from .config import Config, SearchDim, apply_values, check_search, search_space
from .errors import ConfigError, Interrupted, TrainingDiverged
from .paths import check_run_outputs
from .records import HEAD, TrialRecord, direction
from .training import hparams
from .training.features import FeatureStore
from .training.fit import fit_stage
from .training.interrupts import StopSignals
from .training.optim import compile_model, steps_per_epoch
from .training.runfolder import new_folder
from .training.splits import Splits, prepare_data
from .training.stage1 import stage1_inputs

LEADERBOARD = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
BEST_CONFIG = "best.yaml"
KT_PROJECT = "keras_tuner"  # Keras Tuner's project folder inside the tune folder

TrialCallback = Callable[[TrialRecord, int], None]


@dataclass
class TuneResult:
    tune_id: str
    tune_dir: Path
    leaderboard: dict[str, Any]  # what leaderboard.json holds
    best: TrialRecord | None  # the best trial (None when no trial finished)
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
    check_run_outputs(config.output, publish=False)  # a log or cache folder that is a file
    runtime.apply(config)
    splits = prepare_data(config)  # before the folder: missing data leaves nothing behind
    name = ktdist.folder_name(f"{config.output.name or 'default'}-tune")  # a worker: its id
    tune_dir = new_folder(Path(config.output.dir), name, what="tune")
    return _Search(config, dims, n, splits, tune_dir, on_trial, t_start).run()


class _Tuner(kt.RandomSearch):
    """RandomSearch whose trials `_Search.run_trial` runs (no HyperModel)."""

    def __init__(self, search: _Search, **kwargs: Any) -> None:
        self._search = search
        super().__init__(**kwargs)

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        try:
            return self._search.run_trial(trial.hyperparameters.values, trial.trial_id)
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
        self.direction = direction(self.objective)
        self.records: list[TrialRecord] = []
        self.feature_log: list[dict[str, Any]] = []
        self.store = FeatureStore()  # features reused by every trial with the same backbone
        self.stopped: str | None = None
        self.signals = StopSignals()
        self.ran_on: dict[str, str] = {}  # distributed: trial -> the worker that ran it

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
        if not ktdist.is_worker():  # a worker's oracle is the chief's, over gRPC
            # Keras Tuner replaces a seed of 0 by a random one; the search must follow `seed`.
            tuner.oracle.seed = tuner.oracle._seed_state = self.base.seed
        if ktdist.is_chief():
            tuner.save()
            ktdist.serve(tuner.oracle, self._record_remote)
            return self._finish()
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
        return self._finish()

    def _finish(self) -> TuneResult:
        if len(self.records) < self.trials and not ktdist.is_worker():
            self.stopped = "search space exhausted"  # the oracle found no new combination
        result = self._write()
        if result.best is None and not ktdist.is_worker():  # a worker may get no trial
            self._no_result()
        return result

    def _record_remote(self, trial: Any, tuner_id: str) -> None:
        """The chief: a trial a worker finished, from the numbers its Trial proto carries."""
        values = _decode(self.dims, trial.hyperparameters.values)
        record = ktdist.trial_record(trial, values, self.objective, tuner_id)
        self.records.append(record)
        self.ran_on[str(record.trial)] = tuner_id
        self._write()
        if self.on_trial is not None:
            self.on_trial(record, self.trials)

    def run_trial(self, hp_values: dict[str, Any], trial_id: str | None = None) -> dict[str, float]:
        self._stop_if_requested()
        t0 = time.perf_counter()
        # The trial's number: its order here, or the oracle's id when it serves several workers.
        number = int(trial_id) + 1 if ktdist.is_worker() and trial_id else len(self.records) + 1
        record = TrialRecord(number, _decode(self.dims, hp_values))
        # Ctrl-C or an unexpected error propagates from here: an unfinished trial is not recorded.
        self._stage1(record)
        record.seconds = round(time.perf_counter() - t0, 3)
        self.records.append(record)
        self._write()
        if self.on_trial is not None:
            self.on_trial(record, self.trials)
        if record.status != "ok":
            # A NaN score makes Keras Tuner mark the trial FAILED and go on (FailedTrialError
            # would do the same but print a traceback: keras_tuner's DEBUG is on by default).
            return {self.objective: math.nan}
        extra = {"epochs_run": record.epochs_run, "best_epoch": record.best_epoch or 0}
        scores = {"val_accuracy": record.val_accuracy, "val_loss": record.val_loss, **extra}
        return {**scores, "seconds": record.seconds}

    def _trial_config(self, record: TrialRecord) -> Config | None:
        """The base config with the trial's values, or None (record marked invalid)."""
        try:
            config = apply_values(self.base, record.values)
        except ConfigError as exc:  # each value was valid alone, not with these others
            record.status, record.message = "invalid", str(exc)
            return None
        resolved = config.to_dict()  # record values as the config took them (1e-3 -> 0.001)
        record.values = {k: _get(resolved, k) for k in record.values}
        if self.base.tune.epochs is not None:
            config.train.epochs = self.base.tune.epochs
        return config

    def _stage1(self, record: TrialRecord) -> None:
        """Train stage 1 of one trial with the one stage fit and fill `record`."""
        config = self._trial_config(record)
        if config is None:
            return
        keras.backend.clear_session()  # drop the last trial's models (also resets precision)
        runtime.apply(config)  # the same seeds for every trial: a trial is reproducible
        logged = len(self.store.log)
        inputs = stage1_inputs(config, self.splits, self.store)
        self._log_features(logged, record.trial)
        record.feature_cache = inputs.feature_cache
        n_train = len(inputs.data.x_train)
        steps = steps_per_epoch(n_train, config.train.batch_size)
        compile_model(inputs.model, config, HEAD, steps, on_features=inputs.on_features)
        outcome = fit_stage(
            inputs.model,
            config,
            HEAD,
            inputs.data,
            signals=self.signals,
            end_epoch=config.train.epochs,
            verbose=0 if inputs.on_features else None,  # epochs of milliseconds: no lines
        )
        if outcome.stopped:
            raise KeyboardInterrupt  # leaves Keras Tuner's loop: not an Exception
        summary, diverged = outcome.summary, outcome.diverged
        record.epochs_run = summary.epochs_run
        if diverged is not None:
            record.status = "diverged"
            record.message = (
                f"the training loss became {diverged.loss} at epoch {diverged.epoch} "
                f"(learning rate {diverged.learning_rate:g})"
            )
            return
        objective = getattr(summary, f"best_{self.objective}")
        if objective is None or not math.isfinite(objective):
            record.status, record.message = "failed", f"no epoch gave a finite {self.objective}"
            return
        record.objective = objective
        record.val_accuracy, record.val_loss = summary.best_val_accuracy, summary.best_val_loss
        record.best_epoch = summary.best_epoch
        log_dir = Path(config.output.log_dir) / self.dir.name / f"trial_{record.trial:03d}"
        scores = {"val_accuracy": record.val_accuracy, "val_loss": record.val_loss}
        hparams.log_hparams(log_dir, config, scores, keys=record.values)

    def _log_features(self, logged: int, trial: int) -> None:
        """The feature loads or extractions this trial caused, for the leaderboard."""
        for info in self.store.log[logged:]:
            self.feature_log.append(
                {
                    "trial": trial,
                    "key": info["key"],
                    "cache": info["cache"],
                    "seconds": round(info["seconds"], 3),
                    "path": info["path"],
                }
            )

    def _stop_if_requested(self, *args: Any, **kwargs: Any) -> None:
        """Between trials: act on a SIGINT/SIGTERM the handler noted."""
        if self.signals.requested:
            raise KeyboardInterrupt  # leaves Keras Tuner's loop: not an Exception

    def _write(self) -> TuneResult:
        """leaderboard.json, leaderboard.md and best.yaml as of now (atomic writes)."""
        ranked = _rank(self.records, self.direction)
        best = ranked[0] if ranked and ranked[0].status == "ok" else None
        best_path = self._write_best(best) if best is not None else None
        board = self._board(ranked, best, best_path)
        atomic.write_json(self.dir / LEADERBOARD, board)
        atomic.write_text(self.dir / LEADERBOARD_MD, tune_markdown(board))
        return TuneResult(self.dir.name, self.dir, board, best, best_path)

    def _write_best(self, best: TrialRecord) -> Path:
        path = self.dir / BEST_CONFIG
        cfg = apply_values(self.base, best.values)
        header = (
            f"# fmnist tune {self.dir.name}: the base config with trial {best.trial}'s "
            f"values ({self.objective} {best.objective:.4f} on the validation split "
            f"after stage 1).\n# Train it with: fmnist train {path}\n"
        )
        atomic.write_text(path, header + cfg.to_yaml())
        return path

    def _board(
        self, ranked: list[TrialRecord], best: TrialRecord | None, best_path: Path | None
    ) -> dict[str, Any]:
        """What leaderboard.json holds."""
        best_keys = ("trial", "values", "objective", "val_accuracy", "val_loss")
        return {
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
            "best": None if best is None else {k: getattr(best, k) for k in best_keys},
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
            "distributed": {"role": ktdist.tuner_id(), "ran_on": self.ran_on}
            if ktdist.active()
            else None,
            "versions": runtime.versions(),
            "trials": [{"rank": i + 1, **r.to_dict()} for i, r in enumerate(ranked)],
        }

    def _no_result(self) -> None:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
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


def _rank(records: list[TrialRecord], direction: str) -> list[TrialRecord]:
    """Finished trials best first, then the others in trial order.

    Ties on the objective go to the better other metric (equal val_accuracy: the lower
    val_loss), then to the earlier trial.
    """
    ok = [r for r in records if r.status == "ok"]
    if direction == "max":  # objective val_accuracy, tie-break val_loss
        ok.sort(key=lambda r: (-(r.objective or 0.0), r.val_loss or 0.0, r.trial))
    else:  # objective val_loss, tie-break val_accuracy
        ok.sort(key=lambda r: (r.objective or 0.0, -(r.val_accuracy or 0.0), r.trial))
    return ok + [r for r in records if r.status != "ok"]
