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
from rich.table import Table  # noqa: E402

from . import __version__  # noqa: E402
from .errors import FmnistError  # noqa: E402

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


def handle_errors(fn: F) -> F:
    """Map typed failures to one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FmnistError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
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
                f"[red]unexpected error:[/red] {type(exc).__name__}: {exc} "
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
def train(config: ConfigArg, set_: SetOption = None) -> None:
    """Train as CONFIG says: frozen-backbone stage, optional fine-tuning, then test."""
    from .config import load_config
    from .trainer import train as run_train

    cfg = load_config(config, set_)
    result = run_train(cfg)
    _print_summary(result)


@app.command()
@handle_errors
def finetune(
    model: Annotated[
        Path | None,
        typer.Argument(help="Model to start from [default: saved_models/best.keras]."),
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
def evaluate(
    model: Annotated[Path, typer.Argument(help="A .keras model file.", show_default=False)],
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Where to write the JSON report [default: beside the model]."),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder with Fashion-MNIST files [default: search].")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on the first N test images only.")
    ] = None,
) -> None:
    """Test accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""
    from .classes import CLASS_NAMES
    from .evaluation import evaluate as run_evaluate

    result = run_evaluate(model, data_dir=data_dir, test_limit=limit, json_path=json_path)
    table = Table(title=f"{model}  accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}")
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
        str | None, typer.Option(help="Folder with Fashion-MNIST files [default: search].")
    ] = None,
) -> None:
    """Where the data came from, counts per split and class, and checksum results."""
    from .data import describe, format_description, load_fashion_mnist

    out.print(format_description(describe(load_fashion_mnist(data_dir))), highlight=False)


def _print_summary(result: Any) -> None:
    m = result.metrics
    table = Table(title=f"run {result.run_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("test accuracy", f"{m['test']['accuracy']:.4f}")
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
    table.add_row("tensorboard", "tensorboard --logdir logs/fit")
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="fmnist")


if __name__ == "__main__":
    sys.exit(main())
