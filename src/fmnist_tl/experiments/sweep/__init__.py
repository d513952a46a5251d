"""`fmnist sweep`: a grid of config values x seeds, each a normal run, summarised as a study.

`grid` checks the plan before any work, `runner` runs it on one machine (resumable),
`distributed` hands the grid to Keras Tuner's GridSearch oracle when KERASTUNER_* is set, and
`summary` turns the runs into study.json, study.md and the plots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .grid import MAX_RUNS, Cell, SweepPlan, plan_sweep

if TYPE_CHECKING:
    from ...config import Config
    from .study import StudyResult

__all__ = ["MAX_RUNS", "Cell", "SweepPlan", "plan_sweep", "run_sweep", "sweep"]


def sweep(plan: SweepPlan, *, on_run: Callable[..., None] | None = None) -> StudyResult:
    """Run the plan: on this machine, or as one of a Keras Tuner chief and its workers."""
    from . import distributed

    if distributed.active():
        return distributed.run_distributed(plan, on_run=on_run)
    from .runner import run_local

    return run_local(plan, on_run=on_run)


def run_sweep(
    config: Config,
    grid: list[str] | None = None,
    seeds: int | None = None,
    *,
    on_run: Callable[..., Any] | None = None,
    max_runs: int | None = None,
) -> StudyResult:
    """The Python API of `fmnist sweep CONFIG --grid KEY=V1,V2 --seeds N --max-runs M`
    (`max_runs` None: MAX_RUNS)."""
    return sweep(plan_sweep(config, grid, seeds, max_runs), on_run=on_run)
