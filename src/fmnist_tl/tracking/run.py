"""One run's MLflow run, across every sitting of the run: never the reason a run fails.

`open_run` (each sitting, from training.session) finds the run's MLflow run again (by the id
state.json holds, else by the run folder's name) or makes it, with the config as params and
the start tags, as a child of the study open at the time (`Nest`, set by tracking.study).
`log_epoch` logs each committed epoch; `sitting` ends the MLflow run as KILLED (interrupted:
resumable) or FAILED when the sitting does; `finish` fills it from the run folder
(record.py). With output.tracking: none, `OFF` does nothing and MLflow is never imported.

A failure of the store is said once, in one line; from then on the run goes on untracked, and
its end says that it was not recorded and how to record it (`fmnist track`). Inside a study
the study says it for all its runs at once.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import progress
from ..config import Config
from ..errors import FmnistError, Interrupted, first_line
from ..layout import RunPaths
from .record import record_run
from .store import PARENT, Store, TrackingFailure, experiment_of
from .values import config_params, epoch_metrics, start_tags

_said: set[str] = set()  # failures said in this process (one line each)


@dataclass
class Nest:
    """An open study: runs made while it is open are its children."""

    store: Store | None  # None: the study's store failed, its runs are not recorded
    parent_id: str | None
    tags: dict[str, str] = field(default_factory=dict)  # what its children carry
    unrecorded: list[Path] = field(default_factory=list)  # its runs the store missed


NEST: ContextVar[Nest | None] = ContextVar("fmnist_tracking_nest", default=None)


def say_failure(why: str) -> None:
    """The store failed: one line, once per failure in this process."""
    if why in _said:
        return
    _said.add(why)
    progress.say(f"tracking: {why}; training goes on untracked, the run folders are unaffected")


def track_command(folders: list[Path]) -> str:
    return "fmnist track " + " ".join(shlex.quote(str(f)) for f in folders)


class RunTracker:
    """A run's MLflow run; `run_id` None when tracking is off or the store never answered."""

    def __init__(self, config: Config | None = None, folder: Path | None = None) -> None:
        self.config, self.folder = config, folder
        self.store: Store | None = None
        self.run_id: str | None = None

    def _try(self, call: Callable[[Store, str], Any]) -> bool:
        if self.store is None or self.run_id is None:
            return False
        try:
            call(self.store, self.run_id)
            return True
        except TrackingFailure as exc:
            self.lost(str(exc))
        except (FmnistError, OSError, ValueError) as exc:  # a run file it could not read
            self.lost(f"cannot record {self.folder}: {first_line(exc)}")
        return False

    def lost(self, why: str) -> None:
        say_failure(why)
        self.store = None

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One committed epoch of history.csv, at its step."""
        self._try(lambda store, run: store.log(run, metrics=epoch_metrics([row])))

    @contextlib.contextmanager
    def sitting(self) -> Iterator[None]:
        """A sitting that ends in an exception ends the MLflow run: KILLED when interrupted
        (the resumed run sets it RUNNING again), else FAILED (diverged, or an error)."""
        try:
            yield
        except BaseException as exc:
            stopped = isinstance(exc, Interrupted | KeyboardInterrupt)
            self._try(lambda store, run: store.set_status(run, "KILLED" if stopped else "FAILED"))
            raise

    def finish(self, paths: RunPaths) -> None:
        """Fill the MLflow run from the finished run folder, or say it was not recorded."""
        if self.config is None:
            return
        model = self.config.output.tracking_model
        if self._try(lambda store, run: record_run(store, run, paths, model=model)):
            return
        nest = NEST.get()
        if nest is not None:  # the study names all its unrecorded runs at its end
            nest.unrecorded.append(paths.dir)
            return
        progress.say(
            f"tracking: run {paths.name} was not recorded in MLflow; record it when the store "
            f"answers with: {track_command([paths.dir])}"
        )


OFF = RunTracker()


def open_run(config: Config, folder: Path, run_id: str | None) -> RunTracker:
    """The MLflow run of this sitting: the run's own (state.json's `run_id`, else found by the
    folder's name), or a new one, a child of the study open now."""
    if config.output.tracking == "none":
        return OFF
    tracker, nest = RunTracker(config, folder), NEST.get()
    try:
        if nest is not None and nest.store is None:
            return tracker  # the study's store failed and said so
        store = nest.store if nest is not None else None
        store = store or Store.open(config.output.store(), experiment_of(config.output))
        run = (store.get(run_id) if run_id else None) or store.find(folder.name, "run")
        if run is not None:
            tracker.run_id = str(run.info.run_id)
            store.set_status(tracker.run_id, "RUNNING")
        else:
            tags = start_tags(config, folder)
            if nest is not None and nest.parent_id is not None:
                tags.update({PARENT: nest.parent_id, **nest.tags})
            tracker.run_id = store.create(folder.name, tags)
            store.log(tracker.run_id, params=config_params(config.to_dict()))
        tracker.store = store
    except TrackingFailure as exc:
        tracker.lost(str(exc))
    return tracker
