"""`fmnist tune`, `fmnist sweep`, `fmnist compare` and `fmnist track`: experiments of many
runs, runs side by side, and runs recorded in MLflow."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from ..experiments import ktdist
from ..paths import check_run_outputs
from . import render_studies
from .common import ConfigArg, JsonOption, SetOption, handle_errors, out, print_json


@handle_errors
def tune(
    config: ConfigArg,
    trials: Annotated[
        int | None,
        typer.Option(min=1, help="Number of trials.", show_default="tune.trials", metavar="N"),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Random search over CONFIG's tune.space: each trial trains stage 1 only and is scored on
    the validation split; writes a leaderboard and best.yaml (train it with `fmnist train`)."""
    from ..config import check_search, load_config

    cfg = load_config(config, set_)
    check_search(cfg, trials)  # before importing TensorFlow
    check_run_outputs(cfg.output, publish=False)
    ktdist.prepare(cfg.runtime)  # Keras Tuner's variables; the chief's port; a worker's chief
    from .. import progress, tracking

    tracking.require(cfg.output)
    from ..experiments.tune.search import tune as run_tune

    with progress.task("tune trials", trials or cfg.tune.trials, unit="trial") as advance:

        def on_trial(record: Any, n: int) -> None:
            progress.say(render_studies.trial_line(record, n))  # above the bar, on a terminal
            advance(1)

        result = run_tune(cfg, trials, on_trial=on_trial)
    render_studies.print_tune(out, result)


@handle_errors
def sweep(
    config: ConfigArg,
    grid: Annotated[
        list[str] | None,
        typer.Option(help="A swept key and its values (repeatable).", metavar="KEY=V1,V2"),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(help="Runs per cell: seeds seed, seed+1, ...", show_default="sweep.seeds"),
    ] = None,
    max_runs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stop before planning a sweep of more runs (cells x seeds) than this.",
            show_default="10000",
        ),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Every cell of a grid x every seed, each a normal run in one study folder; rerun the
    same command to skip finished runs and resume an interrupted one. study.md ranks the cells."""
    from ..config import load_config
    from ..experiments.sweep import plan_sweep

    plan = plan_sweep(load_config(config, set_), grid, seeds, max_runs)  # before TensorFlow
    ktdist.prepare(plan.base.runtime)  # Keras Tuner's variables; the chief's port; its chief
    from .. import progress
    from ..experiments.sweep import sweep as run_sweep

    # A bar over the runs (cells x seeds; count, rate, time left) on a terminal, a line per run.
    with progress.task("sweep runs", plan.total, unit="run") as advance:

        def line(done: int, total: int, cell: Any, seed: int, what: str, run: Any) -> None:
            acc = run.test_accuracy
            progress.say(render_studies.study_run_line(done, total, cell.id, seed, what, acc))
            advance(1)

        result = run_sweep(plan, on_run=line)
    render_studies.print_study(out, result)


@handle_errors
def compare(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Run folders, run ids or glob patterns.",
            show_default="every run under --root",
        ),
    ] = None,
    root: Annotated[Path, typer.Option(help="Folder holding the runs.")] = Path("saved_models"),
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write comparison.md, .csv and the plots.",
            show_default="the --root folder",
        ),
    ] = None,
    diff: Annotated[
        bool, typer.Option(help="Show only the config keys that differ, plus val accuracy.")
    ] = False,
    include: Annotated[
        list[Path] | None,
        typer.Option(
            help="A comparison.csv whose rows join these runs as recorded (another machine's "
            "results); repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare runs side by side, best test accuracy first; a repeat group is one row."""
    from ..reporting.compare import compare_runs

    comparison = compare_runs(runs, root=root, out_dir=out_dir, diff=diff, include=include or [])
    render_studies.print_comparison(out, comparison)


@handle_errors
def track(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, repeat groups, sweep or tune folders, or folders holding them.",
            show_default=False,
            metavar="PATH",
        ),
    ],
    uri: Annotated[
        str | None,
        typer.Option(
            help="The MLflow store: sqlite:///PATH or a server's http://HOST:PORT.",
            show_default="each run's output.tracking_uri, else sqlite:///<folder>/mlflow.db",
        ),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(help="The MLflow experiment.", show_default="output.experiment or name"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record finished runs, repeat groups, sweeps and searches in MLflow from their files, as
    output.tracking: mlflow records them; run it again and nothing is recorded twice."""
    from ..tracking.backfill import check_uri, track_runs

    check_uri(uri)
    report = track_runs(runs, uri=uri, experiment=experiment)
    if as_json:
        print_json([dataclasses.asdict(i) for i in report.items])
        return
    render_studies.print_tracked(out, report)
