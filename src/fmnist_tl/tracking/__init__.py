"""Experiment tracking in MLflow (output.tracking: mlflow): runs, repeat groups, sweeps and
searches recorded in a tracking store, a SQLite file beside the runs by default.

`store` (every call to MLflow, failures as one line), `values` (what a run records: params,
metrics, tags), `record` (a run folder into its MLflow run), `run` (a run's MLflow run across
its sittings), `study` (a study's parent run, its runs as children) and `backfill` (`fmnist
track`: finished folders recorded afterwards). Nothing here imports MLflow until a store is
opened, and with tracking off none is.
"""

from __future__ import annotations

from .run import OFF as NO_RUN
from .run import RunTracker, open_run
from .store import TrackingFailure, require
from .study import OFF as NO_STUDY
from .study import StudyTracker, study
from .summaries import repeat_summary, sweep_summary, tune_summary

__all__ = [
    "NO_RUN",
    "NO_STUDY",
    "RunTracker",
    "StudyTracker",
    "TrackingFailure",
    "open_run",
    "repeat_summary",
    "require",
    "study",
    "sweep_summary",
    "tune_summary",
]
