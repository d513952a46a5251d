"""A study's two pictures: accuracy per value of each swept key, and accuracy against cost.

Both are drawn from the study's run records (each run's own metrics.json), with error bars of
± one sample standard deviation, and written atomically like every other PNG
(reporting.plots.save_figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...reporting.plots import PathLike, plt, save_figure
from ...reporting.tables import mean_std

if TYPE_CHECKING:
    from .grid import SweepPlan
    from .study import CellRow, StudyRun


def plot_study_accuracy(
    grid: dict[str, list[Any]], runs: list[StudyRun], plan: SweepPlan, path: PathLike
) -> None:
    """One panel per swept key: test accuracy over every run with that value, mean ± std."""
    values_of = {c.id: c.values for c in plan.cells}
    keys = list(grid)
    fig, axes = plt.subplots(
        1, len(keys), figsize=(4.2 * len(keys) + 1, 4), squeeze=False, constrained_layout=True
    )
    for ax, key in zip(axes[0], keys, strict=True):
        labels, means, errs, ns = [], [], [], []
        for value in grid[key]:
            acc = [
                float(r.test_accuracy)
                for r in runs
                if r.status == "ok"
                and r.test_accuracy is not None
                and values_of[r.cell][key] == value
            ]
            labels.append(str(value))
            mean, std = mean_std(acc) if acc else (np.nan, 0.0)
            means.append(mean)
            errs.append(std)
            ns.append(len(acc))
        x = np.arange(len(labels))
        ax.errorbar(x, means, yerr=errs, fmt="o", capsize=5, color="tab:blue")
        for xi, m, n in zip(x, means, ns, strict=True):
            if n:
                ax.annotate(
                    f"{m:.4f}\nn={n}",
                    (xi, m),
                    textcoords="offset points",
                    xytext=(8, 0),
                    fontsize=8,
                    va="center",
                )
        ax.set_xticks(x, labels=labels)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xlabel(key)
        ax.set_ylabel("test accuracy")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("test accuracy per value of each swept key (mean ± sample std over runs)")
    save_figure(fig, path)


def plot_study_cost(rows: list[CellRow], path: PathLike) -> None:
    """Test accuracy against wall time per run, one point per cell, error bars ± std.

    Points carry their cell id; the legend below says which values each cell holds.
    """
    done = [r for r in rows if r.test_accuracy is not None and r.wall_time_s is not None]
    fig, ax = plt.subplots(figsize=(8, 5.5 + 0.22 * len(done)), constrained_layout=True)
    for r in done:
        assert r.test_accuracy is not None and r.wall_time_s is not None
        mean, std = r.test_accuracy
        values = ", ".join(f"{k}={v}" for k, v in r.values.items())
        ax.errorbar([r.wall_time_s], [mean], yerr=[std], fmt="o", capsize=4,
                    label=f"{r.cell}: {values} (n={r.n})")  # fmt: skip
        ax.annotate(r.cell, (r.wall_time_s, mean), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)  # fmt: skip
    ax.set_xlabel("wall time per run (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy against cost, per cell (± sample std over seeds)")
    ax.grid(alpha=0.3)
    if done:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    save_figure(fig, path)
