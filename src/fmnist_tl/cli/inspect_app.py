"""`fmnist config show|keys` and `fmnist data info`: look at configs and data, change nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from . import render
from .common import HELP, DataDirOption, JsonOption, SetOption, handle_errors, out, print_json

config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True, context_settings=HELP)
data_app = typer.Typer(
    help="Inspect the Fashion-MNIST data.", no_args_is_help=True, context_settings=HELP
)


@config_app.command("show")
@handle_errors
def config_show(
    config: Annotated[
        Path | None,
        typer.Argument(help="YAML config file.", show_default="the defaults alone"),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Print the resolved config: defaults, then CONFIG, then --set overrides."""
    from ..config import load_config

    out.print(load_config(config, set_).to_yaml(), end="", highlight=False)


@config_app.command("keys")
@handle_errors
def config_keys(
    prefix: Annotated[
        str | None,
        typer.Argument(help="Only keys that start with this, e.g. train or model.head."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every config key with its type, default and meaning (read from the schema)."""
    from ..config import key_table

    rows = [r for r in key_table() if prefix is None or r.key.startswith(prefix)]
    if not rows:
        raise ConfigError(f"no config key starts with {prefix!r}; see `fmnist config keys`")
    if as_json:
        print_json([dataclasses.asdict(r) for r in rows])
        return
    render.print_keys(out, rows)


@data_app.command("info")
@handle_errors
def data_info(data_dir: DataDirOption = None) -> None:
    """Where the data came from, counts per split and class, and checksum results."""
    from ..data.sources import describe, format_description, load_fashion_mnist

    out.print(format_description(describe(load_fashion_mnist(data_dir))), highlight=False)
