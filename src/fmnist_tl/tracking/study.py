"""A study's MLflow run: `--repeat`, `fmnist sweep` and `fmnist tune` open a parent run, and
each seed, cell x seed or trial is a child of it.

    with tracking.study(config, "sweep", name, identity=study_id, params=...) as study:
        with study.child({"fmnist.cell": "c01"}):
            train(...)                      # this run's MLflow run nests under the study's
        study.done(metrics=..., files=[study.json, study.md], note=study_md)

The parent holds the study's summary as metrics (mean ± std per cell, or the leaderboard),
its files as artifacts and its Markdown as the run's description. A study found again (a
rerun sweep continues its folder) continues its parent run. A worker of a distributed sweep
or search joins the parent its chief made (`join`: found by `key` among running parents) and
logs its own children. A study that stops early ends KILLED (interrupted) or FAILED; either
way its end says which of its runs the store did not record.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import progress
from ..config import Config
from ..errors import FmnistError, Interrupted
from ..layout import RunPaths
from .record import track_folder
from .run import NEST, Nest, say_failure, track_command
from .store import IDENTITY, KIND, NOTE, PARENT, RECORDED, Store, TrackingFailure, experiment_of
from .values import code_tags, config_params, epoch_metrics, flatten, identity_tags, param_text

STUDY_KEY = "fmnist.study_key"  # what a distributed study's workers find their parent by
JOIN_WAIT_S = 90.0  # how long a worker looks for its chief's parent run (MLflow loading)
NOTE_CHARS = 7_500  # MLflow keeps a tag value of up to 8,000 characters
# A trial's scores are its best epoch's: named apart from the per-epoch curves of the same values.
TRIAL_SCORES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss"}


class StudyTracker:
    """The parent run of a study, and the nest its runs are made in."""

    def __init__(self, kind: str, store: Store | None = None, run_id: str | None = None) -> None:
        self.kind, self.store, self.run_id = kind, store, run_id
        self.identity: str | None = None  # the parent's fmnist.run_id: its folder's name
        self.unrecorded: list[Path] = []
        self.trials_unrecorded = 0
        self.joined = False  # a distributed worker: the chief ends the parent, not this
        self.model = False  # output.tracking_model: best.keras among a run's artifacts

    def _try(self, call: Any) -> bool:
        if self.store is None or self.run_id is None:
            return False
        try:
            call(self.store, self.run_id)
            return True
        except TrackingFailure as exc:
            say_failure(str(exc))
            self.store = None
        except (FmnistError, OSError, ValueError):  # a run's files it could not read
            pass
        return False

    @contextlib.contextmanager
    def child(self, tags: dict[str, Any] | None = None) -> Iterator[None]:
        """Runs made in this block are children of the study, carrying `tags`."""
        if self.kind == "off":
            yield
            return
        texts = {key: param_text(value) for key, value in (tags or {}).items()}
        token = NEST.set(Nest(self.store, self.run_id, texts, self.unrecorded))
        try:
            yield
        finally:
            NEST.reset(token)

    def adopt(self, folder: Path, tags: dict[str, Any] | None = None) -> None:
        """A run of the study that finished before (a rerun skips it): recorded from its
        files as a child if the store lacks it (tracking was off, or the store away)."""
        texts = {key: param_text(value) for key, value in (tags or {}).items()}

        def record(store: Store, parent: str) -> None:
            track_folder(store, RunPaths(folder), model=self.model, parent=parent, tags=texts)

        if self.kind != "off" and not self._try(record):
            self.unrecorded.append(folder)

    def trial(
        self,
        number: int,
        config: dict[str, Any],
        scores: dict[str, Any],
        rows: list[dict[str, Any]],
        message: str | None = None,
    ) -> None:
        """A tune trial as a child run: its config as params, its epochs, its scores."""
        if self.kind == "off":
            return
        identity = f"{self.identity}/trial_{number:03d}"

        def log(store: Store, parent: str) -> None:
            log_trial(store, parent, identity, number, config, scores, rows, message)

        if not self._try(log):
            self.trials_unrecorded += 1

    def done(
        self,
        *,
        metrics: dict[str, float] | None = None,
        tags: dict[str, Any] | None = None,
        files: list[Path] | None = None,
        note: str | None = None,
        identity: str | None = None,
        status: str = "FINISHED",
    ) -> None:
        """The study's summary into its parent run, then its end."""
        if identity is not None:
            self.identity = identity
        if self.joined:
            return
        summary = {"metrics": metrics, "tags": tags, "files": files, "note": note}
        self._try(lambda store, run: end_parent(store, run, self.identity, status, **summary))

    def end(self, exc: BaseException) -> None:
        if self.joined:
            return
        stopped = isinstance(exc, Interrupted | KeyboardInterrupt)
        self._try(lambda store, run: store.set_status(run, "KILLED" if stopped else "FAILED"))

    def say_unrecorded(self) -> None:
        """Which of the study's runs the store did not record, and how to record them."""
        if self.unrecorded:
            names = ", ".join(f.name for f in self.unrecorded)
            progress.say(
                f"tracking: {len(self.unrecorded)} run(s) not recorded in MLflow ({names}); "
                f"record them when the store answers with: {track_command(self.unrecorded)}"
            )
        if self.trials_unrecorded:
            progress.say(
                f"tracking: {self.trials_unrecorded} trial(s) not recorded in MLflow; "
                "`fmnist track` on the search's folder records them from leaderboard.json"
            )


