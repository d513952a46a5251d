"""The names of the files fmnist writes, spelled here and nowhere else.

A run folder's files are reached through `RunPaths` (training.runfolder.RunFolder, which writes
them, is one); what output.dir publishes, and a repeat group's, a sweep's and a search's files,
are named beside it. The
readers below training (comparisons, evaluation, the config beside a model) use the same
names, so a renamed file is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"  # the resolved config of a run, beside its model
METRICS = "metrics.json"
HISTORY = "history.csv"
HISTORY_PLOT = "history.png"
STATE = "state.json"  # the resume point, marked complete at the end
EVALUATION = "evaluation.json"  # its pictures: paths.report_paths
BEST = "best.keras"
LAST = "last.keras"  # the model after the last committed epoch, with its optimizer
LAST_HEAD = "last_head.keras"  # the same, while a part of the model trains on cached inputs
BEST_HEAD = "best_head.keras"
TMP = ".tmp"  # a sitting's temporary files (Python's tempfile points here)
SCRATCH = (LAST, LAST_HEAD, BEST_HEAD)  # per-epoch files, deleted when the run completes

REPEAT_JSON = "repeat.json"  # a repeat group folder: its runs and their mean ± std
REPEAT_MD = "repeat.md"
STUDY_JSON = "study.json"  # a sweep's study folder: its cells, runs and mean ± std
STUDY_MD = "study.md"
PLOT_ACCURACY = "study_accuracy.png"
PLOT_COST = "study_cost.png"
LEADERBOARD = "leaderboard.json"  # a search's folder: every trial, best first
LEADERBOARD_MD = "leaderboard.md"
BEST_CONFIG = "best.yaml"  # the base config with the best trial's values
TRACKING_SKIP = ("mlartifacts", "mlruns", "keras_tuner")  # folders of MLflow's and Keras
# Tuner's own, holding copies of run files: never taken for runs (`fmnist track` walks past)

PUBLISHED = ("best", "latest")  # what a run with output.update_best publishes in output.dir
PUBLISHED_SUFFIXES = (".keras", ".config.yaml", ".json")  # the model, its config, its record
PUBLISH_LOCK = ".publish.lock"  # the one lock file in output.dir


@dataclass(frozen=True)
class RunPaths:
    """Where each file of one run folder lies."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / CONFIG

    @property
    def metrics(self) -> Path:
        return self.dir / METRICS

    @property
    def history(self) -> Path:
        return self.dir / HISTORY

    @property
    def history_plot(self) -> Path:
        return self.dir / HISTORY_PLOT

    @property
    def state(self) -> Path:
        return self.dir / STATE

    @property
    def evaluation(self) -> Path:
        return self.dir / EVALUATION

    @property
    def best(self) -> Path:
        return self.dir / BEST

    @property
    def best_head(self) -> Path:
        return self.dir / BEST_HEAD

    @property
    def tmp(self) -> Path:
        return self.dir / TMP

    @property
    def name(self) -> str:
        return self.dir.name

    def model(self, name: str) -> Path:
        """One of the per-epoch model files (LAST, LAST_HEAD)."""
        return self.dir / name


def published_files(root: Path) -> list[Path]:
    """best.keras, best.config.yaml, best.json, latest.* and the lock: what a run publishes."""
    files = [root / f"{n}{s}" for n in PUBLISHED for s in PUBLISHED_SUFFIXES]
    return [*files, root / PUBLISH_LOCK]
