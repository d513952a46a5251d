"""A study's summary as its parent MLflow run holds it, read from the study's own files.

The same for a study recorded while it runs and one recorded later by `fmnist track`:
metrics (mean ± std per cell, or the leaderboard's counts and best scores), tags (the best
cell's or trial's values), the study's Markdown as the run's description, and its files as
artifacts. Each returns the keyword arguments of `StudyTracker.done`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..layout import (
    BEST_CONFIG,
    LEADERBOARD,
    LEADERBOARD_MD,
    PLOT_ACCURACY,
    PLOT_COST,
    REPEAT_JSON,
    REPEAT_MD,
    STUDY_JSON,
    STUDY_MD,
)
from ..paths import read_text
from ..records import read_json_object as read_json  # backfill reads them too


def _note(path: Path) -> str | None:
    try:
        return read_text(path)
    except OSError:  # none (a study without it), or not a file to read
        return None


def _pair(metrics: dict[str, float], key: str, pair: Any) -> None:
    """{"mean": m, "std": s} as KEY_mean and KEY_std."""
    if isinstance(pair, dict):
        for part in ("mean", "std"):
            if isinstance(pair.get(part), int | float):
                metrics[f"{key}_{part}"] = pair[part]


def sweep_summary(study_dir: Path) -> dict[str, Any]:
    """study.json: per cell `c01/test_accuracy_mean`, `_std`, `c01/val_accuracy_mean`, ...,
    `c01/n`; the best cell's mean and its values (tags `best.<key>`)."""
    study = read_json(study_dir / STUDY_JSON)
    metrics: dict[str, float] = {"runs_done": study.get("runs_done", 0)}
    tags: dict[str, Any] = {"run_dir": study_dir.resolve()}
    cells = [c for c in study.get("cells") or [] if isinstance(c, dict)]
    for cell in cells:
        metrics[f"{cell['cell']}/n"] = cell.get("n", 0)
        for key in ("test_accuracy", "val_accuracy"):
            _pair(metrics, f"{cell['cell']}/{key}", cell.get(key))
    ranked = [c for c in cells if isinstance(c.get("test_accuracy"), dict)]
    if ranked:
        best = min(ranked, key=lambda c: c.get("rank", 0))
        metrics["best_test_accuracy_mean"] = best["test_accuracy"]["mean"]
        tags["best_cell"] = best["cell"]
        tags.update({f"best.{k}": v for k, v in (best.get("values") or {}).items()})
    files = [study_dir / name for name in (STUDY_JSON, STUDY_MD, PLOT_ACCURACY, PLOT_COST)]
    return {"metrics": metrics, "tags": tags, "files": files, "note": _note(study_dir / STUDY_MD)}


def repeat_summary(group_dir: Path) -> dict[str, Any]:
    """repeat.json: test_accuracy_mean/_std, test_loss_mean/_std, n; the seeds as a tag."""
    group = read_json(group_dir / REPEAT_JSON)
    metrics: dict[str, float] = {"n": group.get("n", 0)}
    _pair(metrics, "test_accuracy", group.get("accuracy"))
    _pair(metrics, "test_loss", group.get("loss"))
    tags = {"run_dir": group_dir.resolve(), "seeds": ", ".join(map(str, group.get("seeds", [])))}
    files = [group_dir / REPEAT_JSON, group_dir / REPEAT_MD]
    note = _note(group_dir / REPEAT_MD)
    return {
        "metrics": metrics,
        "tags": tags,
        "files": files,
        "note": note,
        "identity": group_dir.name,
    }


def tune_summary(tune_dir: Path) -> dict[str, Any]:
    """leaderboard.json: trials_run, trials_ok, the best trial's number and scores; its
    values as tags `best.<key>`."""
    board = read_json(tune_dir / LEADERBOARD)
    trials = [t for t in board.get("trials") or [] if isinstance(t, dict)]
    metrics = {"trials_run": len(trials), "trials_ok": sum(t.get("status") == "ok" for t in trials)}
    tags: dict[str, Any] = {"run_dir": tune_dir.resolve()}
    best = board.get("best")
    if isinstance(best, dict):
        metrics.update(best_trial=best.get("trial"), best_objective=best.get("objective"))
        metrics.update(
            best_val_accuracy=best.get("val_accuracy"), best_val_loss=best.get("val_loss")
        )
        tags.update({f"best.{k}": v for k, v in (best.get("values") or {}).items()})
    files = [tune_dir / name for name in (LEADERBOARD, LEADERBOARD_MD, BEST_CONFIG)]
    return {
        "metrics": metrics,
        "tags": tags,
        "files": files,
        "note": _note(tune_dir / LEADERBOARD_MD),
    }
