"""The `fmnist` command line: `main()` for the console script, and `app`, loaded on first use.

Importing this package costs nothing beyond itself: Typer, rich and the commands (cli/app.py)
load when `main()` runs or `app` is first asked for, e.g. `from fmnist_tl.cli import app`.
"""

from __future__ import annotations

import importlib
from typing import Any


def _app() -> Any:
    """The Typer app. The package attribute `app` then names it, not the submodule app.py
    (importing a submodule binds its name on the package; the Typer object must win)."""
    app = importlib.import_module(".app", __name__).app
    globals()["app"] = app
    return app


def main() -> None:
    """Console-script entry point."""
    _app()(prog_name="fmnist")


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
