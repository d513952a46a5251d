"""How the results of many runs print on the terminal: a comparison (and its --diff), a sweep's
study and its per-run line, a tune search and its per-trial line, what `fmnist track`
recorded. Nothing here computes or writes a result (comparison.md, study.md and
leaderboard.md are written where they are made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..reporting.tables import format_value
from .common import say

if TYPE_CHECKING:
    from ..experiments.sweep.study import StudyResult
    from ..experiments.tune.leaderboard import TuneResult
    from ..records import TrialRecord
    from ..reporting.rows import Comparison
    from ..tracking.backfill import TrackReport

TOP_TRIALS = 10  # the terminal shows the best ten; leaderboard.md lists every trial


def print_comparison(out: Console, comparison: Comparison) -> None:
    """The essentials per row (every other column is in comparison.md).

    Run ids and numbers never wrap, the setup column does, so the table stays readable at 80
    columns.
    """
    rows = comparison.rows
    if comparison.diff_keys is not None:  # --diff: only what differs, plus the scores
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
            f"{r.backbone}{size}, {r.weights or '-'}, {r.stages}, {r.epochs_text} ep, "
            f"{r.wall_time_s:.1f} s/run" + (f", data {d}" if len(set(data)) > 1 else "")
        )
        scores = (r.accuracy_text, r.loss_text)
        table.add_row(escape(r.run), escape(setup), *scores, str(r.n))
    out.print(table)
    say(
        out,
        f"wrote {comparison.markdown_path}, {comparison.csv_path}, {comparison.plot_path}, "
        f"{comparison.cost_plot_path}",
    )


def print_comparison_diff(out: Console, comparison: Comparison) -> None:
    """`fmnist compare --diff`: the config keys that differ, data counts, val and test accuracy."""
    from ..reporting.compare import diff_table  # (lazy: it loads matplotlib)

    header, cells = diff_table(comparison)
    table = Table(title="runs, best test accuracy first: only the config keys that differ")
    for col in header:
        table.add_column(col, no_wrap=col in ("run", "val accuracy", "test accuracy"))
    for line in cells:
        table.add_row(*(escape(c) for c in line))
    out.print(table)
    say(
        out,
        f"wrote {comparison.markdown_path}, {comparison.csv_path}, {comparison.plot_path}, "
        f"{comparison.cost_plot_path}",
    )


def study_run_line(done: int, total: int, cell: str, seed: int, what: str, acc: Any) -> str:
    """Progress of `fmnist sweep`: one line per run trained, resumed or skipped."""
    score = f"test accuracy {acc:.4f}" if acc is not None else "no result (diverged)"
    return f"run {done}/{total} {what}: cell {cell} seed {seed}: {score}"


def print_study(out: Console, result: StudyResult) -> None:
    """The study table, best cell first, and the files written."""
    from ..experiments.sweep.markdown import study_cells, study_header

    keys = result.plan.keys
    state = "complete" if result.complete else "incomplete"
    table = Table(title=f"study {escape(result.study_id)} ({state}; ± sample std over seeds)")
    # Best first, so the rank column is left out; the swept values and headers fold, numbers
    # never do, so the table fits 80 columns.
    for i, col in enumerate(study_header(keys)[1:]):
        swept = 1 <= i < 1 + len(keys)
        width = max(len(format_value(v)) for v in result.plan.grid[keys[i - 1]]) if swept else None
        justify = "left" if col == "cell" else "right"
        table.add_column(col, justify=justify, no_wrap=not swept, min_width=width,
                         overflow="fold")  # fmt: skip
    for row in result.rows:
        table.add_row(*(escape(c) for c in study_cells(row, keys)[1:]))
    out.print(table)
    files = ", ".join(str(p) for p in [result.markdown_path, result.json_path, *result.plots])
    say(out, f"wrote {files}")


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
    from ..experiments.tune.leaderboard import BEST_CONFIG, LEADERBOARD, LEADERBOARD_MD

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


def print_tracked(out: Console, report: TrackReport) -> None:
    """`fmnist track`: a line per run, study or trial, then the counts and how to look."""
    width = max(len(i.what) for i in report.items)
    for item in report.items:
        mlflow = f"  (MLflow run {item.run_id})" if item.run_id else ""
        say(out, f"{item.what:<{width}}  {item.kind:<6}  {item.name}{mlflow}")
    counts = [
        f"{n} {what}"
        for what in ("recorded", "completed", "already recorded", "unfinished")
        if (n := report.count(what))
    ]
    say(out, ", ".join(counts) + f" in {', '.join(report.stores)}")
    if report.count("unfinished"):
        say(out, "unfinished runs are recorded once they end: fmnist train --resume RUN")
    for store in report.stores:
        say(out, f"open them with: mlflow ui --backend-store-uri {store}")
