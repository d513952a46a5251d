"""Every PNG the package draws: training curves, confusion matrix, mistakes, run comparison.

Each plot takes data already read (history rows, arrays, comparison rows) and writes its PNG
atomically, so a report can be redrawn at any time without the model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .. import atomic
from ..classes import CLASS_NAMES
from ..cli.render import plus_minus
from ..records import FINETUNE, HEAD

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .runs import RunRow

matplotlib.use("Agg")  # headless: CI, SSH sessions and worker threads have no display

import matplotlib.pyplot as plt  # noqa: E402

PathLike = str | os.PathLike[str]


def _save(fig: Figure, path: PathLike) -> None:
    """Write `fig` as PNG through a temp file, and always free it (pyplot keeps figures alive)."""
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def plot_history(rows: list[dict[str, Any]], path: PathLike, *, title: str = "") -> None:
    """Accuracy and loss curves per epoch, with the stage boundary and each stage's best epoch.

    Best = lowest val_loss within each stage, so a stage that overfits shows where it peaked.
    `rows` are history.csv's (training.runfolder.read_history); "" or NaN mean no value.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    epochs = np.array([r["epoch"] for r in rows], dtype=float)
    stages = [r.get("stage", HEAD) for r in rows]
    for ax, metric in ((axes[0], "accuracy"), (axes[1], "loss")):
        _plot_metric(ax, rows, epochs, stages, metric)
    if not rows:
        axes[0].text(
            0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=axes[0].transAxes
        )
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _plot_metric(
    ax: Axes, rows: list[dict[str, Any]], epochs: np.ndarray, stages: list[str], metric: str
) -> None:
    """One panel of plot_history: train and val curves, best epochs, the stage boundary."""
    ax.plot(epochs, _column(rows, metric), "o-", ms=3, label=f"train {metric}")
    val = _column(rows, f"val_{metric}")
    if np.isfinite(val).any():
        ax.plot(epochs, val, "s-", ms=3, label=f"val {metric}")
    first = True
    for stage in dict.fromkeys(stages):  # stage order as recorded
        idx = [i for i, s in enumerate(stages) if s == stage]
        losses = _column([rows[i] for i in idx], "val_loss")
        if not np.isfinite(losses).any():
            continue
        best = idx[int(np.nanargmin(losses))]
        label = "best epoch (min val_loss)" if first else None
        ax.plot(epochs[best], val[best], "*", ms=14, color="crimson", zorder=5, label=label)
        first = False
    boundary = _stage_boundary(epochs, stages)
    if boundary is not None:
        ax.axvline(boundary, ls="--", color="gray", label="fine-tuning starts")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8)


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    # history.csv leaves val_* empty when there is no validation split.
    return np.array(
        [math.nan if r.get(key) in ("", None) else float(r[key]) for r in rows], dtype=float
    )


def _stage_boundary(epochs: np.ndarray, stages: list[str]) -> float | None:
    """Half-way between the last "head" epoch and the first "finetune" epoch, if both exist."""
    head = [e for e, s in zip(epochs, stages, strict=True) if s == HEAD]
    fine = [e for e, s in zip(epochs, stages, strict=True) if s == FINETUNE]
    if not head or not fine:
        return None
    return (max(head) + min(fine)) / 2


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
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
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
        text = f"no misclassified images\n({len(t)} evaluated)"
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14)
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


def plot_comparison(rows: list[RunRow], path: PathLike) -> None:
    """Horizontal bars of test accuracy, best on top, error bars (± std) for repeat groups.

    The x axis is zoomed to the data: runs on Fashion-MNIST differ by a few tenths of a percent,
    which bars starting at 0 would hide.
    """
    rows = sorted(rows, key=lambda r: r.accuracy)
    n = len(rows)
    fig, ax = plt.subplots(figsize=(9, min(38.0, 1.6 + 0.45 * max(n, 1))), constrained_layout=True)
    if n:
        acc = np.array([r.accuracy for r in rows])
        err = np.array([r.accuracy_std or 0.0 for r in rows])
        labels = [
            f"{r.run}  {plus_minus(r.accuracy, r.accuracy_std)}"
            + (f" (n={r.n})" if r.n > 1 else "")
            for r in rows
        ]
        colors = ["tab:orange" if r.n > 1 else "tab:blue" for r in rows]
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
