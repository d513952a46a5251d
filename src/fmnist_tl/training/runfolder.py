"""A run folder's on-disk format: what makes a run resumable, and where it lives.

After every completed epoch a run folder holds, each written atomically, in this order:

    history.csv       one row per epoch (rows past state.json's count are dropped on resume)
    last.keras        the model being trained, with its optimizer state; `last_head.keras`
                      instead while stage 1 trains the head on cached features
    state.json        the commit point: stage, epochs done, checkpoint and early-stopping
                      state, and the SHA-256 of the model file above
    best.keras        copied from last.keras when the epoch improved (`best_head.keras` on
                      cached features; best.keras is then assembled when the stage stops)

So a run killed at any instant (even SIGKILL) resumes from its last committed epoch: the model
file is replaced via `<name>.prev.keras`, and resume takes whichever of the two matches the
SHA-256 that state.json names. session.py writes these files in this order; this module
only knows their format.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import keras

from .. import atomic
from ..config import Config
from ..errors import ConfigError, MissingFileError
from ..records import StageSummary

STATE = "state.json"
LAST = "last.keras"  # the full model with its optimizer
LAST_HEAD = "last_head.keras"  # the head with its optimizer (stage 1 on cached features)
BEST_HEAD = "best_head.keras"  # the best head so far (stage 1 on cached features)
SCRATCH = (LAST, LAST_HEAD, BEST_HEAD)  # removed when the run completes
STATE_VERSION = 1


@dataclass
class RunState:
    """Everything besides history.csv and the model files that a resumed run needs."""

    command: str  # "train" or "finetune"
    stages: list[str]  # the stages this run trains, in order
    stage: str | None  # the stage running now; None once every stage is done
    stage_start: int = 0  # epochs completed before this stage (its initial_epoch)
    epochs_done: int = 0  # epochs completed and committed, all stages together
    stage_finished: bool = False  # early stopping (or the last epoch) ended this stage
    stage_seconds: float = 0.0  # fit time spent in this stage so far
    elapsed_s: float = 0.0  # wall time over every sitting, up to the last commit
    summaries: list[StageSummary] = field(default_factory=list)  # the finished stages
    checkpoint: dict[str, Any] = field(default_factory=dict)  # BestModelCheckpoint best
    early_stopping: dict[str, Any] | None = None  # this stage's EarlyStopping state
    plateau: dict[str, Any] | None = None  # this stage's ReduceLROnPlateau state
    model_file: str | None = None  # LAST or LAST_HEAD: the model after epochs_done
    model_sha256: str | None = None
    weights_used: str = ""  # recorded in metrics.json
    source_model: str | None = None  # `finetune` runs: the model they started from
    diverged: str | None = None
    complete: bool = False
    version: int = STATE_VERSION

    def save(self, run_dir: Path) -> None:
        raw = asdict(self)
        raw["summaries"] = [s.to_dict() for s in self.summaries]
        atomic.write_json(run_dir / STATE, raw)

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        path = run_dir / STATE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            state = cls(**{k: v for k, v in raw.items() if k in known})
            state.summaries = [StageSummary.from_dict(s) for s in state.summaries]
            return state
        except (OSError, ValueError, TypeError) as exc:
            raise MissingFileError(f"{path}: unreadable run state: {exc}") from None


def new_run_dir(config: Config) -> Path:
    """A fresh run folder <output.dir>/<name>-<timestamp>; never reuses an existing one."""
    return new_folder(Path(config.output.dir), str(config.output.name))


def new_folder(root: Path, name: str, what: str = "run") -> Path:
    """A fresh folder <root>/<name>-<timestamp>[-k] for a run, a repeat group or a tune.

    `mkdir` without exist_ok is the claim, so two processes never share a folder.
    """
    base = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MissingFileError(f"output.dir: cannot create {root}: {exc.strerror}") from None
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise MissingFileError(
                f"output.dir: cannot write the {what} folder in {root}: {exc.strerror}; choose "
                "a writable folder with --set output.dir=PATH"
            ) from None
    raise MissingFileError(f"output.dir: too many {what}s named {base} in {root}")


def find_run(run: str | Path, root: str | Path) -> Path:
    """A run folder given as a path, or as a run id under `root` (output.dir)."""
    as_path = Path(run)
    for candidate in (as_path, Path(root) / as_path):
        if candidate.is_dir():
            return candidate
    raise MissingFileError(
        f"--resume {run}: no run folder {as_path} or {Path(root) / as_path}; pass the run "
        "folder's path, or the run id with the config whose output.dir holds it"
    )


def load_resumable(run_dir: Path) -> RunState:
    """The state of an unfinished run; a finished, diverged or foreign folder is an error."""
    if not (run_dir / STATE).is_file():
        raise ConfigError(
            f"{run_dir}: not a resumable run (no {STATE}); resume a folder that "
            "`fmnist train` or `fmnist finetune` wrote"
        )
    state = RunState.load(run_dir)
    if state.complete:
        raise ConfigError(
            f"{run_dir}: this run is complete, there is nothing to resume; its results are "
            "in metrics.json (start a new run with `fmnist train CONFIG`)"
        )
    if state.diverged:
        raise ConfigError(
            f"{run_dir}: this run diverged ({state.diverged}); resuming would diverge again: "
            "train again with a lower learning rate"
        )
    if not (run_dir / "config.yaml").is_file():
        raise MissingFileError(f"{run_dir}: config.yaml is missing; cannot resume this run")
    return state


def resume_command(run_dir: Path) -> str:
    return f"fmnist train --resume {shlex.quote(str(run_dir))}"


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv as typed rows: epoch int, stage str, "" where a value is absent (no
    validation split), every other column float: the types HistoryWriter writes."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f))
    except OSError as exc:
        raise MissingFileError(f"{path}: cannot read history ({exc.strerror or exc})") from None
    rows = []
    for line, r in enumerate(raw, 2):
        try:
            row: dict[str, Any] = {
                k: (v if k == "stage" or v in ("", None) else float(v))
                for k, v in r.items()
                if k is not None  # surplus cells beyond the header: nothing to name them by
            }
            row["epoch"] = int(float(r["epoch"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MissingFileError(f"{path}: line {line}: bad history row ({exc})") from None
        rows.append(row)
    return rows


def committed_history(run_dir: Path, epochs: int) -> list[dict[str, Any]]:
    """Epochs 1..`epochs` of history.csv, as state.json counts them (later rows dropped)."""
    path = run_dir / "history.csv"
    if epochs == 0 or not path.is_file():
        return []
    rows = [r for r in read_history(path) if r["epoch"] <= epochs]
    if [r["epoch"] for r in rows] != list(range(1, epochs + 1)):
        raise MissingFileError(
            f"{path}: does not hold epochs 1..{epochs} that {STATE} records; cannot resume"
        )
    return rows


# ---------------------------------------------------------------- model files


def save_model(run_dir: Path, name: str, model: keras.Model) -> str:
    """Write `model` (with its optimizer) to run_dir/name, keeping the old one as .prev."""
    path = run_dir / name
    if path.exists():
        os.replace(path, _prev(path))
    atomic.write_with(path, lambda tmp: model.save(tmp))
    return atomic.sha256_file(path)


def committed_model(run_dir: Path, state: RunState) -> Path | None:
    """The model file state.json names: the current one or, after a kill mid-save, .prev."""
    if state.model_file is None:
        return None
    path = run_dir / state.model_file
    for candidate in (path, _prev(path)):
        if candidate.is_file() and atomic.sha256_file(candidate) == state.model_sha256:
            return candidate
    raise MissingFileError(
        f"{path}: missing or not the file {STATE} recorded after epoch {state.epochs_done}; "
        "this run cannot be resumed"
    )


def drop_previous(run_dir: Path) -> None:
    for name in SCRATCH:
        _prev(run_dir / name).unlink(missing_ok=True)


def remove_scratch(run_dir: Path) -> None:
    """A complete run keeps its artifacts, not the per-epoch model files."""
    drop_previous(run_dir)
    for name in SCRATCH:
        (run_dir / name).unlink(missing_ok=True)


def restore(model: keras.Model, path: Path, *, optimizer: bool) -> None:
    """Load weights (and, with `optimizer`, the optimizer's state) saved by `save_model`.

    `model` is built and compiled the way it was when `path` was saved, so its variables
    match one to one. Without `optimizer`, the (fresh, unbuilt) optimizer stays as it is.
    """
    if optimizer and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def _prev(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")
