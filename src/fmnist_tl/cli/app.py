"""The `fmnist` Typer commands: parse, call the Python API, hand the result to `render`.

No logic and no formatting live here; typed failures become one line on stderr and their
exit code (`handle_errors`).
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .._version import __version__
from ..errors import ConfigError, FmnistError, Interrupted
from . import render

if TYPE_CHECKING:
    from ..config import Config

app = typer.Typer(
    help="Transfer-learning experiments on Fashion-MNIST from YAML configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)
data_app = typer.Typer(help="Inspect the Fashion-MNIST data.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config key, e.g. --set train.epochs=5 (repeatable).",
        metavar="KEY.PATH=VALUE",
    ),
]
ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
TestFlipOption = Annotated[
    bool | None,
    typer.Option(
        "--test-flip/--no-test-flip",
        help="Average each image's and its mirror image's probabilities (augment.test_flip).",
        show_default="as the config saved with the model",
    ),
]
DataDirOption = Annotated[
    str | None, typer.Option(help="Folder with Fashion-MNIST files.", show_default="search")
]
ModelArg = Annotated[Path, typer.Argument(help="A .keras model file.", show_default=False)]


def handle_errors(fn: F) -> F:
    """Map typed failures to one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Interrupted as exc:  # not an error: the run is kept and can be resumed
            err.print(f"[yellow]{escape(str(exc))}[/yellow]", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except FmnistError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # the last resort: say what and where to look
            if os.environ.get("FMNIST_DEBUG"):
                traceback.print_exc()
            err.print(
                f"[red]unexpected error:[/red] {type(exc).__name__}: {escape(str(exc))} "
                "(set FMNIST_DEBUG=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


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
) -> None:
    """Transfer-learning experiments on Fashion-MNIST from YAML configs."""


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
        from ..training.trainer import resume_run

        render.print_run(out, resume_run(resume, root=_runs_root(config, set_, repeat, seeds)))
        return
    if config is None:
        raise ConfigError(
            "give a CONFIG file to train (e.g. configs/quickstart.yaml), or --resume RUN to "
            "continue an interrupted run"
        )
    cfg = load_config(config, set_)
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
        typer.Argument(help="Model to start from.", show_default="saved_models/best.keras"),
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
    from ..tuning import tune as run_tune

    result = run_tune(
        cfg, trials, on_trial=lambda record, n: render.say(err, render.trial_line(record, n))
    )
    render.print_tune(out, result)


@app.command()
@handle_errors
def evaluate(
    model: ModelArg,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Where to write the JSON report.", show_default="beside the model"
        ),
    ] = None,
    data_dir: DataDirOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N test images only.")
    ] = None,
    test_flip: TestFlipOption = None,
) -> None:
    """Test accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""
    from ..evaluation import evaluate as run_evaluate

    result = run_evaluate(
        model, data_dir=data_dir, test_limit=limit, json_path=json_path, test_flip=test_flip
    )
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
            help="Where to write comparison.md and comparison.png.",
            show_default="the --root folder",
        ),
    ] = None,
) -> None:
    """Compare runs side by side, best test accuracy first; a repeat group is one row."""
    from ..reporting.runs import compare_runs

    render.print_comparison(out, compare_runs(runs, root=root, out_dir=out_dir))


@app.command()
@handle_errors
def predict(
    model: ModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="PNG or JPEG images of garments.", show_default=False)
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list to stdout instead of a table.")
    ] = False,
    test_flip: TestFlipOption = None,
) -> None:
    """The three most likely classes, with probabilities, for each IMAGE."""
    import json

    from ..predict import predict_images

    results = predict_images(model, images, test_flip=test_flip)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    render.print_predictions(out, model, results)


@config_app.command("show")
@handle_errors
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved config: defaults, then CONFIG, then --set overrides."""
    from ..config import load_config

    out.print(load_config(config, set_).to_yaml(), end="", highlight=False)


@data_app.command("info")
@handle_errors
def data_info(data_dir: DataDirOption = None) -> None:
    """Where the data came from, counts per split and class, and checksum results."""
    from ..data import describe, format_description, load_fashion_mnist

    out.print(format_description(describe(load_fashion_mnist(data_dir))), highlight=False)


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
