"""A search's summary: leaderboard.json, leaderboard.md and best.yaml, rewritten (atomically)
after every trial, so Ctrl-C or a hard kill leaves the finished trials' results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ... import atomic, metrics
from ...config import Config, apply_values
from ...errors import ConfigError, TrainingDiverged
from ...layout import BEST_CONFIG, LEADERBOARD, LEADERBOARD_MD
from ...machine import versions
from ...records import TrialRecord
from ...reporting.tables import format_value, markdown_row
from ..ktdist import PROJECT


@dataclass
class TuneResult:
    tune_id: str
    tune_dir: Path
    leaderboard: dict[str, Any]  # what leaderboard.json holds
    best: TrialRecord | None  # the best trial (None when no trial finished)
    best_config: Path | None  # best.yaml


@dataclass
class Leaderboard:
    """What a search has found so far, and the files that hold it."""

    dir: Path
    base: Config
    trials: int  # requested
    data: dict[str, Any]  # the data every trial is scored on
    t_start: float
    records: list[TrialRecord] = field(default_factory=list)
    feature_log: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    distributed: dict[str, Any] | None = None  # role and ran_on, in Keras Tuner's mode

    @property
    def objective(self) -> str:
        return self.base.tune.objective

    @property
    def direction(self) -> str:
        return metrics.direction(self.objective)

    @property
    def markdown_path(self) -> Path:
        return self.dir / LEADERBOARD_MD

    def write(self) -> TuneResult:
        """leaderboard.json, leaderboard.md and best.yaml as of now (atomic writes)."""
        ranked = rank(self.records, self.direction)
        best = ranked[0] if ranked and ranked[0].status == "ok" else None
        best_path = self._write_best(best) if best is not None else None
        board = self._board(ranked, best, best_path)
        atomic.write_json(self.dir / LEADERBOARD, board)
        atomic.write_text(self.markdown_path, tune_markdown(board))
        return TuneResult(self.dir.name, self.dir, board, best, best_path)

    def no_result(self) -> None:
        """No trial finished: say why (exit 4 when they diverged, 2 when their values clash)."""
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        what = ", ".join(f"{v} {k}" for k, v in counts.items())
        where = self.markdown_path
        if "diverged" in counts or "failed" in counts:
            raise TrainingDiverged(
                f"no trial finished ({what}); see {where}; narrow the space, e.g. a lower "
                "maximum train.learning_rate"
            )
        raise ConfigError(
            f"no trial could run ({what}): the sampled values clash; see {where} and narrow "
            "tune.space"
        )

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
        import keras_tuner as kt

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
            "data": self.data,
            "keras_tuner": {"version": kt.__version__, "project_dir": PROJECT},
            "distributed": self.distributed,
            "versions": versions(),
            "trials": [{"rank": i + 1, **r.to_dict()} for i, r in enumerate(ranked)],
        }


def rank(records: list[TrialRecord], direction: str) -> list[TrialRecord]:
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


def tune_markdown(board: dict[str, Any]) -> str:
    """leaderboard.md: every trial, best first, then what failed and why."""
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
        cells = [r["rank"], r["trial"], r["status"], _opt(r["val_accuracy"], ".4f")]
        cells += [_opt(r["val_loss"], ".4f"), r["epochs_run"], _opt(r["best_epoch"], "")]
        cells += [f"{r['seconds']:.1f}", *(format_value(r["values"][k]) for k in keys)]
        lines.append(markdown_row(cells))
    failed = [r for r in board["trials"] if r["message"]]
    if failed:
        lines += ["", *(f"- trial {r['trial']} {r['status']}: {r['message']}" for r in failed)]
    return "\n".join(lines) + "\n"


def _opt(value: Any, spec: str) -> str:
    """A value that may be missing (a failed trial): empty then."""
    return "" if value is None else format(value, spec)


def trial_scores(record: TrialRecord) -> dict[str, Any]:
    """A trial as its MLflow child run holds it: its status (a tag) and numbers (metrics)."""
    keys = ("objective", "val_accuracy", "val_loss", "epochs_run", "best_epoch", "seconds")
    return {"status": record.status, **{k: getattr(record, k) for k in keys}}
