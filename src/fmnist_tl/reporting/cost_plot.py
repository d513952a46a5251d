"""The comparison's cost plot: test accuracy against wall time, one point per row.

Beside plots.py (the other report figures) so that neither outgrows the 400-line limit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

from .plots import plt, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .rows import RunRow

PathLike = str | os.PathLike[str]


def plot_comparison_cost(
    rows: list[RunRow], path: PathLike, data: Sequence[str] | None = None
) -> None:
    """Test accuracy against wall time per run, every row one point (a repeat group: its mean,
    error bars ± sample std), coloured by backbone, shaped by the stages trained, on a log
    time axis: backbones, resizes and scratch CNNs on one picture of what accuracy costs.

    Points are labelled as `labelled` says, each label moved down until it clears the ones
    above it. `data`: each row's "train/val/test" counts; rows on a smaller training pool
    (train + validation) than the largest are drawn hollow, so a subset's runs are never read
    as full-data ones. Rows far below the best (`accuracy_floor`) sit on the bottom edge as
    ▼ with their accuracy written beside them, so that a run near chance does not squash the
    differences the plot is for into a sliver.
    """
    data = list(data) if data is not None else [""] * len(rows)
    most = max((_pool_count(d) for d in data), default=-1)
    floor = accuracy_floor([r.accuracy for r in rows])
    fig, ax = plt.subplots(figsize=(9, 6), constrained_layout=True)
    backbones = sorted({r.backbone for r in rows})
    colour = {b: f"C{i % 10}" for i, b in enumerate(backbones)}
    shapes = {"head": "o", "head+finetune": "s"}  # others (a finetune run alone) after them
    for key in sorted({_stages(r) for r in rows} - set(shapes)):
        shapes[key] = "^Dv"[(len(shapes) - 2) % 3]
    shapes = {k: v for k, v in shapes.items() if any(_stages(r) == k for r in rows)}
    labels: list[tuple[str, float, float]] = []
    for r, d, named in zip(rows, data, labelled(rows, data), strict=True):
        face = colour[r.backbone] if _pool_count(d) == most else "none"
        style = dict(color=colour[r.backbone], markerfacecolor=face, markersize=5, alpha=0.85)
        name = r.run + (f" (n={r.n})" if r.n > 1 else "") if named else ""
        if floor is not None and r.accuracy < floor:  # on the edge, its value in its label
            ax.plot([r.wall_time_s], [floor], "v", clip_on=False, **style)
            labels.append((f"{name} {r.accuracy:.2f}".strip(), r.wall_time_s, floor))
            continue
        ax.errorbar([r.wall_time_s], [r.accuracy], yerr=[r.accuracy_std or 0.0],
                    fmt=shapes[_stages(r)], capsize=3, **style)  # fmt: skip
        if name:
            labels.append((name, r.wall_time_s, r.accuracy))
    ax.set_xlabel("wall time per run (s, log scale)")
    below = f"; ▼ below {floor:.2f}, value beside" if floor is not None else ""
    ax.set_ylabel(f"test accuracy{below}")
    ax.set_title(f"test accuracy against wall time, {len(rows)} runs and groups (± std over seeds)")
    ax.grid(alpha=0.3, which="both")
    _legend_entries(ax, colour, shapes, data, most)
    if rows:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_seconds))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_seconds_minor))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.legend(loc="lower right", fontsize=8)
        if floor is not None:
            ax.set_ylim(bottom=floor)
        fig.draw_without_rendering()  # final limits and layout, which label placement reads
        _place_labels(ax, labels)
    else:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    save_figure(fig, path)


def _legend_entries(
    ax: Axes, colour: dict[str, str], shapes: dict[str, str], data: list[str], most: int
) -> None:
    for b, c in colour.items():
        ax.plot([], [], "o", color=c, label=b)
    for key, shape in shapes.items():
        ax.plot([], [], shape, color="grey", label=key)
    for d in sorted(set(data) - {""}):
        face = "grey" if _pool_count(d) == most else "none"
        ax.plot([], [], "o", color="grey", markerfacecolor=face, label=f"data {d}")


def accuracy_floor(accuracies: Sequence[float], span: float = 0.15) -> float | None:
    """The cost plot's lowest accuracy shown, when some rows lie more than `span` below the
    best (a 32 px frozen backbone at 0.33 beside runs at 0.86-0.95); None when all fit.

    Runs worth comparing on Fashion-MNIST sit within a few points of each other; the floor
    keeps every point within `span` of the best (and their error bars) on the axis."""
    if not accuracies or max(accuracies) - min(accuracies) <= span:
        return None
    return math.floor((max(accuracies) - span) * 100) / 100  # down: never above best - span


def _seconds(v: float, _: Any = None) -> str:
    return f"{v:g}"  # 60, not 6x10^1


def _seconds_minor(v: float, _: Any = None) -> str:
    # Only 2, 3 and 5 of each decade: all eight collide ("600700800900").
    lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
    return f"{v:g}" if lead in (2, 3, 5) else ""


def _place_labels(ax: Axes, labels: list[tuple[str, float, float]]) -> list[float]:
    """Annotate each point with its label, top to bottom, moving a label off its point (in
    steps of its height, below, then above, then further) while it would overlap one already
    placed: near points stay readable. Returns each label's vertical offset, in points."""
    offsets = [0.0] * len(labels)
    placed: list[tuple[float, float, float, float]] = []  # display boxes: x0, y0, x1, y1
    step, char_w = 9.0, 4.0  # points of a 7-pt label: its height, a character's width
    to_px = ax.figure.dpi / 72
    tries = [3.0] + [3.0 + sign * k * step for k in range(1, 5) for sign in (-1, 1)]
    for i in sorted(range(len(labels)), key=lambda i: -labels[i][2]):
        text, x, y = labels[i]
        px, py = ax.transData.transform((x, y))
        boxes = {dy: (px + 5 * to_px, py + dy * to_px, px + (5 + char_w * len(text)) * to_px,
                      py + (dy + step) * to_px) for dy in tries}  # fmt: skip
        free = [dy for dy in tries if not any(_overlap(boxes[dy], b) for b in placed)]
        dy = free[0] if free else tries[0]  # nowhere free nearby: beside its point
        placed.append(boxes[dy])
        offsets[i] = dy
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, dy), fontsize=7)
    return offsets


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def labelled(rows: Sequence[RunRow], data: Sequence[str], most: int = 20) -> list[bool]:
    """Which points of the cost plot carry their run's name: all of them up to `most`; past
    that, the rows on the largest training pool (the full-data results a study leads to),
    their repeat groups always and their single runs while there are few. A sweep's dozens of
    subset cells stay unlabelled: their tables name them, and 50 labels on one picture are
    unreadable."""
    if len(rows) <= most:
        return [True] * len(rows)
    pools = [_pool_count(d) for d in data]
    full = [p == max(pools) for p in pools]
    few = sum(full) <= most
    return [f and (r.n > 1 or few) for r, f in zip(rows, full, strict=True)]


def _pool_count(data: str) -> int:
    """The training pool (train + validation images) of a "train/val/test" count, -1 when
    unknown: runs that split the same pool differently are on the same data."""
    parts = data.split("/")
    return int(parts[0]) + int(parts[1]) if len(parts) == 3 and all(parts[:2]) else -1


def _stages(row: RunRow) -> str:
    """What a run trained, for the cost plot's markers: the head, or the head and stage 2."""
    return row.stages.split(",")[0]
