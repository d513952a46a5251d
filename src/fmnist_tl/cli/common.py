"""What every `fmnist` command shares: the consoles, the option types, `-h`, plain lines and
`--json`, and `handle_errors`, which maps typed failures to one line on stderr and their exit
code."""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import OS_FAILURE, FmnistError, Interrupted, for_terminal, os_failure, printable
from ..tfenv import TerminalStream, held_output, terminal

HELP = {"help_option_names": ["-h", "--help"]}  # -h everywhere: sub-apps and commands inherit
out = Console()
err = Console(file=TerminalStream())  # the user's stderr, while libraries' is held back

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
# One meaning everywhere: the result as JSON on stdout instead of the table (files: --output).
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON to stdout instead of a table.")
]


_ONE_LINE: dict[str, Any] = {"highlight": False, "soft_wrap": True}


def say(console: Console, text: str) -> None:
    """Plain text: escaped, never highlighted, never wrapped (paths stay whole)."""
    console.print(escape(text), highlight=False, soft_wrap=True)


def print_json(result: Any) -> None:
    """`--json` in every command: the result as JSON on stdout, nothing else there."""
    import json
    import sys

    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    sys.stdout.flush()


def handle_errors(fn: F) -> F:
    """Map typed failures to one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Interrupted as exc:  # not an error: the run is kept and can be resumed
            err.print(f"[yellow]{escape(printable(str(exc)))}[/yellow]", **_ONE_LINE)
            raise typer.Exit(exc.exit_code) from None
        except FmnistError as exc:
            err.print(f"[red]error:[/red] {escape(for_terminal(str(exc)))}", **_ONE_LINE)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # the last resort for the disk and paths: name it, exit 3
            err.print(
                f"[red]error:[/red] {escape(for_terminal(str(os_failure(exc))))}", **_ONE_LINE
            )
            raise typer.Exit(OS_FAILURE) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # the last resort: say what and where to look
            if os.environ.get("FMNIST_DEBUG"):
                terminal().write(held_output())  # what the libraries said on the way
                traceback.print_exc(file=terminal())
            err.print(
                f"[red]unexpected error:[/red] {type(exc).__name__}: {escape(printable(str(exc)))} "
                "(set FMNIST_DEBUG=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
