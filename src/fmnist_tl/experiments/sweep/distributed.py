"""`fmnist sweep` on several machines: the grid x seeds on Keras Tuner's GridSearch oracle.

The search space is one Choice per swept key (its values as indices, so any YAML value
travels) plus a Choice of `seed`, so each trial is one cell x seed and the GridSearch oracle
hands out every combination exactly once. A worker trains its trial as a normal run in its
own study folder (`<name>-sweep-<tuner id>-<timestamp>`) and reports the run's test accuracy,
validation accuracy and wall time; the chief, which trains nothing, writes study.json,
study.md and the plots from those numbers after every trial.

What the oracle cannot carry: files. The run folders (models, histories, metrics.json) stay
on the worker that trained them, and the feature cache is per machine unless output.cache_dir
is on shared storage. A distributed sweep is not resumable: the chief starts a new oracle.
Tracked (output.tracking), every machine writes to one store (a server: a SQLite file is for
one machine): the chief's parent run, and each worker's runs as its children.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import tracking
from ...errors import TrainingDiverged
from ...paths import fresh_folder
from ...training.trainer import train
from .. import ktchief, ktdist
from .grid import Cell, SweepPlan
from .runner import read_run, run_folder
from .study import StudyResult, StudyRun, cell_rows
from .summary import study_params, write_study

SEED = "seed"  # the extra grid dimension


def active() -> bool:
    return ktdist.active()


def run_distributed(plan: SweepPlan, *, on_run: Callable[..., None] | None = None) -> StudyResult:
    """Serve the grid (chief) or run trials from it (worker) until every trial is done."""
    import keras_tuner as kt

    rt = plan.base.runtime
    ktdist.prepare(rt)  # the chief's port free; a worker's chief there (or exit 3)
    root = Path(plan.base.output.dir)
    study_dir = fresh_folder(root, ktdist.folder_name(plan.name), what="study")
    result = StudyResult(study_dir, plan, [], [], complete=False)
    result.extra = {"distributed": {"role": ktdist.tuner_id(), "workers": {}}}
    tuner = _GridTuner(
        plan,
        result,
        on_run,
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=plan.total,
        hyperparameters=_space(plan),
        tune_new_entries=False,
        allow_new_entries=False,
        max_consecutive_failed_trials=plan.total + 1,
        directory=str(study_dir),
        project_name=ktdist.PROJECT,
    )
    _publish(result)
    # With output.tracking the chief makes the study's parent run; each worker finds it (by
    # the plan and the chief's address) and logs its own runs as its children.
    key, chief = f"{plan.key()}@{ktdist.oracle_address()}", ktdist.is_chief()
    params, name = study_params(plan), study_dir.name
    with tracking.study(plan.base, "sweep", name, identity=name if chief else None,
                        params=params, varying=["seed", *plan.grid], key=key,
                        join=not chief) as study:  # fmt: skip
        tuner.study = study
        if chief:
            tuner.save()
            on_end = lambda trial, who: _chief_record(result, trial, who)  # noqa: E731
            ktchief.serve(tuner.oracle, on_end, rt, plan.total)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
                try:
                    ktdist.work(tuner, lambda: tuner.search(verbose=0), rt)
                except kt.errors.FatalError as exc:  # a run's own failure (Interrupted, a disk...)
                    raise (exc.__cause__ or exc) from None
        result.complete = len(result.runs) == plan.total
        _publish(result)
        study.done(**tracking.sweep_summary(result.study_dir))
    return result


def _space(plan: SweepPlan) -> Any:
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for key, values in plan.grid.items():
        hp.Choice(key, list(range(len(values))))
    hp.Choice(SEED, list(plan.seeds))
    return hp


def _cell(plan: SweepPlan, hp_values: dict[str, Any]) -> tuple[Cell, int]:
    values = {k: plan.grid[k][int(hp_values[k])] for k in plan.grid}
    cell = next(c for c in plan.cells if c.values == values)
    return cell, int(hp_values[SEED])


def _cell_tags(plan: SweepPlan, hp_values: dict[str, Any]) -> dict[str, Any]:
    cell, seed = _cell(plan, hp_values)
    return {"fmnist.cell": cell.id, "fmnist.seed": seed}


def _publish(result: StudyResult) -> None:
    result.rows = cell_rows(result.plan, result.runs)
    write_study(result)


def _chief_record(result: StudyResult, trial: Any, tuner_id: str) -> None:
    """A finished trial, as the worker reported it, into the chief's study files."""
    cell, seed = _cell(result.plan, trial.hyperparameters.values)
    acc = ktdist.metric(trial, "test_accuracy")
    run = StudyRun(
        cell.id,
        seed,
        f"{tuner_id}:{result.plan.run_name(cell, seed)}",
        "ok" if acc is not None and math.isfinite(acc) else "diverged",
        test_accuracy=acc,
        val_accuracy=ktdist.metric(trial, "val_accuracy"),
        wall_time_s=ktdist.metric(trial, "wall_time_s"),
        worker=tuner_id,
    )
    result.runs.append(run)
    result.extra["distributed"]["workers"][f"{cell.id}-s{seed}"] = tuner_id
    _publish(result)


class _GridTuner:
    """Built lazily as a kt.GridSearch subclass (keras_tuner loads only when needed)."""

    def __new__(cls, plan: SweepPlan, result: StudyResult, on_run: Any, **kwargs: Any) -> Any:
        import keras_tuner as kt

        class GridTuner(kt.GridSearch):
            study: Any = tracking.NO_STUDY

            def run_trial(self, trial: Any, *args: Any, **kw: Any) -> dict[str, float]:
                try:
                    values = trial.hyperparameters.values
                    with self.study.child(_cell_tags(plan, values)):
                        return _worker_trial(plan, result, on_run, values)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # not the trial's fault: stop, surface it
                    raise kt.errors.FatalError(str(exc)) from exc

        return GridTuner(**kwargs)


def _worker_trial(
    plan: SweepPlan, result: StudyResult, on_run: Any, hp_values: dict[str, Any]
) -> dict[str, float]:
    """Train one cell x seed as a normal run in this worker's study folder."""
    cell, seed = _cell(plan, hp_values)
    with contextlib.suppress(TrainingDiverged):  # recorded as diverged below
        train(plan.run_config(cell, seed, result.study_dir))
    folder = run_folder(result.study_dir, plan.run_name(cell, seed))
    assert folder is not None
    run = read_run(folder, cell, seed)
    run.worker = ktdist.tuner_id()
    result.runs.append(run)
    _publish(result)  # this worker's own runs, from their metrics.json
    if on_run is not None:
        on_run(len(result.runs), plan.total, cell, seed, "trained", run)
    if run.status != "ok":
        return {"val_accuracy": math.nan}  # the oracle marks it invalid and goes on
    return {
        "val_accuracy": run.val_accuracy if run.val_accuracy is not None else math.nan,
        "test_accuracy": float(run.test_accuracy or 0.0),
        "wall_time_s": float(run.wall_time_s or 0.0),
    }
