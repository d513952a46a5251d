"""Plots and comparison tables built only from a run's saved artifacts.

Everything here reads history.csv / metrics.json / repeat.json (or arrays handed in by
`evaluate`) and writes PNGs atomically, so a report can be redrawn at any time without the model.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI, SSH sessions and worker threads have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fmnist_tl import atomic  # noqa: E402
from fmnist_tl.classes import CLASS_NAMES  # noqa: E402
from fmnist_tl.errors import MissingFileError  # noqa: E402

PathLike = str | os.PathLike[str]
_INT_COLUMNS = {"epoch"}
_STR_COLUMNS = {"stage"}
_RUN_FILES = ("metrics.json", "repeat.json")


def _save(fig: Figure, path: PathLike) -> None:
    """Write `fig` as PNG through a temp file, and always free it (pyplot keeps figures alive)."""
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def read_history(path: PathLike) -> list[dict[str, Any]]:
    """Parse history.csv into typed rows (epoch int, stage str, every other column float)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise MissingFileError(f"{path}: cannot read history ({exc.strerror or exc})") from exc
    typed = []
    for line, row in enumerate(rows, 2):
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key is None:  # surplus cells beyond the header: nothing to name them by
                continue
            try:
                if key in _STR_COLUMNS:
                    out[key] = value
                elif key in _INT_COLUMNS:
                    out[key] = int(float(value))
                else:  # an empty cell (e.g. no validation split) becomes NaN, not a crash
                    out[key] = float(value) if value not in ("", None) else math.nan
            except (TypeError, ValueError) as exc:
                raise MissingFileError(f"{path}: line {line}: bad {key} value {value!r}") from exc
        typed.append(out)
    return typed


