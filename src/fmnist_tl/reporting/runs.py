"""Run discovery and comparison: which folders are runs, one row per run or repeat group.

Rows are built from saved artifacts only: a run's metrics.json (records.RunMetrics) and a
group's repeat.json, whose mean ± sample std is recomputed from its member runs.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..cli.render import comparison_markdown
from ..errors import ConfigError, MissingFileError
from ..records import RunMetrics
from .cost_plot import plot_comparison_cost
from .plots import plot_comparison
from .rows_csv import read_rows, write_rows

PathLike = str | os.PathLike[str]
_RUN_FILES = ("metrics.json", "repeat.json")
_SHARED = ("backbone", "input_size", "resize_method", "weights", "stages")


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


def best_val_accuracy(m: RunMetrics) -> float | None:
    """Validation accuracy at the run's best epoch: the stage whose best wins on its monitor.

    The checkpoint keeps the best epoch over both stages, so the stage that holds it is the one
    whose best monitored value is better.
    """
    stages = [s for s in m.stages if s.best_val_accuracy is not None]
    if not stages:
        return None
    monitor = stages[0].monitor
    if "accuracy" in monitor:
        best = max(stages, key=lambda s: s.best_val_accuracy or 0.0)
    else:
        best = min(stages, key=lambda s: s.best_val_loss if s.best_val_loss is not None else 1e9)
    return float(best.best_val_accuracy) if best.best_val_accuracy is not None else None


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
    from ..cli.render import markdown_table

    if include and diff:
        raise ConfigError(
            "--diff compares the runs' configs, which rows from --include do not carry; "
            "drop one of the two"
        )
    patterns = patterns or None
    rows = _runs_or_none(patterns, root) if include else collect_runs(patterns, root)
    out = Path(out_dir) if out_dir is not None else Path(root)
    members = [_members(Path(r.path), Path(root)) for r in rows]
    metrics = [[RunMetrics.read(d / "metrics.json") for d in m] for m in members]
    data = [_same([f"{x.data.train}/{x.data.val}/{x.data.test}" if x.data else "" for x in m])
            for m in metrics]  # fmt: skip
    val = [_mean_or_none([best_val_accuracy(x) for x in m]) for m in metrics]
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
        c.diff_keys, c.diff_values = differing_keys([_config_of(m) for m in members])
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
    if patterns is None and not (Path(root).is_dir() and _discover(Path(root))):
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
    from ..cli.render import format_value, plus_minus

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


def _members(folder: Path, root: Path) -> list[Path]:
    """A row's run folders: the run itself, or a group's members."""
    if (folder / "repeat.json").is_file():
        return [_member(folder, root, r) for r in _read_json(folder / "repeat.json")["runs"]]
    return [folder]


def _config_of(members: list[Path]) -> dict[str, Any]:
    """A run's saved config.yaml; a group's first member's, without the seed that varies."""
    import yaml

    try:
        text = (members[0] / "config.yaml").read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError):
        raw = {}
    if len(members) > 1:
        raw.pop("seed", None)
    return raw


def collect_runs(patterns: list[str] | None, root: PathLike = "saved_models") -> list[RunRow]:
    """One row per run or repeat group, sorted by test accuracy (best first).

    `patterns` may be run folders, run ids (looked up under `root`), or glob patterns; None means
    every run under `root`. A group folder (repeat.json) becomes one row with mean ± std over its
    runs, and its member runs are not listed again.
    """
    root = Path(root)
    folders = _discover(root) if patterns is None else _match(patterns, root)
    groups = [f for f in folders if (f / "repeat.json").is_file()]
    rows, members = [], set()
    for g in groups:
        row, member_dirs = _group_row(g, root)
        rows.append(row)
        members.update(d.resolve() for d in member_dirs)
    for f in folders:
        if f not in groups and f.resolve() not in members:
            rows.append(_run_row(f))
    if not rows:
        raise MissingFileError(
            f"{root}: no runs found (no folder holds metrics.json); train one with "
            "`fmnist train CONFIG`, or pass the folder that holds your runs"
        )
    rows.sort(key=lambda r: -r.accuracy)
    return rows


def _is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _RUN_FILES)


