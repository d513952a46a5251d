"""How results read: a terminal renderer (rich) and a Markdown renderer per result type.

Terminal renderers print to the Console they are given; Markdown renderers return the text
that repeat.md, comparison.md and leaderboard.md hold. Result types: a run (train, finetune,
resume), an evaluation, predictions, a repeat group, a comparison, a tune leaderboard and its
per-trial progress line. Nothing here computes a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from ..config import KeyInfo
    from ..export import ExportResult
    from ..records import StageSummary, TrialRecord
    from ..repeat import RepeatSummary
    from ..reporting.runs import Comparison, RunRow
    from ..training.trainer import RunResult
    from ..tuning import TuneResult

TOP_TRIALS = 10  # the terminal shows the best ten; leaderboard.md lists every trial


def say(console: Console, text: str) -> None:
    """Plain text: escaped, never highlighted, never wrapped (paths stay whole)."""
    console.print(escape(text), highlight=False, soft_wrap=True)


def print_json(result: Any) -> None:
    """`--json` in every command: the result as JSON on stdout, nothing else there."""
    import json
    import sys

    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    sys.stdout.flush()


def format_value(value: Any) -> str:
    """A sampled tune value: floats to 4 significant digits, anything else as is."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plus_minus(value: float, std: float | None) -> str:
    """ "0.9100", or "0.9100 ± 0.0050" for a repeat group."""
    return f"{value:.4f} ± {std:.4f}" if std is not None else f"{value:.4f}"


def flip_note(test_flip: bool, alone: float | None) -> str:
    """Beside an accuracy with the test-time flip: that it is, and the accuracy without it."""
    if not test_flip:
        return ""
    return f" (with the test-time flip; alone {alone:.4f})"


def _epochs(epochs: int | float | None) -> str:
    # A group stopped at different epochs: their mean; an included row may not record them.
    if epochs is None:
        return "-"
    return f"{epochs:.1f}" if isinstance(epochs, float) else str(epochs)


def _loss(loss: float | None, std: float | None) -> str:
    return "-" if loss is None else plus_minus(loss, std)


def _md_row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


# ---------------------------------------------------------------- a run


