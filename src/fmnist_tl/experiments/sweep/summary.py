"""A study's table: one row per cell, built from its runs, and the files that hold it.

study.json and study.md are rewritten (atomically) after every run, from the runs finished so
far, so they are true at every moment: a cell's n says how many of its seeds are in its
numbers, and `complete` says whether every run of the plan has finished.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from ... import atomic
from .grid import SweepPlan
from .markdown import study_markdown
from .plots import plot_study_accuracy, plot_study_cost
from .study import CellRow, StudyResult


def write_study(result: StudyResult) -> None:
    """study.json, study.md and the two plots, as of now (each written atomically)."""
    atomic.write_json(result.json_path, study_dict(result))
    atomic.write_text(result.markdown_path, study_markdown(result))
    if any(r.n for r in result.rows):
        plot_study_accuracy(result.plan.grid, result.runs, result.plan, result.plots[0])
        plot_study_cost(result.rows, result.plots[1])


def study_dict(result: StudyResult) -> dict[str, Any]:
    """What study.json holds."""
    plan = result.plan
    done = [r for r in result.runs if r.status == "ok"]
    return {
        "study_id": result.study_id,
        "config_name": plan.base.output.name,
        "created": datetime.now().isoformat(timespec="seconds"),
        "key": plan.key(),
        "complete": result.complete,
        "grid": plan.grid,
        "seeds": plan.seeds,
        "runs_total": plan.total,
        "runs_done": len(done),
        "runs_diverged": len(result.runs) - len(done),
        "std_ddof": 1,  # sample standard deviation over a cell's seeds
        "scored_on": "test accuracy of each run's best epoch (by train.monitor)",
        "data": {
            "train_limit": plan.base.data.train_limit,
            "test_limit": plan.base.data.test_limit,
            "val_split": plan.base.data.val_split,
        },
        **result.extra,
        "cells": [_row_dict(r) for r in result.rows],
        "runs": [asdict(r) for r in result.runs],
    }


def _row_dict(row: CellRow) -> dict[str, Any]:
    d = asdict(row)
    for key in ("test_accuracy", "val_accuracy"):
        pair = getattr(row, key)
        d[key] = None if pair is None else {"mean": pair[0], "std": pair[1]}
    return {"rank": d.pop("rank"), **d}


def study_params(plan: SweepPlan) -> dict[str, Any]:
    """The study's config as its parent run's params: the base, with the grid it sweeps."""
    raw = plan.base.to_dict()
    raw["sweep"] = {"grid": plan.grid, "seeds": len(plan.seeds)}
    return raw