def _discover(root: Path) -> list[Path]:
    # Two levels: runs of a group may sit inside the group folder.
    found = [p for p in sorted(root.glob("*")) + sorted(root.glob("*/*")) if p.is_dir()]
    return [p for p in found if _is_run(p)]


def _match(patterns: list[str], root: Path) -> list[Path]:
    out: dict[Path, Path] = {}
    for pattern in patterns:
        explicit = [c for c in (Path(pattern), root / pattern) if c.exists()][:1]
        if explicit:  # naming a run's metrics.json / repeat.json means its folder
            hits = [c.parent if c.name in _RUN_FILES and c.is_file() else c for c in explicit]
        else:
            matches = sorted(glob.glob(pattern)) or sorted(glob.glob(str(root / pattern)))
            hits = [Path(h) for h in matches]
        runs = [h for h in hits if h.is_dir() and _is_run(h)]
        if not runs:
            raise MissingFileError(
                f"{pattern}: no run folder (with metrics.json or repeat.json) "
                f"matches it, as a path or under {root}"
            )
        for r in runs:
            out.setdefault(r.resolve(), r)
    return list(out.values())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MissingFileError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise MissingFileError(f"{path}: unreadable (expected a JSON object)")
    return data


def _run_row(folder: Path) -> RunRow:
    path = folder / "metrics.json"
    m = RunMetrics.read(path)
    try:
        return RunRow(
            run=m.run_id or folder.name,
            backbone=m.backbone,
            input_size=m.input_size,
            resize_method=m.resize_method,
            weights=m.weights_used,
            # How the test figure was made belongs beside it: a run tested with the mirror
            # image averaged in (augment.test_flip) is not like-for-like with one without.
            stages="+".join(s.name for s in m.stages) + (", test flip" if m.test.test_flip else ""),
            epochs=sum(int(s.epochs_run) for s in m.stages),
            accuracy=float(m.test.accuracy),
            accuracy_std=None,
            loss=float(m.test.loss),
            loss_std=None,
            n=1,
            wall_time_s=float(m.wall_time_s),
            path=str(folder),
        )
    except (TypeError, ValueError) as exc:
        raise MissingFileError(f"{path}: unreadable (missing or bad field {exc})") from exc


def _group_row(group: Path, root: Path) -> tuple[RunRow, list[Path]]:
    """Mean ± std over the member runs, recomputed from their own metrics.json."""
    spec = _read_json(group / "repeat.json")
    run_ids = spec.get("runs")
    if not isinstance(run_ids, list) or not run_ids:
        raise MissingFileError(f"{group / 'repeat.json'}: unreadable (no 'runs' list)")
    dirs = [_member(group, root, rid) for rid in run_ids]
    runs = [_run_row(d) for d in dirs]
    acc, acc_std = mean_std([r.accuracy for r in runs])
    loss, loss_std = mean_std([r.loss for r in runs])
    epochs = [r.epochs for r in runs]
    row = RunRow(
        run=spec.get("group_id") or group.name,
        **{k: _same([getattr(r, k) for r in runs]) for k in _SHARED},
        # Early stopping can end repeats at different epochs: report the mean then.
        epochs=epochs[0] if len(set(epochs)) == 1 else float(np.mean(epochs)),
        accuracy=acc,
        accuracy_std=acc_std,
        loss=loss,
        loss_std=loss_std,
        n=len(runs),
        wall_time_s=float(np.mean([r.wall_time_s for r in runs])),
        path=str(group),
    )
    return row, dirs


def _member(group: Path, root: Path, run_id: str) -> Path:
    """A group's member run folder: inside the group, beside it, or under `root`."""
    where = [group / run_id, group.parent / run_id, root / run_id]
    folder = next((d for d in where if (d / "metrics.json").is_file()), None)
    if folder is None:
        raise MissingFileError(
            f"{group}: member run {run_id!r} has no metrics.json "
            f"(looked in {', '.join(str(d) for d in where)})"
        )
    return folder


def _same(values: list[Any]) -> Any:
    """The one value the runs share, else their distinct values joined by "/"."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else "/".join(str(v) for v in distinct)


def _mean_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None
