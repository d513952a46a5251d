"""How one run's results print on the terminal: a run (train, finetune, resume), an evaluation,
predictions, an export, the config keys, a repeat group. render_studies.py prints the results
of many runs (comparisons, studies, searches). Nothing here computes or writes a result: the
Markdown files beside the results are written where the results are made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import metrics
from ..layout import EVALUATION
from .common import say

if TYPE_CHECKING:
    from ..config import KeyInfo
    from ..evaluation.export import ExportResult
    from ..experiments.repeat import RepeatSummary
    from ..records import StageSummary
    from ..training.results import RunResult


def flip_note(test_flip: bool, alone: float | None) -> str:
    """Beside an accuracy with the test-time flip: that it is, and the accuracy without it."""
    if not test_flip:
        return ""
    return f" (with the test-time flip; alone {alone:.4f})"


# ---------------------------------------------------------------- a run


def print_run(out: Console, result: RunResult) -> None:
    """The summary `train`, `finetune` and `train --resume` end with."""
    m = result.metrics
    table = Table(title=f"run {result.run_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for metric in metrics.shown():
        note = flip_note(m.test.test_flip, m.test.accuracy_without_flip) if metric.headline else ""
        table.add_row(f"test {metric.name}", f"{m.test.values[metric.name]:.4f}{note}")
    for stage in m.stages:
        table.add_row(f"stage {stage.name}", _stage_detail(stage))
    table.add_row("weights", m.weights_used)
    table.add_row("wall time", f"{m.wall_time_s:.1f} s")
    table.add_row("artifacts", str(result.run_dir))
    table.add_row("tensorboard", f"tensorboard --logdir {m.log_dir}")
    out.print(table)


def _stage_detail(stage: StageSummary) -> str:
    after = 0 if stage.epochs_after_best is None else stage.epochs_after_best
    detail = (
        f"{stage.epochs_run} epochs, best epoch {stage.best_epoch} "
        f"({after} after it wasted), "
        f"{stage.wall_time_s:.1f} s, {stage.images_per_s or 0:.0f} img/s"
    )
    if stage.feature_cache is not None:
        detail += f", feature cache {stage.feature_cache}"
    return detail


def repeat_run_line(index: int, total: int, seed: int, result: RunResult) -> str:
    """Progress of `train --repeat`: one line per finished run."""
    return (
        f"run {index + 1}/{total} (seed {seed}): test accuracy "
        f"{result.metrics.test.accuracy:.4f}  {result.run_dir}"
    )


# ---------------------------------------------------------------- evaluate, predict


def print_evaluation(out: Console, model: str | Path, result: dict[str, Any]) -> None:
    """Per-class precision/recall/F1, the confusion matrix, an ensemble's members, and the
    files written."""
    from ..classes import CLASS_NAMES

    flip = flip_note(result.get("test_flip", False), result.get("accuracy_without_flip"))
    scores = "  ".join(
        f"{m.name} {result[m.name]:.4f}{flip if m.headline else ''}" for m in metrics.shown()
    )
    table = Table(title=f"{model}  {scores}")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        scores = (f"{row[k]:.3f}" for k in ("precision", "recall", "f1"))
        table.add_row(row["class"], *scores, str(row["support"]))
    out.print(table)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for i in range(len(CLASS_NAMES)):
        cm.add_column(str(i), justify="right")
    for i, row in enumerate(result["confusion_matrix"]):
        cm.add_row(f"{i} {CLASS_NAMES[i]}", *(str(v) for v in row))
    out.print(cm)
    if result.get("members"):
        _print_members(out, result)
    name = Path(result["json_path"]).name
    kept = name.startswith("evaluation.") and name != EVALUATION and not result.get("members")
    note = " (another test setup than the run's; its evaluation.json is kept)" if kept else ""
    out.print(f"wrote {result['json_path']}, " + ", ".join(result["plots"]) + note)


def _print_members(out: Console, result: dict[str, Any]) -> None:
    """An ensemble's members, each scored alone, above the ensemble's own scores."""
    table = Table(title=f"the ensemble's {len(result['members'])} members, each alone")
    table.add_column("model", overflow="fold")
    for m in metrics.shown():
        table.add_column(m.name, justify="right", no_wrap=True)
    table.add_column("test flip")
    for row in result["members"]:
        scores = (f"{row[m.name]:.4f}" for m in metrics.shown())
        table.add_row(escape(row["model"]), *scores, "yes" if row["test_flip"] else "no")
    table.add_section()
    ensemble = (f"{result[m.name]:.4f}" for m in metrics.shown())
    table.add_row("ensemble (mean of the probabilities)", *ensemble, "", style="bold")
    out.print(table)


def print_predictions(out: Console, model: str | Path, results: list[dict[str, Any]]) -> None:
    """The three most likely classes of each image (an ensemble's: and each member's top)."""
    table = Table(title=f"predictions of {escape(str(model))}")
    table.add_column("image")
    for rank in ("1st", "2nd", "3rd"):
        table.add_column(rank)
    members = any("members" in r for r in results)
    if members:
        table.add_column("each member's 1st")
    for r in results:
        top3 = [f"{t['label']} {t['probability']:.3f}" for t in r["top3"]]
        if members:
            top3.append("; ".join(f"{m['label']} {m['probability']:.3f}" for m in r["members"]))
        table.add_row(escape(r["image"]), *top3)
    out.print(table)


def print_export(out: Console, r: ExportResult) -> None:
    """What `fmnist export` wrote, what it takes and gives, and its check against Keras."""
    c, q = r.check, "" if r.quantize == "none" else f" ({r.quantize})"
    size = f"{r.size_bytes / 1e6:.2f} MB, {r.export_seconds:.1f} s"
    say(out, f"exported {r.format}{q} to {r.output} ({size})")
    diff = f"max |p - p_keras| {c.max_abs_diff:.1e} (allowed {c.tolerance:g})"
    top1 = f"same top-1 on {c.top1_agree}/{c.images} (required {c.min_top1:.0%})"
    say(out, f"check: {c.images} test images through {r.runtime}: {diff}, {top1}")
    say(out, f"input {r.input}; output {r.output_spec}")


def print_keys(out: Console, rows: list[KeyInfo]) -> None:
    """`fmnist config keys`: one row per key; the meaning column wraps, the key never does."""
    import json

    table = Table(title="config keys (set in YAML or with --set KEY=VALUE)")
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("type")
    table.add_column("default")
    table.add_column("meaning")
    for r in rows:
        default = r.default if isinstance(r.default, str) else json.dumps(r.default)
        table.add_row(escape(r.key), escape(r.type), escape(str(default)), escape(r.meaning))
    out.print(table)


# ---------------------------------------------------------------- a repeat group


def print_repeat(out: Console, summary: RepeatSummary) -> None:
    """One row per run, then mean ± sample std."""
    (acc, acc_std), (loss, loss_std) = summary.accuracy, summary.loss
    table = Table(title=f"group {escape(summary.group_id)}  ({summary.n} runs, ± sample std)")
    width = max(len(r.run_id) for r in summary.per_run)
    for col in ("run", "seed", "test accuracy", "test loss", "wall time (s)"):
        table.add_column(
            col,
            justify="left" if col == "run" else "right",
            no_wrap=col != "wall time (s)",
            min_width=width if col == "run" else None,
        )
    for r in summary.per_run:
        cells = (f"{r.accuracy:.4f}", f"{r.loss:.4f}", f"{r.wall_time_s:.1f}")
        table.add_row(escape(r.run_id), str(r.seed), *cells)
    table.add_section()
    means = (f"{acc:.4f} ± {acc_std:.4f}", f"{loss:.4f} ± {loss_std:.4f}")
    table.add_row("mean ± std", "", *means, "", style="bold")
    out.print(table)
    say(out, f"wrote {summary.json_path}, {summary.markdown_path}")
