"""`fmnist results add|table`: the records behind published numbers, and the tables made of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import HELP, err, handle_errors, out, say

results_app = typer.Typer(
    help="Records of published results (results/) and the tables generated from them.",
    no_args_is_help=True,
    context_settings=HELP,
)
RootOption = Annotated[Path, typer.Option(help="The records folder.")]


@results_app.command("add")
@handle_errors
def results_add(
    source: Annotated[Path, typer.Argument(help="A run folder or a repeat group folder.")],
    name: Annotated[str, typer.Option("--as", help="The record's folder name under --root.")],
    root: RootOption = Path("results"),
) -> None:
    """Copy a run's (or a group's and its runs') config.yaml, metrics.json and history.csv."""
    from ..reporting.records import add_record

    written = add_record(source, root / name)
    say(err, f"wrote {len(written)} files under {root / name}")


@results_app.command("table")
@handle_errors
def results_table(
    table: Annotated[str, typer.Argument(help="A table named in ROOT/rows.yaml.")],
    root: RootOption = Path("results"),
    update: Annotated[
        Path | None,
        typer.Option(help="Put the table into this Markdown file, between its results markers."),
    ] = None,
) -> None:
    """The Markdown table generated from the records alone (e.g. the README's)."""
    from ..reporting.records import results_table as render_table
    from ..reporting.records import update_block

    text = render_table(root, table)
    if update is None:
        out.print(text, end="", highlight=False, markup=False, soft_wrap=True)
        return
    changed = update_block(update, table, text)
    say(err, f"{update}: table {table} {'updated' if changed else 'already up to date'}")
