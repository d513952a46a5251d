"""The rows of a comparison: one per run or repeat group, built from saved artifacts only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tables import plus_minus


@dataclass
class RunRow:
    """One row of a comparison: a single run, or a repeat group's mean ± sample std."""

    run: str
    backbone: str
    input_size: int | str | None  # a group whose runs differ: their values joined by "/"
    resize_method: str | None
    weights: str | None
    stages: str  # "head+finetune", plus ", test flip" when tested with the mirror image
    epochs: int | float | None  # a group stopped at different epochs: the mean; None: unknown
    accuracy: float
    accuracy_std: float | None  # None for a single run
    loss: float | None  # None: not recorded (a row included from a comparison.csv without it)
    loss_std: float | None
    n: int
    wall_time_s: float  # per run, so a group's cost compares directly with a single run's
    path: str

    @property
    def epochs_text(self) -> str:
        """A group stopped at different epochs: their mean; an included row may not say."""
        if self.epochs is None:
            return "-"
        return f"{self.epochs:.1f}" if isinstance(self.epochs, float) else str(self.epochs)

    @property
    def accuracy_text(self) -> str:
        return plus_minus(self.accuracy, self.accuracy_std)

    @property
    def loss_text(self) -> str:
        return "-" if self.loss is None else plus_minus(self.loss, self.loss_std)


@dataclass
class Comparison:
    """What `compare_runs` found and wrote."""

    rows: list[RunRow]
    markdown: str
    markdown_path: Path
    plot_path: Path  # test accuracy per run (bars)
    # Per row: its image counts "train/val/test" (rows on different limits are marked) and
    # validation accuracy at the best epoch (a group's mean).
    data: list[str] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    cost_plot_path: Path | None = None  # test accuracy against wall time, every run
    csv_path: Path | None = None  # the rows as data (comparison.csv), for compare --include
    # --diff: the config keys whose values differ between the rows, and each row's values
    diff_keys: list[str] | None = None
    diff_values: list[dict[str, Any]] | None = None
