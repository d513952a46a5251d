"""`fmnist track PATH...`: finished runs, repeat groups, sweeps and searches recorded in MLflow
afterwards, from their own files (record.py, summaries.py: what a tracked run records too).

For runs trained with tracking off, runs whose store was away (their end said so), and
records kept elsewhere (a results/ tree). A PATH is a run folder, a repeat group (repeat.json),
a sweep's study folder (study.json), a search's folder (leaderboard.json), or a folder holding
any of them at any depth. A group, sweep or search becomes a parent run with its runs (or
trials) as children, as a tracked study would have made it.

Where each goes: `uri`, else the store its saved config names (output.tracking_uri, written
there when it was tracked; a SQLite file whose folder is not on this machine is skipped: the
run came from elsewhere), else a SQLite file in the folder that holds what was named:
`<output.dir>/mlflow.db` for runs in output.dir, the file a tracked run there uses. The
experiment: `experiment`, else the saved output.experiment, else the config's name.

Running it twice records nothing twice: a run is found again by the MLflow run id its files
name, or by its folder's name, and one already complete is left as it is ("already
recorded"); one a failed store left half-done is completed. Unfinished runs (resume them
first) are listed, not recorded. A store that cannot be reached is one line, exit 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import OutputConfig
from ..config.fields import Uri
from ..config.run_sections import TRACKING_DB
from ..errors import ConfigError, MissingFileError, short_path
from ..layout import (
    BEST_CONFIG,
    LEADERBOARD,
    METRICS,
    REPEAT_JSON,
    STATE,
    STUDY_JSON,
    TRACKING_SKIP,
    RunPaths,
)
from ..paths import read_text
from .record import finished, saved_config, track_folder
from .store import RECORDED, Store, TrackingFailure, require
from .study import end_parent, log_trial
from .summaries import read_json, repeat_summary, sweep_summary, tune_summary
from .values import config_params, flatten, identity_tags

RUN_FILES = {STUDY_JSON: "sweep", LEADERBOARD: "tune", REPEAT_JSON: "repeat"}


@dataclass
class Tracked:
    """One run, study or trial that `track_runs` met, and what became of it."""

    name: str
    kind: str  # run, repeat, sweep, tune, trial
    what: str  # recorded, completed, already recorded, unfinished
    path: Path
    run_id: str | None = None
    store: str = ""


@dataclass
class TrackReport:
    items: list[Tracked] = field(default_factory=list)

    @property
    def stores(self) -> list[str]:
        return sorted({i.store for i in self.items if i.store})

    def count(self, what: str) -> int:
        return sum(i.what == what for i in self.items)


def check_uri(uri: str | None) -> None:
    """`--uri` as output.tracking_uri takes it (ConfigError, exit 2)."""
    from pydantic import TypeAdapter, ValidationError

    if uri is None:
        return
    try:
        TypeAdapter(Uri).validate_python(uri)
    except ValidationError as exc:
        raise ConfigError(f"--uri {uri!r}: {exc.errors()[0]['msg']}") from None


def kind_of(folder: Path) -> str | None:
    """What `folder` is to fmnist: sweep, tune, repeat, run, or None."""
    for name, kind in RUN_FILES.items():
        if (folder / name).is_file():
            return kind
    return "run" if (folder / METRICS).is_file() or (folder / STATE).is_file() else None


def discover(folder: Path) -> list[tuple[str, Path]]:
    """(kind, folder) of everything under `folder`, not looking inside what it finds."""
    kind = kind_of(folder)
    if kind is not None:
        return [(kind, folder)]
    found: list[tuple[str, Path]] = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and child.name not in TRACKING_SKIP:
            found += discover(child)
    return found


def track_runs(
    paths: Sequence[str | Path], *, uri: str | None = None, experiment: str | None = None
) -> TrackReport:
    """Record what `paths` hold in MLflow (see the module's text); a TrackReport of each."""
    require(OutputConfig(tracking="mlflow"), "fmnist track")
    work = []
    for path in paths:
        anchor = Path(path)
        if not anchor.is_dir():
            raise MissingFileError(
                f"{short_path(anchor)}: no such folder; pass run folders, or a folder holding them"
            )
        found = discover(anchor)
        if not found:
            raise MissingFileError(
                f"{short_path(anchor)}: no run, repeat group, sweep or search in it (no "
                f"{METRICS}, {STATE}, {REPEAT_JSON}, {STUDY_JSON} or {LEADERBOARD}); pass the "
                "folder that holds your runs"
            )
        holder = anchor.parent if kind_of(anchor) else anchor
        work += [(kind, folder, holder) for kind, folder in found]
    return _Backfill(uri, experiment).run(work)


class _Backfill:
    def __init__(self, uri: str | None, experiment: str | None) -> None:
        self.uri, self.experiment = uri, experiment
        self.report = TrackReport()
        self.done: set[Path] = set()  # run folders recorded (a group's members, once)

    def run(self, work: list[tuple[str, Path, Path]]) -> TrackReport:
        order = {"sweep": 0, "tune": 1, "repeat": 2, "run": 3}  # members before lone runs
        for kind, folder, holder in sorted(work, key=lambda w: order[w[0]]):
            if folder.resolve() in self.done:
                continue
            try:
                getattr(self, f"_{kind}")(folder, holder)
            except TrackingFailure as exc:
                recorded = self.report.count("recorded") + self.report.count("completed")
                raise MissingFileError(
                    f"{exc}; {recorded} recorded before it; check the store (--uri) and run "
                    "the same command again: what is recorded is not recorded twice"
                ) from None
        return self.report

    def _store(self, raw: dict[str, Any], holder: Path, name: Any) -> Store:
        out = raw.get("output") if isinstance(raw.get("output"), dict) else {}
        saved = str(out.get("tracking_uri") or "")
        if saved.startswith("sqlite:///") and not Path(saved[10:]).parent.is_dir():
            saved = ""  # a SQLite file of the machine the run came from: not here
        uri = self.uri or saved or f"sqlite:///{holder.resolve() / TRACKING_DB}"
        experiment = self.experiment or out.get("experiment") or out.get("name") or name
        return Store.open(str(uri), str(experiment or "default"))

    def _add(self, item: Tracked) -> None:
        self.report.items.append(item)

    def _run(
        self,
        folder: Path,
        holder: Path,
        store: Store | None = None,
        parent: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        paths, raw = RunPaths(folder), saved_config(RunPaths(folder))
        self.done.add(folder.resolve())
        store = store or self._store(raw, holder, folder.name)
        if finished(paths) is None:
            self._add(Tracked(folder.name, "run", "unfinished", folder, None, store.uri))
            return
        model = bool((raw.get("output") or {}).get("tracking_model"))
        what, run_id = track_folder(store, paths, model=model, parent=parent, tags=tags)
        self._add(Tracked(folder.name, "run", what, folder, run_id, store.uri))

    def _parent(
        self, store: Store, kind: str, folder: Path, params: dict[str, Any]
    ) -> tuple[str, bool]:
        """The study's parent run (found again, or made): its id, and whether complete."""
        run = store.find(folder.name, kind)
        if run is not None:
            complete = run.data.tags.get(RECORDED) == "complete"
            what = "already recorded" if complete else "completed"
            self._add(Tracked(folder.name, kind, what, folder, str(run.info.run_id), store.uri))
            return str(run.info.run_id), complete
        tags = {**identity_tags(folder.name, kind, folder), "fmnist.backfilled": "true"}
        run_id = store.create(folder.name, tags)
        store.log(run_id, params=config_params(params))
        self._add(Tracked(folder.name, kind, "recorded", folder, run_id, store.uri))
        return run_id, False

    def _repeat(self, folder: Path, holder: Path) -> None:
        spec = read_json(folder / REPEAT_JSON)
        members = [_member(folder, str(r)) for r in spec.get("runs") or []]
        first = saved_config(RunPaths(members[0])) if members else {}
        store = self._store(first, holder, spec.get("config_name"))
        parent, complete = self._parent(store, "repeat", folder, _shared(first, {"seed"}))
        for member in members:
            seed = str(saved_config(RunPaths(member)).get("seed", ""))
            self._run(member, holder, store, parent, {"fmnist.seed": seed})
        if not complete:
            end_parent(store, parent, **repeat_summary(folder))

    def _sweep(self, folder: Path, holder: Path) -> None:
        study = read_json(folder / STUDY_JSON)
        runs = [d for d in sorted(folder.iterdir()) if d.is_dir() and kind_of(d) == "run"]
        first = saved_config(RunPaths(runs[0])) if runs else {}
        store = self._store(first, holder, study.get("config_name"))
        drop = {"seed", "output.dir", "output.name", "output.log_dir", *(study.get("grid") or {})}
        parent, complete = self._parent(store, "sweep", folder, _shared(first, drop))
        cells = {r.get("run_id"): r for r in study.get("runs") or [] if isinstance(r, dict)}
        for run in runs:
            cell = cells.get(run.name) or {}
            tags = {"fmnist.cell": str(cell.get("cell", "")), "fmnist.seed": str(cell.get("seed"))}
            self._run(run, holder, store, parent, tags if cell else None)
        if not complete:
            end_parent(store, parent, folder.name, **sweep_summary(folder))

    def _tune(self, folder: Path, holder: Path) -> None:
        board = read_json(folder / LEADERBOARD)
        base = _yaml(folder / BEST_CONFIG)
        store = self._store(base, holder, board.get("config_name"))
        drop = set(board.get("space") or {})
        parent, complete = self._parent(store, "tune", folder, _shared(base, drop))
        for trial in board.get("trials") or []:
            self._trial(store, parent, folder, flatten(base), trial)
        if not complete:
            end_parent(store, parent, folder.name, **tune_summary(folder))

    def _trial(
        self, store: Store, parent: str, folder: Path, base: dict[str, Any], trial: dict[str, Any]
    ) -> None:
        number = int(trial.get("trial", 0))
        identity, name = f"{folder.name}/trial_{number:03d}", f"trial_{number:03d}"
        found = store.find(identity, "trial")
        if found is not None:
            item = Tracked(name, "trial", "already recorded", folder, str(found.info.run_id))
        else:
            keys = ("status", "objective", "val_accuracy", "val_loss", "epochs_run", "best_epoch")
            scores = {k: trial.get(k) for k in (*keys, "seconds")}
            config = {**base, **(trial.get("values") or {})}
            run_id = log_trial(
                store, parent, identity, number, config, scores, [], trial.get("message")
            )
            item = Tracked(name, "trial", "recorded", folder, run_id)
        item.store = store.uri
        self._add(item)


def _member(group: Path, run_id: str) -> Path:
    """A repeat group's member run: inside the group folder or beside it."""
    for where in (group / run_id, group.parent / run_id):
        if where.is_dir():
            return where
    raise MissingFileError(
        f"{group / REPEAT_JSON}: member run {run_id!r} is not in {group} nor beside it; put "
        "the run folder back, or track the runs one by one"
    )


def _shared(raw: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """A study's params from one of its runs' config: without what varies between its runs."""
    return {k: v for k, v in flatten(raw).items() if k not in drop}


def _yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(read_text(path))
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}