def plot_history(rows: list[dict[str, Any]], path: PathLike, *, title: str = "") -> None:
    """Accuracy and loss curves per epoch, with the stage boundary and each stage's best epoch.

    Best = lowest val_loss within each stage, so a stage that overfits shows where it peaked.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    epochs = np.array([r["epoch"] for r in rows], dtype=float)
    stages = [r.get("stage", "head") for r in rows]
    for ax, metric, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(epochs, _column(rows, metric), "o-", ms=3, label=f"train {label}")
        val = _column(rows, f"val_{metric}")
        if np.isfinite(val).any():
            ax.plot(epochs, val, "s-", ms=3, label=f"val {label}")
        first = True
        for stage in dict.fromkeys(stages):  # stage order as recorded
            idx = [i for i, s in enumerate(stages) if s == stage]
            losses = _column([rows[i] for i in idx], "val_loss")
            if not np.isfinite(losses).any():
                continue
            best = idx[int(np.nanargmin(losses))]
            ax.plot(
                epochs[best],
                val[best],
                "*",
                ms=14,
                color="crimson",
                zorder=5,
                label="best epoch (min val_loss)" if first else None,
            )
            first = False
        boundary = _stage_boundary(epochs, stages)
        if boundary is not None:
            ax.axvline(boundary, ls="--", color="gray", label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if rows:
            ax.legend(fontsize=8)
    if not rows:
        axes[0].text(
            0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=axes[0].transAxes
        )
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    # history.csv leaves val_* empty when there is no validation split.
    return np.array(
        [math.nan if r.get(key) in ("", None) else float(r[key]) for r in rows], dtype=float
    )


def _stage_boundary(epochs: np.ndarray, stages: list[str]) -> float | None:
    """Half-way between the last "head" epoch and the first "finetune" epoch, if both exist."""
    head = [e for e, s in zip(epochs, stages, strict=True) if s == "head"]
    fine = [e for e, s in zip(epochs, stages, strict=True) if s == "finetune"]
    if not head or not fine:
        return None
    return (max(head) + min(fine)) / 2


def per_class_report(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int = 10
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Confusion matrix (rows true, columns predicted) and precision/recall/F1/support per class.

    Undefined ratios (a class never predicted, or absent from y_true) are reported as 0.0, like
    scikit-learn's zero_division=0, without numpy division warnings.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    report = []
    for k in range(num_classes):
        tp, predicted, support = int(cm[k, k]), int(cm[:, k].sum()), int(cm[k, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        name = CLASS_NAMES[k] if num_classes == len(CLASS_NAMES) else str(k)
        report.append(
            {"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support}
        )
    return cm, report


def plot_confusion_matrix(
    cm: np.ndarray,
    path: PathLike,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    normalize: bool = True,
) -> None:
    """Annotated heatmap; normalised per true class so rare and common classes read alike."""
    cm = np.asarray(cm, dtype=float)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    n = cm.shape[0]
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.75 * n + 2), max(5.0, 0.7 * n + 1.5)), constrained_layout=True
    )
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=list(class_names)[:n], rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(class_names)[:n])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    threshold = (cm.max() or 1) / 2
    for i in range(n):
        for j in range(n):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > threshold else "black",
            )
    _save(fig, path)


def plot_misclassified(
    images: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probs: np.ndarray | None,
    path: PathLike,
    *,
    max_images: int = 25,
    class_names: Sequence[str] = CLASS_NAMES,
) -> None:
    """Grid of up to `max_images` wrong predictions; with none wrong, a PNG that says so.

    `probs` is the (N, classes) softmax output or the (N,) probability of each prediction (or
    None); with it, the most confident mistakes come first, as they are the most telling.
    """
    images = np.asarray(images, dtype=float).reshape(len(images), 28, 28)
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    wrong = np.flatnonzero(t != p)
    conf = None
    if probs is not None:
        pr = np.asarray(probs, dtype=float)
        conf = pr[np.arange(len(p)), p.astype(int)] if pr.ndim == 2 else pr.ravel()
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    wrong = wrong[:max_images]
    if wrong.size == 0:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"no misclassified images\n({len(t)} evaluated)",
            ha="center",
            va="center",
            fontsize=14,
        )
        _save(fig, path)
        return
    cols = min(5, wrong.size)
    rows = math.ceil(wrong.size / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(max(2.2 * cols, 4.0), 2.5 * rows),
        squeeze=False,
        constrained_layout=True,
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        title = f"true: {class_names[int(t[i])]}\npred: {class_names[int(p[i])]}"
        if conf is not None:
            title += f" (p={conf[i]:.2f})"
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"misclassified: showing {wrong.size} of {int((t != p).sum())}")
    _save(fig, path)


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


def collect_runs(patterns: list[str] | None, root: PathLike = "saved_models") -> list[dict]:
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
            rows.append(_run_row(f, _read_json(f / "metrics.json")))
    if not rows:
        raise MissingFileError(f"{root}: no runs found (no folder holds metrics.json)")
    rows.sort(key=lambda r: -r["accuracy"] if r["accuracy"] is not None else math.inf)
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


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MissingFileError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise MissingFileError(f"{path}: unreadable (expected a JSON object)")
    return data


def _run_row(folder: Path, m: dict) -> dict:
    path = folder / "metrics.json"
    try:
        stages = m.get("stages") or []
        return {
            "run": m.get("run_id") or folder.name,
            "backbone": m["backbone"],
            "input_size": m.get("input_size"),
            "resize_method": m.get("resize_method"),
            "weights": m.get("weights_used"),
            # How the test figure was made belongs beside it: a run tested with the mirror
            # image averaged in (augment.test_flip) is not like-for-like with one without.
            "stages": "+".join(s["name"] for s in stages)
            + (", test flip" if m["test"].get("test_flip") else ""),
            "epochs": sum(int(s.get("epochs_run", 0)) for s in stages),
            "accuracy": float(m["test"]["accuracy"]),
            "accuracy_std": None,
            "loss": float(m["test"]["loss"]),
            "loss_std": None,
            "n": 1,
            "wall_time_s": float(m.get("wall_time_s") or 0.0),
            "path": str(folder),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise MissingFileError(f"{path}: unreadable (missing or bad field {exc})") from exc


def _group_row(group: Path, root: Path) -> tuple[dict, list[Path]]:
    """Mean ± std over the member runs, recomputed from their own metrics.json."""
    spec = _read_json(group / "repeat.json")
    run_ids = spec.get("runs")
    if not isinstance(run_ids, list) or not run_ids:
        raise MissingFileError(f"{group / 'repeat.json'}: unreadable (no 'runs' list)")
    dirs, runs = [], []
    for rid in run_ids:
        where = [group / rid, group.parent / rid, root / rid]
        folder = next((d for d in where if (d / "metrics.json").is_file()), None)
        if folder is None:
            raise MissingFileError(
                f"{group}: member run {rid!r} has no metrics.json "
                f"(looked in {', '.join(str(d) for d in where)})"
            )
        dirs.append(folder)
        runs.append(_run_row(folder, _read_json(folder / "metrics.json")))
    acc, acc_std = mean_std([r["accuracy"] for r in runs])
    loss, loss_std = mean_std([r["loss"] for r in runs])
    epochs = [r["epochs"] for r in runs]

    def same(key: str) -> Any:
        values = list(dict.fromkeys(r[key] for r in runs))
        return values[0] if len(values) == 1 else "/".join(str(v) for v in values)

    row = {
        "run": spec.get("group_id") or group.name,
        **{k: same(k) for k in ("backbone", "input_size", "resize_method", "weights", "stages")},
        # Early stopping can end repeats at different epochs: report the mean then.
        "epochs": epochs[0] if len(set(epochs)) == 1 else float(np.mean(epochs)),
        "accuracy": acc,
        "accuracy_std": acc_std,
        "loss": loss,
        "loss_std": loss_std,
        "n": len(runs),
        # Mean per run, so a group's cost compares directly with a single run's.
        "wall_time_s": float(np.mean([r["wall_time_s"] for r in runs])),
        "path": str(group),
    }
    return row, dirs


def _pm(value: float | None, std: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f} ± {std:.4f}" if std is not None else f"{value:.4f}"


def compare_markdown(rows: list[dict]) -> str:
    """GitHub Markdown table of `collect_runs` rows; groups show mean ± sample std."""
    header = [
        "#",
        "run",
        "backbone",
        "size",
        "resize",
        "weights",
        "stages",
        "epochs",
        "test accuracy",
        "test loss",
        "n",
        "wall time (s)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for i, r in enumerate(rows, 1):
        epochs = r["epochs"]
        cells = [
            str(i),
            r["run"],
            r["backbone"],
            r["input_size"],
            r["resize_method"],
            r["weights"],
            r["stages"],
            f"{epochs:.1f}" if isinstance(epochs, float) else epochs,
            _pm(r["accuracy"], r["accuracy_std"]),
            _pm(r["loss"], r["loss_std"]),
            r["n"],
            f"{r['wall_time_s']:.1f}",
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(rows: list[dict], path: PathLike) -> None:
    """Horizontal bars of test accuracy, best on top, error bars (± std) for repeat groups.

    The x axis is zoomed to the data: runs on Fashion-MNIST differ by a few tenths of a percent,
    which bars starting at 0 would hide.
    """
    rows = sorted((r for r in rows if r["accuracy"] is not None), key=lambda r: r["accuracy"])
    n = len(rows)
    fig, ax = plt.subplots(figsize=(9, min(38.0, 1.6 + 0.45 * max(n, 1))), constrained_layout=True)
    if n:
        acc = np.array([r["accuracy"] for r in rows])
        err = np.array([r["accuracy_std"] or 0.0 for r in rows])
        labels = [
            f"{r['run']}  {_pm(r['accuracy'], r['accuracy_std'])}"
            + (f" (n={r['n']})" if r["n"] > 1 else "")
            for r in rows
        ]
        colors = ["tab:orange" if r["n"] > 1 else "tab:blue" for r in rows]
        y = np.arange(n)
        ax.barh(y, acc, xerr=np.where(err > 0, err, np.nan), color=colors, capsize=4)
        ax.set_yticks(y, labels=labels, fontsize=8)
        lo, hi = float((acc - err).min()), float((acc + err).max())
        pad = max(0.1 * (hi - lo), 0.005)
        ax.set_xlim(max(0.0, lo - pad), max(min(1.0, hi + pad), hi))
    else:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("test accuracy")
    ax.set_title("test accuracy per run (error bars: ± sample std over seeds)")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
