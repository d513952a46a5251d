"""The `fmnist` command line: `main()` for the console script, and `app`, loaded on first use.

Importing this package costs nothing beyond itself: Typer, rich and the commands (cli/app.py)
load when `main()` runs or `app` is first asked for, e.g. `from fmnist_tl.cli import app`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
from typing import Any


def _app() -> Any:
    """The Typer app. The package attribute `app` then names it, not the submodule app.py
    (importing a submodule binds its name on the package; the Typer object must win)."""
    app = importlib.import_module(".app", __name__).app
    globals()["app"] = app
    return app


def main() -> None:
    """Console-script entry point. A usage error (an unknown option or command, a missing or
    malformed argument) is one line on stderr and exit 2, like every other failure, instead of
    Click's usage block. SIGINT, SIGTERM and SIGHUP are one clean stop from the first moment
    (lifecycle.py); stdout closed by its reader is quiet (exit 141)."""
    from .. import lifecycle
    from ..errors import STDOUT_CLOSED

    lifecycle.install()  # first: a signal during start-up is the same clean stop
    stdout = _identity(1)
    try:
        code = _run()
    except KeyboardInterrupt:  # a signal that reached no command: while loading, or in Click
        code = _stopped()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # past Click and every command's handler (a library that turned a
        # stop's KeyboardInterrupt into its own error): the stop, else a bug, said in one line
        # (a traceback now would go to the held stderr: exit 1 with nothing said)
        code = _stopped() if lifecycle.stopping() else _unexpected(exc)
    if code == 1 and stdout != _identity(1) == _identity(os.devnull):
        code = STDOUT_CLOSED  # rich or Click met EPIPE: stdout to /dev/null, then exit 1
    _exit(code)


def _identity(file: int | str) -> tuple[int, int] | None:
    """(device, inode) of an fd or a path, or None."""
    try:
        st = os.fstat(file) if isinstance(file, int) else os.stat(file)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _run() -> int:
    """The app, with Click's own failures as one line; returns the exit code."""
    from .. import lifecycle, tfenv
    from ..errors import Interrupted

    tfenv.quiet_process()  # libraries' stderr held back from here on; ours is tfenv.terminal()
    # Typer vendors Click (typer._click); its exceptions are what a usage error raises.
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        code = _app()(prog_name="fmnist", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `fmnist` alone: the help, as before
        exc.show()
        return exc.exit_code
    except UsageError as exc:
        hint = f" (see {exc.ctx.command_path} -h)" if exc.ctx is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=tfenv.terminal())
        return exc.exit_code
    except ClickException as exc:
        print(f"error: {exc.format_message()}", file=tfenv.terminal())
        return exc.exit_code
    if not isinstance(code, int):
        return 0
    if code == Interrupted.exit_code and not lifecycle.said():  # Typer caught it: Exit(130)
        return _stopped()
    return code


def _stopped() -> int:
    """The clean stop's one line, for a signal no command caught; its exit code."""
    from .. import lifecycle, tfenv
    from ..errors import Interrupted

    lifecycle.begin("interrupted")
    with contextlib.suppress(OSError, ValueError):
        print(lifecycle.stopped_line(), file=tfenv.terminal(), flush=True)
    return Interrupted.exit_code


def _unexpected(exc: Exception) -> int:
    """The last resort's one line (as cli/common.py's), for a failure no command caught."""
    from .. import tfenv
    from ..errors import first_line, printable

    with contextlib.suppress(OSError, ValueError):
        if os.environ.get("FMNIST_DEBUG"):
            import traceback

            tfenv.terminal().write(tfenv.held_output())
            traceback.print_exception(exc, file=tfenv.terminal())
        print(
            f"unexpected error: {type(exc).__name__}: {printable(first_line(exc))} "
            "(set FMNIST_DEBUG=1 for the traceback)",
            file=tfenv.terminal(),
            flush=True,
        )
    return 1


def _exit(code: int) -> None:
    """Flush stdout (a reader that left early: quiet, 141), then exit with `code`, whatever
    comes: after a stop, through atexit and os._exit."""
    from .. import lifecycle, tfenv

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        from ..errors import STDOUT_CLOSED

        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or STDOUT_CLOSED
    except (OSError, ValueError):
        pass
    lifecycle.ignore()  # the code is chosen: a signal while Python shuts down cannot change it
    if lifecycle.stopping() or lifecycle.abandoned():
        # A stop's KeyboardInterrupt that crossed a library's embedded Python (pybind11's exec
        # while TensorFlow loads) leaves CPython's flag that ends the process by SIGINT (-2)
        # instead of this code: the atexit cleanup (autograph files) runs, then os._exit. A
        # thread stuck in TensorFlow (abandoned) could hang even that: straight to os._exit.
        if not lifecycle.abandoned():
            atexit._run_exitfuncs()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            tfenv.terminal().flush()
        os._exit(code)
    sys.exit(code)


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