def print_run(out: Console, result: RunResult) -> None:
    """The summary `train`, `finetune` and `train --resume` end with."""
    m = result.metrics
    table = Table(title=f"run {result.run_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    note = flip_note(m.test.test_flip, m.test.accuracy_without_flip)
    table.add_row("test accuracy", f"{m.test.accuracy:.4f}{note}")
    table.add_row("test loss", f"{m.test.loss:.4f}")
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


def print_evaluation(out: Console, model: Path, result: dict[str, Any]) -> None:
    """Per-class precision/recall/F1, the confusion matrix, and the files written."""
    from ..classes import CLASS_NAMES

    flip = flip_note(result.get("test_flip", False), result.get("accuracy_without_flip"))
    table = Table(
        title=f"{model}  accuracy {result['accuracy']:.4f}{flip}  loss {result['loss']:.4f}"
    )
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
    name = Path(result["json_path"]).name
    kept = name.startswith("evaluation.") and name != "evaluation.json"
    note = " (another test setup than the run's; its evaluation.json is kept)" if kept else ""
    out.print(f"wrote {result['json_path']}, " + ", ".join(result["plots"]) + note)


def print_predictions(out: Console, model: Path, results: list[dict[str, Any]]) -> None:
    """The three most likely classes of each image."""
    table = Table(title=f"predictions of {escape(str(model))}")
    table.add_column("image")
    for rank in ("1st", "2nd", "3rd"):
        table.add_column(rank)
    for r in results:
        top3 = (f"{t['label']} {t['probability']:.3f}" for t in r["top3"])
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


def repeat_markdown(summary: RepeatSummary) -> str:
    """repeat.md: one row per run, then the mean ± sample std row."""
    (acc, acc_std), (loss, loss_std) = summary.accuracy, summary.loss
    wall = sum(r.wall_time_s for r in summary.per_run) / len(summary.per_run)
    lines = [
        f"# {summary.group_id}",
        "",
        f"Config `{summary.config_name}`, {len(summary.per_run)} runs with seeds "
        f"{', '.join(str(s) for s in summary.seeds)}; ± is the sample standard deviation.",
        "",
        "| run | seed | test accuracy | test loss | wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in summary.per_run:
        lines.append(
            f"| {r.run_id} | {r.seed} | {r.accuracy:.4f} | {r.loss:.4f} | {r.wall_time_s:.1f} |"
        )
    lines.append(
        f"| **mean ± std** | | {acc:.4f} ± {acc_std:.4f} | {loss:.4f} ± {loss_std:.4f} "
        f"| {wall:.1f} |"
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- a comparison


def print_comparison(out: Console, comparison: Comparison) -> None:
    """The essentials per row (every other column is in comparison.md).

    Run ids and numbers never wrap, the setup column does, so the table stays readable at 80
    columns.
    """
    rows = comparison.rows
    if comparison.diff_keys is not None:  # --diff: only what differs, plus the scores
        from .study_render import print_comparison_diff

        return print_comparison_diff(out, comparison)
    table = Table(title="test accuracy per run, best first (groups: mean ± sample std)")
    table.add_column("run", no_wrap=True, min_width=max(len(r.run) for r in rows))
    table.add_column("setup")
    for col in ("test accuracy", "test loss", "n"):
        table.add_column(col, justify="right", no_wrap=True)
    data = comparison.data or [""] * len(rows)
    for r, d in zip(rows, data, strict=True):
        size = f" {r.input_size}px" if r.input_size is not None else ""
        setup = (
            f"{r.backbone}{size}, {r.weights or '-'}, {r.stages}, {_epochs(r.epochs)} ep, "
            f"{r.wall_time_s:.1f} s/run" + (f", data {d}" if len(set(data)) > 1 else "")
        )
        scores = (plus_minus(r.accuracy, r.accuracy_std), _loss(r.loss, r.loss_std))
        table.add_row(escape(r.run), escape(setup), *scores, str(r.n))
    out.print(table)
    say(
        out,
        f"wrote {comparison.markdown_path}, {comparison.csv_path}, {comparison.plot_path}, "
        f"{comparison.cost_plot_path}",
    )


def comparison_markdown(rows: list[RunRow], data: list[str] | None = None) -> str:
    """comparison.md: a GitHub Markdown table of the rows; groups show mean ± sample std.

    `data`: each row's image counts; when they differ, a column shows them."""
    mixed = data is not None and len(set(data)) > 1
    data = data or []
    header = ["#", "run", "backbone", "size", "resize", "weights", "stages", "epochs"]
    header += ["test accuracy", "test loss", "n", "wall time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for i, r in enumerate(rows, 1):
        cells = [i, r.run, r.backbone, r.input_size, r.resize_method, r.weights, r.stages]
        cells += [_epochs(r.epochs), plus_minus(r.accuracy, r.accuracy_std)]
        cells += [_loss(r.loss, r.loss_std), r.n, f"{r.wall_time_s:.1f}"]
        lines.append(_md_row(cells + ([data[i - 1]] if mixed else [])))
    if mixed:  # runs on different data are never side by side unmarked
        lines[0], lines[1] = lines[0] + " data (train/val/test, differ!) |", lines[1] + "---|"
    return "\n".join(lines) + "\n"


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    """A GitHub Markdown table of already formatted cells."""
    lines = [_md_row(header), "|" + "---|" * len(header), *(_md_row(c) for c in cells)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- a tune leaderboard


def trial_line(record: TrialRecord, trials: int) -> str:
    """One line per finished trial, printed while the search runs."""
    values = "  ".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in record.values.items())
    head = f"trial {record.trial}/{trials} {record.status}"
    if record.status == "ok":
        detail = (
            f"val_accuracy {record.val_accuracy:.4f}  val_loss {record.val_loss:.4f}  "
            f"{record.epochs_run} epochs (best {record.best_epoch})"
        )
    else:
        detail = record.message or ""
    cache = f", features {record.feature_cache}" if record.feature_cache else ""
    return f"{head}: {detail}  {record.seconds:.1f} s{cache}  | {values}"


def print_tune(out: Console, result: TuneResult) -> None:
    """The best trials, what the search cost, the files written and how to train the best."""
    from ..tuning import BEST_CONFIG, LEADERBOARD, LEADERBOARD_MD

    board = result.leaderboard
    out.print(_tune_table(result.tune_id, board))
    failed = board["trials_run"] - len([r for r in board["trials"] if r["status"] == "ok"])
    notes = [f"{board['total_seconds']:.1f} s in all"]
    if board["features"]:
        caches = ", ".join(f["cache"] for f in board["features"])
        notes.append(f"feature extraction {board['feature_seconds']:.1f} s (cache {caches})")
    if failed:
        notes.append(f"{failed} trial(s) failed, see the leaderboard")
    if board["stopped"]:
        notes.append(board["stopped"])
    say(out, "; ".join(notes))
    d = result.tune_dir
    say(out, f"wrote {d / LEADERBOARD_MD}, {d / LEADERBOARD}, {d / BEST_CONFIG}")
    out.print(escape(f"train the best: fmnist train {result.best_config}"), highlight=False)


def _tune_table(tune_id: str, board: dict[str, Any]) -> Table:
    keys = list(board["space"])
    last = [k.split(".")[-1] for k in keys]
    short = [s if last.count(s) == 1 else k for s, k in zip(last, keys, strict=True)]
    top = [r for r in board["trials"] if r["status"] == "ok"][:TOP_TRIALS]
    better = "higher" if board["direction"] == "max" else "lower"
    table = Table(
        title=f"tune {escape(tune_id)}: top {len(top)} of {board['trials_run']} trials "
        f"by {board['objective']} ({better} is better; validation split, stage 1)"
    )
    # Numbers never wrap; the sampled values share one column that does (80-column terminals).
    for col in ("#", "trial", "val acc", "val loss", "epochs (best)", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("values", overflow="fold")
    for r in top:
        values = "  ".join(
            f"{s}={format_value(r['values'][k])}" for s, k in zip(short, keys, strict=True)
        )
        table.add_row(
            str(r["rank"]),
            str(r["trial"]),
            f"{r['val_accuracy']:.4f}",
            f"{r['val_loss']:.4f}",
            f"{r['epochs_run']} ({r['best_epoch']})",
            f"{r['seconds']:.1f}",
            escape(values),
        )
    return table


def tune_markdown(board: dict[str, Any]) -> str:
    """leaderboard.md: every trial, best first, then what failed and why."""
    obj, better = board["objective"], "higher" if board["direction"] == "max" else "lower"
    keys = list(board["space"])
    lines = [
        f"# Tuning {board['tune_id']}",
        "",
        f"Objective: **{obj}** ({better} is better), on the validation split after stage 1 "
        f"only, at the epoch early stopping keeps (best {board['monitor']}). "
        f"{board['trials_run']} of {board['trials_requested']} trials"
        + (f" ({board['stopped']})" if board["stopped"] else "")
        + f", {board['total_seconds']:.1f} s in all, feature extraction "
        f"{board['feature_seconds']:.1f} s.",
        "",
    ]
    if board["best_config"]:
        lines += [f"Best config: `{board['best_config']}`", ""]
    header = ["rank", "trial", "status", "val_accuracy", "val_loss", "epochs", "best epoch"]
    header += ["seconds", *keys]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in board["trials"]:
        cells = [r["rank"], r["trial"], r["status"], _opt(r["val_accuracy"], ".4f")]
        cells += [_opt(r["val_loss"], ".4f"), r["epochs_run"], _opt(r["best_epoch"], "")]
        cells += [f"{r['seconds']:.1f}", *(format_value(r["values"][k]) for k in keys)]
        lines.append(_md_row(cells))
    failed = [r for r in board["trials"] if r["message"]]
    if failed:
        lines += ["", *(f"- trial {r['trial']} {r['status']}: {r['message']}" for r in failed)]
    return "\n".join(lines) + "\n"


def _opt(value: Any, spec: str) -> str:
    """A value that may be missing (a failed trial): empty then."""
    return "" if value is None else format(value, spec)
