"""`fmnist compare`: runs side by side, best test accuracy first, written as comparison.md,
comparison.csv and two plots; `--diff` shows only the config keys that differ."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import ConfigError
from ..layout import METRICS
from ..records import RunMetrics
from .cost_plot import plot_comparison_cost
from .plots import plot_comparison
from .rows import Comparison, RunRow
from .rows_csv import read_rows, write_rows
from .runs import collect_runs, config_of, discover, members, same
from .tables import format_value, markdown_row, markdown_table, plus_minus

PathLike = str | os.PathLike[str]


def compare_runs(
    patterns: list[str] | None = None,
    *,
    root: PathLike = "saved_models",
    out_dir: PathLike | None = None,
    diff: bool = False,
    include: Sequence[PathLike] = (),
) -> Comparison:
    """Collect runs (best test accuracy first), write comparison.md, comparison.csv,
    comparison.png and comparison_cost.png (test accuracy against wall time).

    Args:
        patterns: run folders, run ids under `root` or glob patterns; None = every run in `root`.
        root: the folder holding the runs (output.dir).
        out_dir: where the files go; None = `root`.
        diff: the table shows only the config keys that differ between the runs, plus
            validation and test accuracy (comparison.md then holds that table).
        include: comparison.csv files whose rows join the runs found, as recorded (results
            from another machine, or from run folders that are gone). With them, a `root`
            without runs is not an error.
    """
    if include and diff:
        raise ConfigError(
            "--diff compares the runs' configs, which rows from --include do not carry; "
            "drop one of the two"
        )
    patterns = patterns or None
    rows = _runs_or_none(patterns, root) if include else collect_runs(patterns, root)
    out = Path(out_dir) if out_dir is not None else Path(root)
    folders = [members(Path(r.path), Path(root)) for r in rows]
    metrics = [[RunMetrics.read(d / METRICS) for d in m] for m in folders]
    data = [same([f"{x.data.train}/{x.data.val}/{x.data.test}" if x.data else "" for x in m])
            for m in metrics]  # fmt: skip
    val = [_mean_or_none([x.best_val_accuracy() for x in m]) for m in metrics]
    found = list(zip(rows, data, val, strict=True))
    seen = {_identity(r) for r in rows}
    for path in include:  # a row already here is not doubled (a file included twice, say)
        for f in zip(*read_rows(path), strict=True):
            if _identity(f[0]) not in seen:
                seen.add(_identity(f[0]))
                found.append(f)
    found.sort(key=lambda f: -f[0].accuracy)  # stable: runs on disk first among ties
    rows, data, val = [f[0] for f in found], [f[1] for f in found], [f[2] for f in found]
    c = Comparison(rows, "", out / "comparison.md", out / "comparison.png", data, val)
    if diff:
        c.diff_keys, c.diff_values = differing_keys([config_of(m) for m in folders])
        c.markdown = markdown_table(*diff_table(c))
    else:
        c.markdown = comparison_markdown(rows, data=c.data)
    atomic.write_text(c.markdown_path, c.markdown)
    c.csv_path = out / "comparison.csv"
    write_rows(c.csv_path, rows, c.data, c.val_accuracy)
    plot_comparison(rows, c.plot_path)
    c.cost_plot_path = out / "comparison_cost.png"
    plot_comparison_cost(rows, c.cost_plot_path, c.data)
    return c


def _identity(row: RunRow) -> tuple[Any, ...]:
    """What makes two rows the same record: the run and its folder (however the path was
    spelled), or, for a row recorded without a folder, its figures."""
    if row.path:
        return row.run, os.path.realpath(row.path)
    return row.run, row.accuracy, row.accuracy_std, row.n, row.wall_time_s


def _runs_or_none(patterns: list[str] | None, root: PathLike) -> list[RunRow]:
    """Every run under `root`, none when it holds none (rows come from --include then)."""
    if patterns is None and not (Path(root).is_dir() and discover(Path(root))):
        return []
    return collect_runs(patterns, root)


# Keys that say where results go or how they print, not what was measured.
_NOT_COMPARED = ("output.", "runtime.verbose", "sweep.", "tune.")


def differing_keys(configs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The dotted keys whose values are not the same in every config, and each row's values.

    A repeat group's seeds differ by design, so `seed` is compared only between single runs.
    """
    flat = [_flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f if not k.startswith(_NOT_COMPARED)})
    keys = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]
    return keys, [{k: f.get(k) for k in keys} for f in flat]


def diff_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the --diff table: run, differing keys, data, val and test accuracy."""
    keys = c.diff_keys or []
    header = ["#", "run", *keys, "data (train/val/test)", "val accuracy", "test accuracy", "n"]
    cells = []
    for i, (r, v, data, val) in enumerate(
        zip(c.rows, c.diff_values or [], c.data, c.val_accuracy, strict=True), 1
    ):
        shown = "" if val is None else f"{val:.4f}"
        row = [str(i), r.run, *(format_value(v[k]) for k in keys), data, shown]
        cells.append([*row, plus_minus(r.accuracy, r.accuracy_std), str(r.n)])
    return header, cells


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def comparison_markdown(rows: list[RunRow], data: list[str] | None = None) -> str:
    """comparison.md: a GitHub Markdown table of the rows; groups show mean ± sample std.

    `data`: each row's image counts; when they differ, a column shows them."""
    mixed = data is not None and len(set(data)) > 1
    data = data or []
    header = ["#", "run", "backbone", "size", "resize", "weights", "stages", "epochs"]
    header += ["test accuracy", "test loss", "n", "wall time (s)"]
    lines = [markdown_row(header), "|" + "|".join(["---"] * len(header)) + "|"]
    for i, r in enumerate(rows, 1):
        cells = [i, r.run, r.backbone, r.input_size, r.resize_method, r.weights, r.stages]
        cells += [r.epochs_text, r.accuracy_text, r.loss_text, r.n, f"{r.wall_time_s:.1f}"]
        lines.append(markdown_row(cells + ([data[i - 1]] if mixed else [])))
    if mixed:  # runs on different data are never side by side unmarked
        lines[0], lines[1] = lines[0] + " data (train/val/test, differ!) |", lines[1] + "---|"
    return "\n".join(lines) + "\n"
