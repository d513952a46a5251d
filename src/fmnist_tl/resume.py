"""Stop safely, persist every epoch, carry on later: what makes a run resumable.

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
SHA-256 that state.json names. SIGINT/SIGTERM ask for a stop at the next safe point (the end of
the current batch; the unfinished epoch is dropped), a second signal stops at once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shlex
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import keras

from . import atomic, runtime
from .callbacks import (
    BestModelCheckpoint,
    EpochTensorBoard,
    HistoryWriter,
    ResumableEarlyStopping,
    ResumablePlateau,
    diverged_loss,
)
from .config import Config
from .errors import ConfigError, Interrupted, MissingFileError
from .interrupts import StopSignals

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
    summaries: list[dict[str, Any]] = field(default_factory=list)  # finished stages
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
        atomic.write_json(run_dir / STATE, asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        path = run_dir / STATE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in raw.items() if k in known})
        except (OSError, ValueError, TypeError) as exc:
            raise MissingFileError(f"{path}: unreadable run state: {exc}") from None


def new_run_dir(config: Config) -> Path:
    """A fresh run folder <output.dir>/<name>-<timestamp>; never reuses an existing one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{config.output.name}-{stamp}"
    root = Path(config.output.dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MissingFileError(f"output.dir: cannot create {root}: {exc.strerror}") from None
    for n in range(1, 1000):
        run_id = base if n == 1 else f"{base}-{n}"
        try:
            (root / run_id).mkdir()
            return root / run_id
        except FileExistsError:
            continue
        except OSError as exc:
            raise MissingFileError(
                f"output.dir: cannot write in {root}: {exc.strerror}; choose a writable "
                "folder with --set output.dir=PATH"
            ) from None
    raise MissingFileError(f"output.dir: too many runs named {base} in {root}")


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


def read_history(run_dir: Path, epochs: int) -> list[dict[str, Any]]:
    """The committed rows of history.csv: epochs 1..`epochs`, in the writer's own types."""
    path = run_dir / "history.csv"
    if epochs == 0 or not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    rows = []
    for r in raw:
        row: dict[str, Any] = {
            k: (v if k == "stage" or v == "" else float(v)) for k, v in r.items()
        }
        row["epoch"] = int(float(r["epoch"]))
        if row["epoch"] <= epochs:
            rows.append(row)
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
    return _sha256(path)


def committed_model(run_dir: Path, state: RunState) -> Path | None:
    """The model file state.json names: the current one or, after a kill mid-save, .prev."""
    if state.model_file is None:
        return None
    path = run_dir / state.model_file
    for candidate in (path, _prev(path)):
        if candidate.is_file() and _sha256(candidate) == state.model_sha256:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- callbacks


class EpochCommit(keras.callbacks.Callback):
    """After each finite epoch: save the trained model, then state.json, then the best copy.

    Comes after HistoryWriter, BestModelCheckpoint and EarlyStopping in the callback list,
    so their state for this epoch is final when it is committed.
    """

    def __init__(
        self,
        run_dir: Path,
        state: RunState,
        ckpt: BestModelCheckpoint,
        early_stopping: ResumableEarlyStopping | None,
        plateau: ResumablePlateau | None,
        file_name: str,
        last_epoch: int,
        elapsed: Callable[[], float],
    ) -> None:
        super().__init__()
        self.run_dir, self.state, self.ckpt = run_dir, state, ckpt
        self.early_stopping, self.plateau = early_stopping, plateau
        self.file_name = file_name
        self.last_epoch = last_epoch  # 1-based epoch that ends the stage
        self.elapsed = elapsed  # wall time over every sitting of the run
        self._t0 = time.perf_counter()
        self._seconds0 = state.stage_seconds

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._t0, self._seconds0 = time.perf_counter(), self.state.stage_seconds

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or diverged_loss(loss):
            return  # a diverged epoch is never committed
        s = self.state
        s.model_sha256 = save_model(self.run_dir, self.file_name, self.model)
        s.model_file = self.file_name
        s.epochs_done = epoch + 1
        s.stage_finished = bool(self.model.stop_training) or epoch + 1 >= self.last_epoch
        s.stage_seconds = self._seconds0 + time.perf_counter() - self._t0
        s.elapsed_s = self.elapsed()
        s.checkpoint = self.ckpt.state()
        s.early_stopping = self.early_stopping.state() if self.early_stopping else None
        s.plateau = self.plateau.state() if self.plateau else None
        s.save(self.run_dir)
        drop_previous(self.run_dir)
        if self.ckpt.best_epoch == epoch + 1:
            publish_best(self.run_dir / self.file_name, self.ckpt)


def publish_best(committed: Path, ckpt: BestModelCheckpoint) -> None:
    """Copy the committed model of the best epoch to best.keras (best_head.keras if deferred).

    Also run on resume when the best epoch is the last committed one: a kill may have come
    between state.json and this copy.
    """
    atomic.copy_file(committed, committed.parent / BEST_HEAD if ckpt.defer else ckpt.path)


# ---------------------------------------------------------------- a sitting of a run


@dataclass
class Session:
    """One sitting of a run, fresh or resumed: what its stages share."""

    config: Config
    splits: Any  # trainer.Splits
    strategy: Any
    run_dir: Path
    state: RunState
    history: HistoryWriter
    ckpt: BestModelCheckpoint
    tensorboard: keras.callbacks.Callback
    signals: StopSignals
    started: float  # perf_counter() when this sitting began
    prior_elapsed: float  # wall time of the sittings before this one
    resumed: bool  # the first stage of this sitting continues from saved files

    def elapsed(self) -> float:
        """Wall time over every sitting of this run, up to now."""
        return round(self.prior_elapsed + time.perf_counter() - self.started, 3)


def open_session(
    config: Config,
    splits: Any,
    strategy: Any,
    run_dir: Path,
    state: RunState,
    full_model: keras.Model,
    started: float,
    monitor: str,
) -> Session:
    """Start a sitting: a new run writes its config and first state, a resumed one reads them."""
    resumed = (run_dir / STATE).exists()
    if not resumed:
        atomic.write_text(run_dir / "config.yaml", config.to_yaml())
        state.save(run_dir)
    ckpt = BestModelCheckpoint(full_model, run_dir / "best.keras", monitor)
    ckpt.load_state(state.checkpoint)
    return Session(
        config,
        splits,
        strategy,
        run_dir,
        state,
        HistoryWriter(run_dir / "history.csv", read_history(run_dir, state.epochs_done)),
        ckpt,
        EpochTensorBoard(log_dir=str(Path(config.output.log_dir) / run_dir.name)),
        StopSignals(),
        started,
        state.elapsed_s,
        resumed,
    )


def restore_stage(
    s: Session, model: keras.Model, file_name: str
) -> tuple[dict[str, Any] | None, list[Any] | None]:
    """Put back the model (and, mid-stage, its optimizer) that a resumed run had committed.

    Returns the early-stopping state and the stage's best weights so far, for
    ResumableEarlyStopping to pick up.
    """
    state, ckpt = s.state, s.ckpt
    committed = committed_model(s.run_dir, state)
    if committed is None:  # no epoch finished yet: the model as built
        return None, None
    if state.epochs_done == state.stage_start:  # the model the previous stage ended with
        restore(model, committed, optimizer=False)
        return None, None
    best_weights = None
    best_epoch = state.checkpoint.get("best_epoch") or 0
    if best_epoch > state.stage_start:  # this stage's best is the run's best so far
        if best_epoch == state.epochs_done:  # a kill may have come before the copy
            publish_best(committed, ckpt)
        restore(model, s.run_dir / BEST_HEAD if ckpt.defer else ckpt.path, optimizer=False)
        best_weights = model.get_weights()
    with runtime.scope(s.strategy):
        restore(model, committed, optimizer=True)
    ckpt.load_state(state.checkpoint, pending=best_weights if ckpt.defer else None)
    return state.early_stopping, best_weights


def end_stage(s: Session, summary: dict[str, Any], full_model: keras.Model) -> None:
    """Commit a finished stage; the next one starts from the model this one ended with."""
    state = s.state
    state.summaries.append(summary)
    following = state.stages[state.stages.index(str(state.stage)) + 1 :]
    state.stage = following[0] if following else None
    state.stage_start, state.stage_finished = state.epochs_done, False
    state.stage_seconds, state.early_stopping, state.plateau = 0.0, None, None
    if following:
        state.model_sha256 = save_model(s.run_dir, LAST, full_model)
        state.model_file = LAST
    state.elapsed_s = s.elapsed()
    state.save(s.run_dir)
    drop_previous(s.run_dir)


def complete(s: Session) -> None:
    """Mark the run done (resuming it is then an error) and drop the per-epoch files."""
    s.state.complete = True
    s.state.model_file = s.state.model_sha256 = None
    s.state.elapsed_s = s.elapsed()
    s.state.save(s.run_dir)
    remove_scratch(s.run_dir)


def interrupted(s: Session) -> Interrupted:
    """The one-line message for a stopped run: where, what is kept, how to go on."""
    state = s.state
    where = f"after epoch {state.epochs_done}" if state.epochs_done else "before any epoch"
    where += f" (stage {state.stage})" if state.stage else " (trained, not yet evaluated)"
    best = state.checkpoint.get("best_epoch")
    if s.ckpt.path.is_file():
        kept = f"the best model so far (epoch {best}) is in {s.ckpt.path}"
    else:
        kept = f"epoch {best}, the best so far, is kept" if best else "no model saved yet"
    return Interrupted(
        f"{s.signals.requested or 'interrupted'}: stopped {where}; {kept}; "
        f"resume with: {resume_command(s.run_dir)}"
    )
