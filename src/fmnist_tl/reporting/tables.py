"""Numbers as tables: mean ± sample standard deviation, and how values and rows print in the
Markdown tables every artifact uses (comparison.md, repeat.md, study.md, leaderboard.md) and
in the terminal's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (ddof=1).

    Repeats are a small sample of seeds, and we want the spread a new seed would show, so the
    unbiased-variance estimate is the honest one; with a single value the spread is unknown and
    reported as 0.0 rather than NaN so tables stay printable.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("mean_std needs at least one value")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def format_value(value: Any) -> str:
    """A swept or sampled value: floats to 4 significant digits, anything else as is."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plus_minus(value: float, std: float | None) -> str:
    """ "0.9100", or "0.9100 ± 0.0050" for a repeat group."""
    return f"{value:.4f} ± {std:.4f}" if std is not None else f"{value:.4f}"


def markdown_row(cells: Sequence[Any]) -> str:
    """One row of a GitHub Markdown table; a | inside a cell is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table of already formatted cells."""
    lines = [markdown_row(header), "|" + "---|" * len(header), *(markdown_row(c) for c in cells)]
    return "\n".join(lines) + "\n"
