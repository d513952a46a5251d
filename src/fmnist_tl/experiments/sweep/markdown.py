"""study.md: one row per cell, best first, and for a two-key study a grid of the two keys.
The terminal's study table (cli) reads its cells from here, so both show the same numbers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...reporting.tables import format_value, markdown_row, plus_minus

if TYPE_CHECKING:
    from .study import CellRow, StudyResult


def study_cells(row: CellRow, keys: list[str]) -> list[str]:
    def pm(pair: tuple[float, float] | None) -> str:
        return "" if pair is None else plus_minus(pair[0], pair[1] if row.n > 1 else None)

    wall = "" if row.wall_time_s is None else f"{row.wall_time_s:.1f}"
    values = [format_value(row.values[k]) for k in keys]
    return [str(row.rank), row.cell, *values, pm(row.test_accuracy), pm(row.val_accuracy),
            wall, str(row.n)]  # fmt: skip


def study_header(keys: list[str]) -> list[str]:
    short = [k.split(".")[-1] if [x.split(".")[-1] for x in keys].count(k.split(".")[-1]) == 1
             else k for k in keys]  # fmt: skip
    return ["#", "cell", *short, "test accuracy", "val accuracy", "wall s/run", "n"]


def study_markdown(result: StudyResult) -> str:
    """study.md: one row per cell, best test accuracy first."""
    plan, keys = result.plan, result.plan.keys
    done = sum(r.n for r in result.rows)
    lines = [f"# Study {result.study_id}", "", f"Config `{plan.base.output.name}`, "
             f"{len(plan.cells)} cells x {len(plan.seeds)} seeds "
             f"({', '.join(str(s) for s in plan.seeds)}); {done} of {plan.total} runs finished"
             + ("" if result.complete else " (incomplete)") + "; ± is the sample standard "
             "deviation over a cell's seeds; wall time is per run.", ""]  # fmt: skip
    header = study_header(keys)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [markdown_row(study_cells(row, keys)) for row in result.rows]
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
        lines.append(markdown_row([format_value(a), *(entry(a, b) for b in grid[across])]))
    return lines
