"""The `fmnist` command line: parse, call the Python API, print. No logic lives here."""

from __future__ import annotations

import os

# Before TensorFlow is imported anywhere: keep its C++ start-up chatter off the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import functools  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, TypeVar  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from . import __version__  # noqa: E402
from .errors import ConfigError, FmnistError, Interrupted  # noqa: E402

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
    from .config import load_config

    if resume is not None:
        from .trainer import resume_run

        _print_summary(resume_run(resume, root=_runs_root(config, set_, repeat, seeds)))
        return
    if config is None:
        raise ConfigError(
            "give a CONFIG file to train (e.g. configs/quickstart.yaml), or --resume RUN to "
            "continue an interrupted run"
        )
    cfg = load_config(config, set_)
    if repeat is not None or seeds is not None:
        from .repeat import resolve_seeds, run_repeated

        chosen = resolve_seeds(cfg.seed, repeat=repeat, seeds=seeds)
        summary = run_repeated(
            cfg,
            chosen,
            on_run=lambda i, seed, r: err.print(
                f"run {i + 1}/{len(chosen)} (seed {seed}): test accuracy "
                f"{r.metrics['test']['accuracy']:.4f}  {escape(str(r.run_dir))}",
                highlight=False,
                soft_wrap=True,
            ),
        )
        _print_repeat(summary)
        return
    from .trainer import train as run_train

    result = run_train(cfg)
    _print_summary(result)


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
    from .trainer import finetune as run_finetune

    result = run_finetune(
        model,
        unfreeze_from=unfreeze_from,
        epochs=epochs,
        learning_rate=learning_rate,
        overrides=set_,
    )
    _print_summary(result)


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
    from .config import check_search, load_config

    cfg = load_config(config, set_)
    check_search(cfg, trials)  # before importing TensorFlow
    from .tuning import tune as run_tune

    _print_tune(run_tune(cfg, trials, on_trial=_print_trial))


@app.command()
@handle_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="A .keras model file.", show_default=False)],
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Where to write the JSON report.", show_default="beside the model"
        ),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder with Fashion-MNIST files.", show_default="search")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N test images only.")
    ] = None,
    test_flip: TestFlipOption = None,
) -> None:
    """Test accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""
    from .classes import CLASS_NAMES
    from .evaluation import evaluate as run_evaluate

    result = run_evaluate(
        model, data_dir=data_dir, test_limit=limit, json_path=json_path, test_flip=test_flip
    )
    flip = _flip_note(result)
    table = Table(
        title=f"{model}  accuracy {result['accuracy']:.4f}{flip}  loss {result['loss']:.4f}"
    )
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        table.add_row(
            row["class"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(table)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for i in range(len(CLASS_NAMES)):
        cm.add_column(str(i), justify="right")
    for i, row in enumerate(result["confusion_matrix"]):
        cm.add_row(f"{i} {CLASS_NAMES[i]}", *(str(v) for v in row))
    out.print(cm)
    out.print(f"wrote {result['json_path']}, " + ", ".join(result["plots"]))


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
    from .compare import compare_runs

    result = compare_runs(runs, root=root, out_dir=out_dir)
    # The terminal gets the essentials (every other column is in comparison.md); run ids and
    # numbers never wrap, the setup column does, so the table stays readable at 80 columns.
    table = Table(title="test accuracy per run, best first (groups: mean ± sample std)")
    table.add_column("run", no_wrap=True, min_width=max(len(r["run"]) for r in result["rows"]))
    table.add_column("setup")
    for col in ("test accuracy", "test loss", "n"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in result["rows"]:
        epochs = r["epochs"]
        setup = (
            f"{r['backbone']} {r['input_size']}px, {r['weights']}, {r['stages']}, "
            + (f"{epochs:.1f}" if isinstance(epochs, float) else str(epochs))
            + f" ep, {r['wall_time_s']:.1f} s/run"
        )
        std, loss_std = r["accuracy_std"], r["loss_std"]
        table.add_row(
            escape(r["run"]),
            escape(setup),
            f"{r['accuracy']:.4f}" + (f" ± {std:.4f}" if std is not None else ""),
            f"{r['loss']:.4f}" + (f" ± {loss_std:.4f}" if loss_std is not None else ""),
            str(r["n"]),
        )
    out.print(table)
    out.print(
        escape(f"wrote {result['markdown_path']}, {result['plot_path']}"),
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@handle_errors
def predict(
    model: Annotated[Path, typer.Argument(help="A .keras model file.", show_default=False)],
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

    from .predict import predict_images

    results = predict_images(model, images, test_flip=test_flip)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    table = Table(title=f"predictions of {escape(str(model))}")
    table.add_column("image")
    for rank in ("1st", "2nd", "3rd"):
        table.add_column(rank)
    for r in results:
        top3 = (f"{t['label']} {t['probability']:.3f}" for t in r["top3"])
        table.add_row(escape(r["image"]), *top3)
    out.print(table)


@config_app.command("show")
@handle_errors
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved config: defaults, then CONFIG, then --set overrides."""
    from .config import load_config

    out.print(load_config(config, set_).to_yaml(), end="", highlight=False)


@data_app.command("info")
@handle_errors
def data_info(
    data_dir: Annotated[
        str | None, typer.Option(help="Folder with Fashion-MNIST files.", show_default="search")
    ] = None,
) -> None:
    """Where the data came from, counts per split and class, and checksum results."""
    from .data import describe, format_description, load_fashion_mnist

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
    from .config import load_config

    return load_config(config, set_).output.dir


