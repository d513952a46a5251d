"""What a study is made of: its runs, one row per cell (mean ± sample std over its seeds), and
where its files lie. summary.py writes them; markdown.py and plots.py draw them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...layout import PLOT_ACCURACY, PLOT_COST, STUDY_JSON, STUDY_MD
from ...reporting.tables import mean_std
from .grid import SweepPlan


@dataclass
class StudyRun:
    """One finished (or failed) run of a study: what its row needs."""

    cell: str
    seed: int
    run_id: str
    status: str  # ok, diverged
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    wall_time_s: float | None = None
    worker: str | None = None  # the Keras Tuner worker that ran it (distributed sweeps)


@dataclass
class CellRow:
    """One cell: its values and mean ± sample std over its finished seeds."""

    cell: str
    values: dict[str, Any]
    n: int
    seeds: list[int]
    runs: list[str]
    test_accuracy: tuple[float, float] | None
    val_accuracy: tuple[float, float] | None
    wall_time_s: float | None  # mean per run
    diverged: int = 0
    rank: int = 0


@dataclass
class StudyResult:
    """What `run_sweep` found and wrote."""

    study_dir: Path
    plan: SweepPlan
    rows: list[CellRow]
    runs: list[StudyRun]
    complete: bool
    skipped: int = 0  # runs a rerun found finished
    resumed: int = 0  # runs a rerun carried on from their last epoch
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def study_id(self) -> str:
        return self.study_dir.name

    @property
    def json_path(self) -> Path:
        return self.study_dir / STUDY_JSON

    @property
    def markdown_path(self) -> Path:
        return self.study_dir / STUDY_MD

    @property
    def plots(self) -> list[Path]:
        return [self.study_dir / PLOT_ACCURACY, self.study_dir / PLOT_COST]


def cell_rows(plan: SweepPlan, runs: list[StudyRun]) -> list[CellRow]:
    """One row per cell of the plan, best test accuracy first; cells with no run last."""
    rows = []
    for cell in plan.cells:
        mine = sorted((r for r in runs if r.cell == cell.id), key=lambda r: r.seed)
        ok = [r for r in mine if r.status == "ok"]
        acc = [float(r.test_accuracy) for r in ok if r.test_accuracy is not None]
        val = [float(r.val_accuracy) for r in ok if r.val_accuracy is not None]
        wall = [float(r.wall_time_s) for r in ok if r.wall_time_s is not None]
        rows.append(
            CellRow(
                cell=cell.id,
                values=dict(cell.values),
                n=len(ok),
                seeds=[r.seed for r in ok],
                runs=[r.run_id for r in ok],
                test_accuracy=mean_std(acc) if acc else None,
                val_accuracy=mean_std(val) if val else None,
                wall_time_s=sum(wall) / len(wall) if wall else None,
                diverged=len(mine) - len(ok),
            )
        )
    rows.sort(key=lambda r: (r.test_accuracy is None, -(r.test_accuracy or (0.0, 0.0))[0]))
    for i, row in enumerate(rows, 1):
        row.rank = i
    return rows
