"""The `fmnist` Typer commands: parse, call the Python API, hand the result to `render`.

No logic and no formatting live here; typed failures become one line on stderr and their
exit code (`common.handle_errors`, with the option types every command shares).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .._version import __version__
from ..errors import ConfigError
from ..paths import check_data_dir, check_model_file, check_report_outputs, check_run_outputs
from . import render
from .common import (
    HELP,
    ConfigArg,
    DataDirOption,
    JsonOption,
    ModelArg,
    SetOption,
    TestFlipOption,
    err,
    handle_errors,
    out,
)
from .inspect_app import config_app, data_app

if TYPE_CHECKING:
    from ..config import Config

app = typer.Typer(
    help="Transfer-learning experiments on Fashion-MNIST from YAML configs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=HELP,
)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        out.print(f"fmnist-tl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show TensorFlow's and Keras's start-up lines and warnings (quiet by default).",
        ),
    ] = False,
) -> None:
    """Transfer-learning experiments on Fashion-MNIST from YAML configs."""
    if verbose:
        from .. import tfenv

        tfenv.set_verbose()


@app.command()
@handle_errors
def train(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="YAML config file (with --resume, only used to find RUN under its output.dir).",
            show_default=False,
            metavar="CONFIG",
        ),
    ] = None,
    set_: SetOption = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            help="Train N times with seeds seed, seed+1, ...; report mean ± std.", metavar="N"
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Train once per seed, e.g. 0,1,2; report mean ± std.", metavar="S,S,..."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue an interrupted run from its last completed epoch: its folder, or "
            "its run id under output.dir (default saved_models).",
            metavar="RUN",
        ),
    ] = None,
) -> None:
    """Train as CONFIG says (frozen-backbone stage, optional fine-tuning, test), or --resume."""
    from ..config import load_config

    if resume is not None:
        root = _runs_root(config, set_, repeat, seeds)
        _check_resumable(resume, root)  # before TensorFlow loads
        from ..training.trainer import resume_run

        render.print_run(out, resume_run(resume, root=root))
        return
    if config is None:
        raise ConfigError(
            "give a CONFIG file to train (e.g. configs/quickstart.yaml), or --resume RUN to "
            "continue an interrupted run"
        )
    cfg = load_config(config, set_)
    _check_run_paths(cfg)  # before TensorFlow loads: a bad path fails in a second, not four
    if repeat is not None or seeds is not None:
        _train_repeated(cfg, repeat, seeds)
        return
    from ..training.trainer import train as run_train

    render.print_run(out, run_train(cfg))


def _train_repeated(cfg: Config, repeat: int | None, seeds: str | None) -> None:
    """`train --repeat/--seeds`: a line per finished run, then the group's table."""
    from ..repeat import resolve_seeds, run_repeated

    chosen = resolve_seeds(cfg.seed, repeat=repeat, seeds=seeds)
    summary = run_repeated(
        cfg,
        chosen,
        on_run=lambda i, seed, r: render.say(err, render.repeat_run_line(i, len(chosen), seed, r)),
    )
    render.print_repeat(out, summary)