def _flip_note(test: dict[str, Any]) -> str:
    """Beside an accuracy with the test-time flip: that it is, and the accuracy without it."""
    if not test.get("test_flip"):
        return ""
    return f" (with the test-time flip; alone {test['accuracy_without_flip']:.4f})"


def _print_summary(result: Any) -> None:
    m = result.metrics
    table = Table(title=f"run {result.run_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("test accuracy", f"{m['test']['accuracy']:.4f}{_flip_note(m['test'])}")
    table.add_row("test loss", f"{m['test']['loss']:.4f}")
    for stage in m["stages"]:
        best = stage.get("best_epoch")
        detail = (
            f"{stage['epochs_run']} epochs, best epoch {best} "
            f"({stage.get('epochs_after_best', 0)} after it wasted), "
            f"{stage['wall_time_s']:.1f} s, {stage['images_per_s'] or 0:.0f} img/s"
        )
        if "feature_cache" in stage:
            detail += f", feature cache {stage['feature_cache']}"
        table.add_row(f"stage {stage['name']}", detail)
    table.add_row("weights", m["weights_used"])
    table.add_row("wall time", f"{m['wall_time_s']:.1f} s")
    table.add_row("artifacts", str(result.run_dir))
    table.add_row("tensorboard", f"tensorboard --logdir {m['log_dir']}")
    out.print(table)


def _print_trial(record: dict[str, Any], trials: int) -> None:
    """One line per finished trial, on stderr while the search runs."""
    from .tuning import format_value

    values = "  ".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in record["values"].items())
    head = f"trial {record['trial']}/{trials} {record['status']}"
    if record["status"] == "ok":
        detail = (
            f"val_accuracy {record['val_accuracy']:.4f}  val_loss {record['val_loss']:.4f}  "
            f"{record['epochs_run']} epochs (best {record['best_epoch']})"
        )
    else:
        detail = record["message"] or ""
    cache = f", features {record['feature_cache']}" if record["feature_cache"] else ""
    err.print(
        escape(f"{head}: {detail}  {record['seconds']:.1f} s{cache}  | {values}"),
        highlight=False,
        soft_wrap=True,
    )


def _print_tune(result: Any) -> None:
    from .tuning import BEST_CONFIG, LEADERBOARD, LEADERBOARD_MD, format_value

    board = result.leaderboard
    keys = list(board["space"])
    last = [k.split(".")[-1] for k in keys]
    short = [s if last.count(s) == 1 else k for s, k in zip(last, keys, strict=True)]
    top = [r for r in board["trials"] if r["status"] == "ok"][:10]
    table = Table(
        title=f"tune {escape(result.tune_id)}: top {len(top)} of {board['trials_run']} trials "
        f"by {board['objective']} ({'higher' if board['direction'] == 'max' else 'lower'} is "
        "better; validation split, stage 1)"
    )
    # Numbers never wrap; the sampled values share one column that does (80-column terminals).
    for col in ("#", "trial", "val acc", "val loss", "epochs (best)", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("values", overflow="fold")
    for r in top:
        table.add_row(
            str(r["rank"]),
            str(r["trial"]),
            f"{r['val_accuracy']:.4f}",
            f"{r['val_loss']:.4f}",
            f"{r['epochs_run']} ({r['best_epoch']})",
            f"{r['seconds']:.1f}",
            escape(
                "  ".join(
                    f"{s}={format_value(r['values'][k])}" for s, k in zip(short, keys, strict=True)
                )
            ),
        )
    out.print(table)
    failed = board["trials_run"] - len([r for r in board["trials"] if r["status"] == "ok"])
    notes = [f"{board['total_seconds']:.1f} s in all"]
    if board["features"]:
        caches = ", ".join(f["cache"] for f in board["features"])
        notes.append(f"feature extraction {board['feature_seconds']:.1f} s (cache {caches})")
    if failed:
        notes.append(f"{failed} trial(s) failed, see the leaderboard")
    if board["stopped"]:
        notes.append(board["stopped"])
    out.print(escape("; ".join(notes)), highlight=False, soft_wrap=True)
    d = result.tune_dir
    out.print(
        escape(f"wrote {d / LEADERBOARD_MD}, {d / LEADERBOARD}, {d / BEST_CONFIG}"),
        highlight=False,
        soft_wrap=True,
    )
    out.print(escape(f"train the best: fmnist train {result.best_config}"), highlight=False)


def _print_repeat(summary: dict[str, Any]) -> None:
    acc, loss = summary["accuracy"], summary["loss"]
    table = Table(title=f"group {escape(summary['group_id'])}  ({summary['n']} runs, ± sample std)")
    for col in ("run", "seed", "test accuracy", "test loss", "wall time (s)"):
        table.add_column(
            col,
            justify="left" if col == "run" else "right",
            no_wrap=col != "wall time (s)",
            min_width=max(len(r["run_id"]) for r in summary["per_run"]) if col == "run" else None,
        )
    for r in summary["per_run"]:
        table.add_row(
            escape(r["run_id"]),
            str(r["seed"]),
            f"{r['accuracy']:.4f}",
            f"{r['loss']:.4f}",
            f"{r['wall_time_s']:.1f}",
        )
    table.add_section()
    table.add_row(
        "mean ± std",
        "",
        f"{acc['mean']:.4f} ± {acc['std']:.4f}",
        f"{loss['mean']:.4f} ± {loss['std']:.4f}",
        "",
        style="bold",
    )
    out.print(table)
    out.print(
        escape(f"wrote {summary['json_path']}, {summary['markdown_path']}"),
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:
    """Console-script entry point."""
    app(prog_name="fmnist")


if __name__ == "__main__":
    sys.exit(main())
