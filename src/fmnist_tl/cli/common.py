"""What every `fmnist` command shares: the consoles, the option types, `-h`, plain lines and
`--json`, and `handle_errors`, which maps typed failures to one line on stderr and their exit
code."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .. import lifecycle
from ..errors import (
    OS_FAILURE,
    STDOUT_CLOSED,
    FmnistError,
    Interrupted,
    disk_failure,
    first_line,
    for_terminal,
    os_failure,
    printable,
)
from ..tfenv import TerminalStream, held_output, terminal

HELP = {"help_option_names": ["-h", "--help"]}  # -h everywhere: sub-apps and commands inherit


class _Console(Console):
    """rich's Console, but a reader that left early (`| head`) is not rich's exit 1."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(32, "the reader closed the pipe")


out = _Console()
err = _Console(file=TerminalStream())  # the user's stderr, while libraries' is held back

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
            _failed_elsewhere()
            lifecycle.begin("interrupted")  # a signal now would cut the line short
            lifecycle.mark_said()
            _line(f"[yellow]{escape(printable(str(exc)))}[/yellow]")
            raise typer.Exit(exc.exit_code) from None
        except FmnistError as exc:
            _fail(exc)
        except BrokenPipeError:  # stdout's reader left early: nothing to say, and nowhere
            stdout_closed()
        except OSError as exc:  # the last resort for the disk and paths: name it, exit 3
            _line(f"[red]error:[/red] {escape(for_terminal(str(os_failure(exc))))}")
            raise typer.Exit(OS_FAILURE) from None
        except KeyboardInterrupt:
            _failed_elsewhere()
            interrupted()
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a library's failure that is the disk's, else a bug
            if (disk := disk_failure(exc)) is not None:
                _fail(disk)
            _unexpected(exc)

    return wrapper  # type: ignore[return-value]


def _line(markup: str) -> None:
    """One line on the user's stderr; a closed terminal (SIGHUP) cannot take it: say nothing."""
    with contextlib.suppress(OSError, ValueError):
        err.print(markup, **_ONE_LINE)


def _failed_elsewhere() -> None:
    """A stop that a thread asked for (lifecycle.fail: a chief that stopped answering) is that
    thread's failure, with its line and code."""
    failure = lifecycle.failure()
    if isinstance(failure, FmnistError):
        _fail(failure)


def _fail(exc: FmnistError) -> None:
    _line(f"[red]error:[/red] {escape(for_terminal(str(exc)))}")
    raise typer.Exit(exc.exit_code) from None


def interrupted() -> None:
    """A stop signal outside a run (start-up, evaluate, predict, export, a wait): one line, 130.

    Every `finally` on the way has run: no staging folder or temporary file is left."""
    lifecycle.begin("interrupted")
    _line(f"[yellow]{escape(lifecycle.stopped_line())}[/yellow]")
    raise typer.Exit(Interrupted.exit_code) from None


def stdout_closed() -> None:
    """The reader of stdout left early (`fmnist config keys | head -1`): quiet, and exit 141, as
    a process that SIGPIPE ended; stdout goes to /dev/null so no later flush fails."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    raise typer.Exit(STDOUT_CLOSED) from None


def _unexpected(exc: Exception) -> None:
    """The last resort: a bug. Say what and where to look."""
    if os.environ.get("FMNIST_DEBUG"):
        terminal().write(held_output())  # what the libraries said on the way
        traceback.print_exc(file=terminal())
    _line(
        f"[red]unexpected error:[/red] {type(exc).__name__}: {escape(printable(first_line(exc)))} "
        "(set FMNIST_DEBUG=1 for the traceback)"
    )
    raise typer.Exit(1) from None