@app.command()
@handle_errors
def finetune(
    model: Annotated[
        Path | None,
        typer.Argument(help="Model to start from.", show_default="saved_models/latest.keras"),
    ] = None,
    unfreeze_from: Annotated[
        str | None,
        typer.Option(help="Unfreeze backbone layers from the first one with this name prefix."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Fine-tuning epochs.")] = None,
    learning_rate: Annotated[
        float | None, typer.Option(min=0.0, help="Fine-tuning learning rate.")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Fine-tune a saved model (stage 2 only) with the config saved beside it; new run."""
    if model is not None:  # before TensorFlow loads: the model file, its config, the options
        from ..config.loading import finetune_config

        finetune_config(check_model_file(model), unfreeze_from, epochs, learning_rate, set_)
    from ..training.trainer import finetune as run_finetune

    result = run_finetune(
        model,
        unfreeze_from=unfreeze_from,
        epochs=epochs,
        learning_rate=learning_rate,
        overrides=set_,
    )
    render.print_run(out, result)


@app.command()
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
    from .. import progress
    from ..tuning import tune as run_tune

    with progress.task("tune trials", trials or cfg.tune.trials, unit="trial") as advance:

        def on_trial(record: Any, n: int) -> None:
            progress.say(render.trial_line(record, n))  # above the bar, on a terminal
            advance(1)

        result = run_tune(cfg, trials, on_trial=on_trial)
    render.print_tune(out, result)


@app.command()
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
    set_: SetOption = None,
) -> None:
    """Every cell of a grid x every seed, each a normal run in one study folder; rerun the
    same command to skip finished runs and resume an interrupted one. study.md ranks the cells."""
    from ..config import load_config
    from ..study import plan_sweep

    plan = plan_sweep(load_config(config, set_), grid, seeds)  # before importing TensorFlow
    from .. import progress
    from ..study import sweep as run_sweep
    from . import study_render

    # A bar over the runs (cells x seeds; count, rate, time left) on a terminal, a line per run.
    with progress.task("sweep runs", plan.total, unit="run") as advance:

        def line(done: int, total: int, cell: Any, seed: int, what: str, run: Any) -> None:
            acc = run.test_accuracy
            progress.say(study_render.study_run_line(done, total, cell.id, seed, what, acc))
            advance(1)

        result = run_sweep(plan, on_run=line)
    study_render.print_study(out, result)


@app.command()
@handle_errors
def evaluate(
    model: ModelArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the JSON report (its pictures go beside it).",
            show_default="beside the model: evaluation.json for the run's own test setup, "
            "else named after what differs, e.g. evaluation.limit50.json",
            metavar="PATH",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N test images only.")
    ] = None,
    test_flip: TestFlipOption = None,
    as_json: JsonOption = False,
) -> None:
    """Test accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""
    check_model_file(model)  # the paths before TensorFlow loads
    check_report_outputs(output)  # the JSON and both pictures, before any is written
    check_data_dir(data_dir, "--data-dir")
    from ..evaluation import evaluate as run_evaluate

    result = run_evaluate(
        model, data_dir=data_dir, test_limit=limit, output=output, test_flip=test_flip
    )
    if as_json:
        render.print_json(result)
        return
    render.print_evaluation(out, model, result)


@app.command()
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
    from ..reporting.runs import compare_runs

    comparison = compare_runs(runs, root=root, out_dir=out_dir, diff=diff, include=include or [])
    render.print_comparison(out, comparison)


@app.command()
@handle_errors
def predict(
    model: ModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="PNG or JPEG images of garments.", show_default=False)
    ],
    as_json: JsonOption = False,
    test_flip: TestFlipOption = None,
) -> None:
    """The three most likely classes, with probabilities, for each IMAGE."""
    check_model_file(model)  # before TensorFlow loads
    from ..predict import predict_images

    results = predict_images(model, images, test_flip=test_flip)
    if as_json:
        render.print_json(results)
        return
    render.print_predictions(out, model, results)


@app.command()
@handle_errors
def export(
    model: ModelArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="savedmodel, tflite or onnx (needs the onnx extra).", metavar="F"
        ),
    ],
    output: Annotated[
        Path | None, typer.Option(help="File or folder to write.", show_default="beside MODEL")
    ] = None,
    quantize: Annotated[
        str, typer.Option(help="TFLite weights: none, dynamic (int8) or float16.", metavar="Q")
    ] = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export MODEL for deployment, checked against it on real test images before it is kept."""
    from ..export import export_model

    result = export_model(
        model, fmt, output=output, quantize=quantize, force=force, data_dir=data_dir
    )
    render.print_export(out, result)


def _check_resumable(run: str, root: str) -> None:
    """The run folder, its state and its config, as resume_run reads them, without TensorFlow."""
    from ..config.loading import load_saved_config
    from ..training.runfolder import find_run, load_resumable

    run_dir = find_run(run, root)
    load_resumable(run_dir)
    load_saved_config(run_dir / "config.yaml")


def _check_run_paths(cfg: Config) -> None:
    """The data folder and the output folders a run writes, before TensorFlow loads."""
    check_data_dir(cfg.data.dir)
    check_run_outputs(cfg.output)


def _runs_root(
    config: Path | None, set_: list[str] | None, repeat: int | None, seeds: str | None
) -> str:
    """Where --resume looks for a run id: output.dir of CONFIG and --set, else the default."""
    if repeat is not None or seeds is not None:
        raise ConfigError("--resume continues one run; leave out --repeat and --seeds")
    others = [s for s in set_ or [] if s.partition("=")[0].strip() != "output.dir"]
    if others:
        raise ConfigError(
            f"--resume continues a run with the config saved in it; --set {others[0]} "
            "cannot change it (only output.dir, to find the run, is accepted)"
        )
    from ..config import load_config

    return load_config(config, set_).output.dir
