"""The `fmnist` command line: `main()` for the console script, and `app`, loaded on first use.

Importing this package costs nothing beyond itself: Typer, rich and the commands (cli/app.py)
load when `main()` runs or `app` is first asked for, e.g. `from fmnist_tl.cli import app`.
"""

from __future__ import annotations

import importlib
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
    Click's usage block."""
    from .. import tfenv

    tfenv.quiet_process()  # libraries' stderr held back from here on; ours is tfenv.terminal()
    # Typer vendors Click (typer._click); its exceptions are what a usage error raises.
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        code = _app()(prog_name="fmnist", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `fmnist` alone: the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        hint = f" (see {exc.ctx.command_path} -h)" if exc.ctx is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=tfenv.terminal())
        sys.exit(exc.exit_code)
    except ClickException as exc:
        print(f"error: {exc.format_message()}", file=tfenv.terminal())
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
