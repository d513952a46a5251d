"""The `fmnist` Typer app: every command, registered here, defined in a module of its kind.

A command parses, calls the Python API and hands the result to a renderer; no logic and no
formatting live in a command, and typed failures become one line on stderr and their exit code
(`common.handle_errors`, with the option types every command shares).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from . import model_commands, run_commands, study_commands
from .common import HELP, out
from .inspect_app import config_app, data_app
from .results_app import results_app

app = typer.Typer(
    help="Transfer-learning experiments on Fashion-MNIST from YAML configs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=HELP,
)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(results_app, name="results")


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


for command in (
    run_commands.train,
    run_commands.finetune,
    study_commands.tune,
    study_commands.sweep,
    model_commands.evaluate,
    study_commands.compare,
    study_commands.track,
    model_commands.predict,
    model_commands.export,
):
    app.command()(command)
