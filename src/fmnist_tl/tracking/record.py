"""A run folder into its MLflow run, from the folder's own files: what the run lacks of them.

The end of every tracked run, and `fmnist track` for a run recorded later, are this one
function: the params of config.yaml not yet logged, the epochs of history.csv not yet logged
(a run whose store was away for a while gets them back), metrics.json's result and tags, the
files (config.yaml, metrics.json, history.csv, evaluation.json and the plots; best.keras only
with output.tracking_model), then the `fmnist.recorded` tag and the run's end status. Doing
it twice logs nothing twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..layout import RunPaths
from ..paths import read_text, report_paths
from ..records import RunMetrics
from .store import PARENT, RECORDED, Store, TrackingFailure
from .values import (
    config_params,
    epoch_metrics,
    identity_tags,
    read_rows,
    result_metrics,
    result_tags,
)

MODEL_FOLDER = "model"  # where best.keras goes among a run's artifacts


def saved_config(paths: RunPaths) -> dict[str, Any]:
    """The run's config.yaml as saved (no validation: an older run's keys are kept as they
    are), or {} when it cannot be read."""
    try:
        raw = yaml.safe_load(read_text(paths.config))
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def artifacts(paths: RunPaths, model: bool) -> list[tuple[Path, str | None]]:
    """The run's files that exist, each with its folder among the artifacts."""
    files = [paths.config, paths.metrics, paths.history, paths.history_plot]
    files += report_paths(paths.evaluation)
    found: list[tuple[Path, str | None]] = [(f, None) for f in files if f.is_file()]
    if model and paths.best.is_file():
        found.append((paths.best, MODEL_FOLDER))
    return found


def record_run(
    store: Store, run_id: str, paths: RunPaths, *, model: bool, status: str = "FINISHED"
) -> None:
    """Fill MLflow run `run_id` from the run folder, then end it with `status`.

    TrackingFailure when the store fails; MissingFileError when metrics.json is damaged.
    """
    run = store.get(run_id)
    if run is None:
        raise TrackingFailure(f"MLflow at {store.uri}: run {run_id} is gone from it")
    params = config_params(saved_config(paths))
    params = {k: v for k, v in params.items() if k not in run.data.params}
    epochs = epoch_metrics(read_rows(paths.history)) if paths.history.is_file() else []
    logged = {
        key: store.steps(run_id, key) for key in {e[0] for e in epochs} & set(run.data.metrics)
    }
    new = [e for e in epochs if e[2] not in logged.get(e[0], set())]
    results: list[tuple[str, float, int]] = []
    raw = saved_config(paths)
    tags = {k: str(raw[k]) for k in ("seed",) if k in raw}  # a diverged run: no metrics.json
    if paths.metrics.is_file():
        m = RunMetrics.read(paths.metrics)
        results, tags = result_metrics(m), result_tags(m, paths.dir)
    store.log(run_id, params=params, metrics=new + results, tags=tags)
    store.upload(run_id, artifacts(paths, model))
    store.log(run_id, tags={RECORDED: "complete"})
    store.set_status(run_id, status)


def run_state(paths: RunPaths) -> dict[str, Any]:
    """state.json as saved ({} when missing or unreadable): complete, diverged, run id."""
    try:
        raw = json.loads(read_text(paths.state))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def finished(paths: RunPaths) -> str | None:
    """ "FINISHED" (metrics.json written), "FAILED" (diverged) or None (still to resume)."""
    state = run_state(paths)
    if paths.metrics.is_file() and (not state or state.get("complete")):
        return "FINISHED"
    return "FAILED" if state.get("diverged") else None


def track_folder(
    store: Store,
    paths: RunPaths,
    *,
    model: bool,
    parent: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[str, str]:
    """A finished (or diverged) run folder into the store, as the child of `parent`:
    ("recorded" | "completed" | "already recorded", its MLflow run id).

    The run is found by the id its files name, else by its folder's name; one already
    complete is left as it is, one a failed store left half-done is completed.
    """
    status = finished(paths)
    if status is None:
        raise ValueError("unfinished")
    known = run_state(paths).get("mlflow_run_id")
    if paths.metrics.is_file():
        known = RunMetrics.read(paths.metrics).mlflow_run_id or known
    run = (store.get(str(known)) if known else None) or store.find(paths.name, "run")
    if run is not None and run.data.tags.get(RECORDED) == "complete":
        return "already recorded", str(run.info.run_id)
    if run is None:
        start = {**identity_tags(paths.name, "run", paths.dir), **(tags or {})}
        start["fmnist.backfilled"] = "true"  # recorded from its files, after the run
        if parent is not None:
            start[PARENT] = parent
        run_id, what = store.create(paths.name, start), "recorded"
    else:
        run_id, what = str(run.info.run_id), "completed"
    record_run(store, run_id, paths, model=model, status=status)
    return what, run_id