OFF = StudyTracker("off")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


@contextlib.contextmanager
def study(
    config: Config,
    kind: str,
    name: str,
    *,
    identity: str | None = None,
    params: dict[str, Any] | None = None,
    varying: Iterable[str] = (),
    key: str | None = None,
    join: bool = False,
) -> Iterator[StudyTracker]:
    """The parent run of a study of `kind` (repeat, sweep, tune) named `name`, found again by
    `identity` (its folder's name) or, for a distributed worker (`join`), by `key`. Its params
    are `params` (else the config's) without the keys its runs vary (`varying`): those are
    the children's."""
    if config.output.tracking == "none":
        yield OFF
        return
    tracker = StudyTracker(kind)
    tracker.model = config.output.tracking_model
    shared = {k: v for k, v in flatten(params or config.to_dict()).items() if k not in varying}
    try:
        tracker.store = Store.open(config.output.store(), experiment_of(config.output))
        _parent(tracker, tracker.store, name, identity, shared, key, join)
    except TrackingFailure as exc:
        say_failure(str(exc))
        tracker.store = None
    try:
        yield tracker
    except BaseException as exc:
        tracker.end(exc)
        raise
    finally:
        tracker.say_unrecorded()


def _parent(
    tracker: StudyTracker,
    store: Store,
    name: str,
    identity: str | None,
    raw: dict[str, Any],
    key: str | None,
    join: bool,
) -> None:
    """Find the study's parent run (continue it) or make it; a worker only finds its chief's."""
    if join:
        run = _join(store, tracker.kind, key or "")
        tracker.run_id, tracker.identity = str(run.info.run_id), run.data.tags.get(IDENTITY)
        tracker.joined = True
        return
    run = store.find(identity, tracker.kind) if identity else None
    if run is not None:
        tracker.run_id, tracker.identity = str(run.info.run_id), identity
        store.set_status(tracker.run_id, "RUNNING")
        return
    tags = identity_tags(identity or name, tracker.kind)
    if identity is None:
        del tags[IDENTITY]  # known at the end (a repeat group's folder)
    tags.update(code_tags())
    if key is not None:
        tags[STUDY_KEY] = key
    tracker.run_id, tracker.identity = store.create(name, tags), identity
    store.log(tracker.run_id, params=config_params(raw))


def _join(store: Store, kind: str, key: str) -> Any:
    """The running parent run a distributed study's chief made, waited for a while."""
    deadline = time.monotonic() + JOIN_WAIT_S
    while True:
        run = store.find_tagged({STUDY_KEY: key, KIND: kind}, running=True)
        if run is not None:
            return run
        if time.monotonic() > deadline:
            raise TrackingFailure(
                f"MLflow at {store.uri}: no running {kind} parent run from the chief "
                f"(key {key}); this worker's runs are not recorded"
            )
        time.sleep(1.0)


def log_trial(
    store: Store,
    parent: str,
    identity: str,
    number: int,
    config: dict[str, Any],
    scores: dict[str, Any],
    rows: list[dict[str, Any]],
    message: str | None = None,
) -> str:
    """A tune trial as a child run of `parent`: its config as params, its epochs, its
    scores (numbers as metrics, the best epoch's as best_val_accuracy and best_val_loss,
    status as a tag), its message as the description."""
    tags = identity_tags(identity, "trial")
    tags.update({PARENT: parent, "fmnist.trial": str(number)})
    tags["fmnist.status"] = str(scores.get("status", "ok"))
    if message:
        tags[NOTE] = message
    run = store.create(f"trial_{number:03d}", tags)
    numbers = [(TRIAL_SCORES.get(k, k), float(v), 0) for k, v in scores.items() if _number(v)]
    store.log(run, params=config_params(config), metrics=epoch_metrics(rows) + numbers)
    store.log(run, tags={RECORDED: "complete"})
    store.set_status(run, "FINISHED" if scores.get("status", "ok") == "ok" else "FAILED")
    return run


def end_parent(
    store: Store,
    run: str,
    identity: str | None,
    status: str = "FINISHED",
    *,
    metrics: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    files: list[Path] | None = None,
    note: str | None = None,
) -> None:
    """A study's summary (tracking.summaries) into its parent run, then the run's end."""
    texts = {key: param_text(value) for key, value in (tags or {}).items()}
    if identity is not None:
        texts[IDENTITY] = identity
    if note:
        texts[NOTE] = note[:NOTE_CHARS]
    values = [(k, float(v), 0) for k, v in (metrics or {}).items() if _number(v)]
    store.log(run, metrics=values, tags=texts)
    store.upload(run, [(f, None) for f in files or [] if f.is_file()])
    store.log(run, tags={RECORDED: "complete"})
    store.set_status(run, status)
