"""How a sweep's study and `compare --diff` read: terminal and Markdown renderers.

Beside render.py (which holds every other result type) so that neither module outgrows the
400-line limit; the same rules apply: nothing here computes a result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .render import _md_row, format_value, plus_minus, say

if TYPE_CHECKING:
    from ..reporting.runs import Comparison
    from ..study.summary import CellRow, StudyResult


def print_comparison_diff(out: Console, comparison: Comparison) -> None:
    """`fmnist compare --diff`: the config keys that differ, data counts, val and test accuracy."""
    from ..reporting.runs import diff_table

    header, cells = diff_table(comparison)
    table = Table(title="runs, best test accuracy first: only the config keys that differ")
    for col in header:
        table.add_column(col, no_wrap=col in ("run", "val accuracy", "test accuracy"))
    for line in cells:
        table.add_row(*(escape(c) for c in line))
    out.print(table)
    say(
        out,
        f"wrote {comparison.markdown_path}, {comparison.csv_path}, {comparison.plot_path}, "
        f"{comparison.cost_plot_path}",
    )


def study_run_line(done: int, total: int, cell: str, seed: int, what: str, acc: Any) -> str:
    """Progress of `fmnist sweep`: one line per run trained, resumed or skipped."""
    score = f"test accuracy {acc:.4f}" if acc is not None else "no result (diverged)"
    return f"run {done}/{total} {what}: cell {cell} seed {seed}: {score}"


def _study_cells(row: CellRow, keys: list[str]) -> list[str]:
    def pm(pair: tuple[float, float] | None) -> str:
        return "" if pair is None else plus_minus(pair[0], pair[1] if row.n > 1 else None)

    wall = "" if row.wall_time_s is None else f"{row.wall_time_s:.1f}"
    values = [format_value(row.values[k]) for k in keys]
    return [str(row.rank), row.cell, *values, pm(row.test_accuracy), pm(row.val_accuracy),
            wall, str(row.n)]  # fmt: skip


def _study_header(keys: list[str]) -> list[str]:
    short = [k.split(".")[-1] if [x.split(".")[-1] for x in keys].count(k.split(".")[-1]) == 1
             else k for k in keys]  # fmt: skip
    return ["#", "cell", *short, "test accuracy", "val accuracy", "wall s/run", "n"]


def print_study(out: Console, result: StudyResult) -> None:
    """The study table, best cell first, and the files written."""
    keys = result.plan.keys
    state = "complete" if result.complete else "incomplete"
    table = Table(title=f"study {escape(result.study_id)} ({state}; ± sample std over seeds)")
    # Best first, so the rank column is left out; the swept values and headers fold, numbers
    # never do, so the table fits 80 columns.
    for i, col in enumerate(_study_header(keys)[1:]):
        swept = 1 <= i < 1 + len(keys)
        width = max(len(format_value(v)) for v in result.plan.grid[keys[i - 1]]) if swept else None
        justify = "left" if col == "cell" else "right"
        table.add_column(col, justify=justify, no_wrap=not swept, min_width=width,
                         overflow="fold")  # fmt: skip
    for row in result.rows:
        table.add_row(*(escape(c) for c in _study_cells(row, keys)[1:]))
    out.print(table)
    files = ", ".join(str(p) for p in [result.markdown_path, result.json_path, *result.plots])
    say(out, f"wrote {files}")


def study_markdown(result: StudyResult) -> str:
    """study.md: one row per cell, best test accuracy first."""
    plan, keys = result.plan, result.plan.keys
    done = sum(r.n for r in result.rows)
    lines = [f"# Study {result.study_id}", "", f"Config `{plan.base.output.name}`, "
             f"{len(plan.cells)} cells x {len(plan.seeds)} seeds "
             f"({', '.join(str(s) for s in plan.seeds)}); {done} of {plan.total} runs finished"
             + ("" if result.complete else " (incomplete)") + "; ± is the sample standard "
             "deviation over a cell's seeds; wall time is per run.", ""]  # fmt: skip
    header = _study_header(keys)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [_md_row(_study_cells(row, keys)) for row in result.rows]
    if len(keys) == 2:
        lines += ["", *_grid_markdown(result)]
    return "\n".join(lines) + "\n"


def _grid_markdown(result: StudyResult) -> list[str]:
    """A two-key study as a grid: the first key's values down, the second's across; each
    cell its test accuracy (mean ± sample std) and wall time per run."""
    (down, across), grid = result.plan.keys, result.plan.grid
    by_values = {(format_value(r.values[down]), format_value(r.values[across])): r
                 for r in result.rows}  # fmt: skip

    def entry(a: Any, b: Any) -> str:
        row = by_values.get((format_value(a), format_value(b)))
        if row is None or row.test_accuracy is None:
            return ""
        mean, std = row.test_accuracy
        wall = "" if row.wall_time_s is None else f", {row.wall_time_s:.0f} s"
        return f"{plus_minus(mean, std if row.n > 1 else None)}{wall}"

    header = [f"{down} \\ {across}", *(format_value(b) for b in grid[across])]
    lines = [f"Test accuracy (± sample std, wall time per run) by `{down}` and `{across}`:", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in grid[down]:
        lines.append(_md_row([format_value(a), *(entry(a, b) for b in grid[across])]))
    return lines
