"""Run discovery: which folders are runs, one row per run or repeat group.

Rows are built from saved artifacts only: a run's metrics.json (records.RunMetrics) and a
group's repeat.json, whose mean ± sample std is recomputed from its member runs.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingFileError
from ..layout import CONFIG, METRICS, REPEAT_JSON
from ..paths import read_text
from ..records import RunMetrics, read_json_object
from .rows import RunRow
from .tables import mean_std

PathLike = str | os.PathLike[str]
_RUN_FILES = (METRICS, REPEAT_JSON)
_SHARED = ("backbone", "input_size", "resize_method", "weights", "stages")


def collect_runs(patterns: list[str] | None, root: PathLike = "saved_models") -> list[RunRow]:
    """One row per run or repeat group, sorted by test accuracy (best first).

    `patterns` may be run folders, run ids (looked up under `root`), or glob patterns; None means
    every run under `root`. A group folder (repeat.json) becomes one row with mean ± std over its
    runs, and its member runs are not listed again.
    """
    root = Path(root)
    folders = discover(root) if patterns is None else _match(patterns, root)
    groups = [f for f in folders if (f / REPEAT_JSON).is_file()]
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


def discover(root: Path) -> list[Path]:
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


def _run_row(folder: Path) -> RunRow:
    path = folder / METRICS
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
    spec = read_json_object(group / REPEAT_JSON)
    run_ids = spec.get("runs")
    if not isinstance(run_ids, list) or not run_ids:
        raise MissingFileError(f"{group / REPEAT_JSON}: unreadable (no 'runs' list)")
    dirs = [_member(group, root, rid) for rid in run_ids]
    runs = [_run_row(d) for d in dirs]
    acc, acc_std = mean_std([r.accuracy for r in runs])
    loss, loss_std = mean_std([r.loss for r in runs])
    epochs = [r.epochs for r in runs]
    row = RunRow(
        run=spec.get("group_id") or group.name,
        **{k: same([getattr(r, k) for r in runs]) for k in _SHARED},
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
    folder = next((d for d in where if (d / METRICS).is_file()), None)
    if folder is None:
        raise MissingFileError(
            f"{group}: member run {run_id!r} has no metrics.json "
            f"(looked in {', '.join(str(d) for d in where)})"
        )
    return folder


def same(values: list[Any]) -> Any:
    """The one value the runs share, else their distinct values joined by "/"."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else "/".join(str(v) for v in distinct)


def members(folder: Path, root: Path) -> list[Path]:
    """A row's run folders: the run itself, or a group's members."""
    if (folder / REPEAT_JSON).is_file():
        return [_member(folder, root, r) for r in read_json_object(folder / REPEAT_JSON)["runs"]]
    return [folder]


def config_of(members: list[Path]) -> dict[str, Any]:
    """A run's saved config.yaml; a group's first member's, without the seed that varies."""
    import yaml

    try:
        text = read_text(members[0] / CONFIG)
        raw = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError, RecursionError):
        raw = {}
    if len(members) > 1:
        raw.pop("seed", None)
    return raw
