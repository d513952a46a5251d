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
from ..records import FINETUNE, HEAD
from .tables import plus_minus

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .rows import RunRow

matplotlib.use("Agg")  # headless: CI, SSH sessions and worker threads have no display

import matplotlib.pyplot as plt  # noqa: E402

PathLike = str | os.PathLike[str]


def save_figure(fig: Figure, path: PathLike) -> None:
    """Write `fig` as PNG through a temp file, and always free it (pyplot keeps figures alive)."""
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def run_title(run_id: str, accuracy: float | None, n: int | None = None) -> str:
    """The title every figure of a run carries: its id and its test accuracy."""
    if accuracy is None:
        return run_id
    on = f" on {n} images" if n else ""
    return f"{run_id}: test accuracy {accuracy:.4f}{on}"


def plot_history(rows: list[dict[str, Any]], path: PathLike, *, title: str = "") -> None:
    """Accuracy, loss and learning rate per epoch, with the stage boundary and each stage's
    best epoch; one legend for the figure (the panels share their lines).

    Best = lowest val_loss within each stage, so a stage that overfits shows where it peaked.
    `rows` are history.csv's (training.runfolder.read_history); "" or NaN mean no value.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), constrained_layout=True)
    epochs = np.array([r["epoch"] for r in rows], dtype=float)
    stages = [r.get("stage", HEAD) for r in rows]
    for ax, metric in ((axes[0], "accuracy"), (axes[1], "loss")):
        _plot_metric(ax, rows, epochs, stages, metric)
    _plot_learning_rate(axes[2], rows, epochs, stages)
    if not rows:
        axes[0].text(
            0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=axes[0].transAxes
        )
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 6),
            fontsize=8,
            numpoints=1,
            frameon=False,
        )
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def _plot_metric(
    ax: Axes, rows: list[dict[str, Any]], epochs: np.ndarray, stages: list[str], metric: str
) -> None:
    """One panel of plot_history: train and val curves, best epochs, the stage boundary."""
    ax.plot(epochs, _column(rows, metric), "o-", ms=3, color="tab:blue", label="train")
    val = _column(rows, f"val_{metric}")
    if np.isfinite(val).any():
        ax.plot(epochs, val, "s-", ms=3, color="tab:orange", label="validation")
    for stage in dict.fromkeys(stages):  # stage order as recorded
        idx = [i for i, s in enumerate(stages) if s == stage]
        losses = _column([rows[i] for i in idx], "val_loss")
        if not np.isfinite(losses).any():
            continue
        best = idx[int(np.nanargmin(losses))]
        label = "best epoch of a stage (min val_loss)"
        ax.plot(epochs[best], val[best], "*", ms=14, color="crimson", zorder=5, label=label)
    _epoch_axis(ax, epochs, stages)
    ax.set_ylabel(metric)
    ax.set_title(metric)


def _plot_learning_rate(
    ax: Axes, rows: list[dict[str, Any]], epochs: np.ndarray, stages: list[str]
) -> None:
    """The learning rate each epoch ran at (history.csv), log scale when it spans decades."""
    lr = _column(rows, "learning_rate")
    finite = lr[np.isfinite(lr) & (lr > 0)]
    log = bool(finite.size) and finite.max() / finite.min() > 10
    if log:  # a cosine ends at 0, which a log axis cannot show: leave those points out
        lr = np.where(lr > 0, lr, np.nan)
    ax.plot(epochs, lr, "o-", ms=3, color="tab:green", label="learning rate")
    if log:
        ax.set_yscale("log")
    _epoch_axis(ax, epochs, stages)
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate")


def _epoch_axis(ax: Axes, epochs: np.ndarray, stages: list[str]) -> None:
    """Whole-number epoch ticks, the grid, and the dashed line where fine-tuning starts."""
    from matplotlib.ticker import MaxNLocator

    boundary = _stage_boundary(epochs, stages)
    if boundary is not None:
        ax.axvline(boundary, ls="--", color="gray", label="fine-tuning starts")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


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
    title: str = "",
) -> None:
    """Annotated heatmap; normalised per true class so rare and common classes read alike.
    `title` (run_title) goes above it."""
    cm = np.asarray(cm, dtype=float)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    n = cm.shape[0]
    width, height = max(6.0, 0.75 * n + 2), max(5.0, 0.7 * n + 1.5)
    fig, ax = plt.subplots(figsize=(width, height))
    # Fixed margins in inches (the class names, the rotated ticks, two title lines): no
    # layout solver, which cost a third of this figure's time.
    fig.subplots_adjust(
        left=1.1 / width, right=1 - 0.6 / width, bottom=1.2 / height, top=1 - 0.7 / height
    )
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=list(class_names)[:n], rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(class_names)[:n])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "confusion matrix" + (" (row-normalised)" if normalize else "")
    ax.set_title(f"{title}\n{what}" if title else what)
    threshold = (cm.max() or 1) / 2
    for i in range(n):
        for j in range(n):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    save_figure(fig, path)


def plot_misclassified(
    images: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probs: np.ndarray | None,
    path: PathLike,
    *,
    max_images: int = 25,
    class_names: Sequence[str] = CLASS_NAMES,
    title: str = "",
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
        if title:
            fig.suptitle(title, fontsize=10)
        save_figure(fig, path)
        return
    cols = min(5, wrong.size)
    rows = math.ceil(wrong.size / cols)
    # A fixed layout: every cell is the same image and two caption lines, so margins in
    # inches need no solver. Constrained layout took 1.7 of this figure's 2.2 s (25 images).
    height = 2.5 * rows + 0.8  # the cells, and the title's two lines above them
    fig, axes = plt.subplots(rows, cols, figsize=(max(2.2 * cols, 4.0), height), squeeze=False)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.1 / height, top=1 - 1.0 / height, wspace=0.1, hspace=0.3
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        caption = f"true: {class_names[int(t[i])]}\npred: {class_names[int(p[i])]}"
        if conf is not None:
            caption += f" (p={conf[i]:.2f})"
        ax.set_title(caption, fontsize=8)
    what = f"misclassified: showing {wrong.size} of {int((t != p).sum())}"
    fig.suptitle(f"{title}\n{what}" if title else what)
    save_figure(fig, path)


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
    save_figure(fig, path)
