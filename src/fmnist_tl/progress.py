"""Progress on stderr for the phases that take time, and plain lines above it.

Bars are rich.progress bars (count, rate, elapsed and time left), drawn only when stderr is a
terminal, so logs and pipes stay clean; FMNIST_PROGRESS=0 turns them off on a terminal too.
Nested phases (features extracted inside a tune trial) share one display, as rich allows only
one live display at a time. Lines printed while a bar is live go above it (`say`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import tfenv

if TYPE_CHECKING:
    from rich.progress import Progress, Task
    from rich.text import Text

Advance = Callable[[int], None]
_live: list[Progress] = []  # the one display, while any phase runs


def enabled() -> bool:
    """Bars on a terminal only (not in logs, pipes or CI), unless FMNIST_PROGRESS=0."""
    if os.environ.get("FMNIST_PROGRESS", "") in ("0", "false", "False"):
        return False
    return tfenv.TerminalStream().isatty()


def _columns() -> list[Any]:
    """Description, bar, count, rate, elapsed, time left; a phase of unknown size (total None)
    shows its pulse and elapsed time only."""
    from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            if task.total is None:
                return Text("")
            return Text(f"{task.completed:,.0f}/{task.total:,.0f}", style="progress.download")

    class Rate(ProgressColumn):
        """Items per second (rich's estimate, else the mean so far); s/item when slower."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None and task.elapsed and task.completed:
                speed = task.completed / task.elapsed
            if not speed or task.total is None:
                return Text("")
            unit = task.fields.get("unit", "img")
            text = f"{speed:,.0f} {unit}/s" if speed >= 1 else f"{1 / speed:.1f} s/{unit}"
            return Text(text, style="progress.data.speed")

    class Left(ProgressColumn):
        def render(self, task: Task) -> Text:
            left = task.time_remaining
            if task.total is None or task.finished or left is None:
                return Text("")
            minutes, seconds = divmod(int(left), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"{hours}:{minutes:02d}:{seconds:02d} left", style="progress.remaining")

    return [
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        Count(),
        Rate(),
        TimeElapsedColumn(),
        Left(),
    ]


def _new_display(transient: bool) -> Progress:
    from rich.console import Console
    from rich.progress import Progress

    console = Console(file=tfenv.TerminalStream())
    return Progress(*_columns(), console=console, transient=transient)


@contextlib.contextmanager
def _display(transient: bool) -> Iterator[Progress | None]:
    if _live:
        yield _live[0]
        return
    if not enabled():
        yield None
        return
    progress = _new_display(transient)
    _live.append(progress)
    try:
        with progress:
            yield progress
    finally:
        _live.clear()


@contextlib.contextmanager
def task(description: str, total: int | None, unit: str = "img") -> Iterator[Advance]:
    """A bar for `total` items (None: not known, a pulse with the time so far); yields
    `advance(n)`. A finished bar stays on screen; a pulse, or a phase nested in another, is
    removed when it ends."""
    with _display(transient=total is None) as progress:
        if progress is None:
            yield lambda n: None
            return
        nested = len(progress.tasks) > 0 or total is None
        tid = progress.add_task(description, total=total, unit=unit)
        try:
            yield lambda n: progress.advance(tid, n)
            if total is not None:
                progress.update(tid, completed=total)
        finally:
            if nested:
                progress.remove_task(tid)


def say(text: str) -> None:
    """A plain line on stderr, above the live bar when there is one."""
    from rich.markup import escape

    if _live:
        _live[0].console.print(escape(text), highlight=False, soft_wrap=True)
        return
    print(text, file=tfenv.terminal(), flush=True)
