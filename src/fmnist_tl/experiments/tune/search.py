"""`fmnist tune`: random hyperparameter search, each trial scored on stage 1 on validation.

Keras Tuner's RandomSearch oracle samples the values (seeded by `seed`: the same seed gives the
same trials); `_Tuner.run_trial` runs each trial with this tool's own pieces (trial.py): the
base config with the sampled values applied and validated, seeds reset, then stage 1 only:

* with the stage-1 backbone frozen, no augmentation and `train.feature_cache: auto` (when
  `fmnist train` caches), the pooled features come from the feature cache, extracted or loaded
  once per cache key for the whole search, and only the head trains on them (seconds a trial);
* otherwise the full model trains on streamed images, as `fmnist train` would.

A trial's numbers are the validation split's at the epoch early stopping keeps (the best
`train.monitor`); the test set is never used. A trial whose loss turns NaN/inf is recorded as
diverged and the search goes on. leaderboard.json, leaderboard.md and best.yaml are rewritten
after every trial (leaderboard.py), so Ctrl-C (exit 130) or a hard kill leaves the completed
trials' results.
Keras Tuner's own project files (oracle state, one trial.json per trial, its choice values as
indices) stay in the folder's `keras_tuner/`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt

from ... import tracking
from ...config import Config, SearchDim, check_search, search_space
from ...errors import Interrupted
from ...paths import check_run_outputs, fresh_folder
from ...records import HEAD, TrialRecord
from ...training import runtime
from ...training.features import FeatureStore
from ...training.interrupts import StopSignals
from ...training.optim import check_warmups, steps_per_epoch
from ...training.splits import Splits, prepare_data
from .. import ktchief, ktdist
from .leaderboard import Leaderboard, TuneResult, trial_scores
from .trial import run_trial, trial_config

TrialCallback = Callable[[TrialRecord, int], None]


def plan_tune(config: Config, trials: int | None = None) -> tuple[int, list[SearchDim]]:
    """How many trials, over which dimensions: checked before any work (ConfigError)."""
    n = check_search(config, trials)
    dims = search_space(config)
    check_run_outputs(config.output, publish=False)  # a log or cache folder that is a file
    tracking.require(config.output)
    ktdist.role()  # Keras Tuner's variables (exit 2 naming one), before any folder is made
    return n, dims


def tune(
    config: Config, trials: int | None = None, *, on_trial: TrialCallback | None = None
) -> TuneResult:
    """Search `config.tune.space` with `trials` trials (default tune.trials), write the results.

    `on_trial(record, trials)` is called after each trial with its leaderboard record.
    """
    t_start = time.perf_counter()
    n, dims = plan_tune(config, trials)
    ktdist.prepare(config.runtime)  # the chief's port free; a worker's chief there (or exit 3)
    runtime.apply(config)
    splits = prepare_data(config)  # before the folder: missing data leaves nothing behind
    check_warmups(config, [HEAD], steps_per_epoch(len(splits.x_train), config.train.batch_size))
    name = ktdist.folder_name(f"{config.output.name or 'default'}-tune")  # a worker: its id
    tune_dir = fresh_folder(Path(config.output.dir), name, what="tune")
    data = {
        "source": splits.source,
        "train": int(len(splits.x_train)),
        "val": int(len(splits.x_val)),
    }
    board = Leaderboard(tune_dir, config, n, data, t_start)
    if ktdist.active():
        board.distributed = {"role": ktdist.tuner_id(), "ran_on": {}}
    return _Search(config, dims, splits, board, on_trial).run()


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
        splits: Splits,
        board: Leaderboard,
        on_trial: TrialCallback | None,
    ) -> None:
        self.base, self.dims, self.splits, self.board = config, dims, splits, board
        self.trials, self.on_trial = board.trials, on_trial
        self.objective = config.tune.objective
        self.store = FeatureStore()  # features reused by every trial with the same backbone
        self.signals = StopSignals()
        self.study = tracking.NO_STUDY  # the search's MLflow run (output.tracking)

    def run(self) -> TuneResult:
        """The search, with output.tracking a parent MLflow run and each trial its child
        (in a distributed search the chief's parent, the workers' trials)."""
        chief, name = not ktdist.is_worker(), self.board.dir.name
        key = f"{self.base.output.name}@{ktdist.oracle_address()}" if ktdist.active() else None
        with tracking.study(self.base, "tune", name, identity=name if chief else None,
                            varying=self.base.tune.space, key=key,
                            join=not chief) as self.study:  # fmt: skip
            result = self._search()
            self.study.done(**tracking.tune_summary(result.tune_dir))
        return result

    def _search(self) -> TuneResult:
        tuner = _Tuner(
            self,
            objective=kt.Objective(self.objective, self.board.direction),
            max_trials=self.trials,
            seed=self.base.seed,
            hyperparameters=_hyperparameters(self.dims),
            tune_new_entries=False,
            allow_new_entries=False,
            max_consecutive_failed_trials=self.trials + 1,  # failures are recorded, not fatal
            directory=str(self.board.dir),
            project_name=ktdist.PROJECT,
        )
        if not ktdist.is_worker():  # a worker's oracle is the chief's, over gRPC
            # Keras Tuner replaces a seed of 0 by a random one; the search must follow `seed`.
            tuner.oracle.seed = tuner.oracle._seed_state = self.base.seed
        if ktdist.is_chief():
            tuner.save()
            ktchief.serve(tuner.oracle, self._record_remote, self.base.runtime, self.trials)
            return self._finish()
        try:
            # SIGINT/SIGTERM: the unfinished trial is dropped, the finished ones are kept.
            with self.signals, warnings.catch_warnings():
                self.signals.defer = True  # stop at the end of a batch or between trials
                # A failed trial's NaN score: numpy warns inside Keras Tuner's bookkeeping.
                warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
                if ktdist.is_worker():  # the chief watched; a lost one ends it (exit 3)
                    ktdist.work(tuner, lambda: tuner.search(verbose=0), self.base.runtime)
                else:
                    tuner.search(verbose=0)
        except KeyboardInterrupt:
            self.board.stopped = "interrupted"
            result = self.board.write()
            best = f"; best so far: {result.best_config}" if result.best_config else ""
            raise Interrupted(
                f"interrupted after {len(self.board.records)} of {self.trials} trials; the "
                f"leaderboard of the completed trials is {self.board.markdown_path}{best}"
            ) from None
        except kt.errors.FatalError as exc:
            self.board.write()  # the trials that completed stay on record
            raise (exc.__cause__ or exc) from None
        return self._finish()

    def _finish(self) -> TuneResult:
        if len(self.board.records) < self.trials and not ktdist.is_worker():
            self.board.stopped = "search space exhausted"  # the oracle found no new combination
        result = self.board.write()
        if result.best is None and not ktdist.is_worker():  # a worker may get no trial
            self.board.no_result()
        return result

    def _record_remote(self, trial: Any, tuner_id: str) -> None:
        """The chief: a trial a worker finished, from the numbers its Trial proto carries."""
        values = _decode(self.dims, trial.hyperparameters.values)
        record = ktdist.trial_record(trial, values, self.objective, tuner_id)
        assert self.board.distributed is not None
        self.board.distributed["ran_on"][str(record.trial)] = tuner_id
        self._add(record)

    def run_trial(self, hp_values: dict[str, Any], trial_id: str | None = None) -> dict[str, float]:
        if self.signals.requested:  # between trials: act on a signal the handler noted
            self.signals.act()
            raise KeyboardInterrupt  # leaves Keras Tuner's loop: not an Exception
        t0 = time.perf_counter()
        # The trial's number: its order here, or the oracle's id when it serves several workers.
        n = len(self.board.records) + 1
        number = int(trial_id) + 1 if ktdist.is_worker() and trial_id else n
        record = TrialRecord(number, _decode(self.dims, hp_values))
        # Ctrl-C or an unexpected error propagates from here: an unfinished trial is not recorded.
        config, rows = trial_config(self.base, record), []
        if config is not None:
            logged = len(self.store.log)
            log_dir = Path(config.output.log_dir) / self.board.dir.name / f"trial_{number:03d}"
            try:
                rows = run_trial(config, record, self.splits, self.store, self.signals, log_dir)
            finally:
                self._log_features(logged, number)
        record.seconds = round(time.perf_counter() - t0, 3)
        self._add(record)
        self.study.trial(
            number,
            config.to_dict() if config else record.values,
            trial_scores(record),
            rows,
            record.message,
        )
        if record.status != "ok":
            # A NaN score makes Keras Tuner mark the trial FAILED and go on (FailedTrialError
            # would do the same but print a traceback: keras_tuner's DEBUG is on by default).
            return {self.objective: math.nan}
        extra = {"epochs_run": record.epochs_run, "best_epoch": record.best_epoch or 0}
        scores = {"val_accuracy": record.val_accuracy, "val_loss": record.val_loss, **extra}
        return {**scores, "seconds": record.seconds}

    def _add(self, record: TrialRecord) -> None:
        self.board.records.append(record)
        self.board.write()
        if self.on_trial is not None:
            self.on_trial(record, self.trials)

    def _log_features(self, logged: int, trial: int) -> None:
        """The feature loads or extractions this trial caused, for the leaderboard."""
        for info in self.store.log[logged:]:
            self.board.feature_log.append(
                {
                    "trial": trial,
                    "key": info["key"],
                    "cache": info["cache"],
                    "seconds": round(info["seconds"], 3),
                    "path": info["path"],
                }
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
