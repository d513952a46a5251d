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
only knows their format. A sitting holds the folder (`claim`): its temporary files (atomic.py's
`.<stem>.<random><suffix>`, Keras's and autograph's under `.tmp`) never outlive it, and a
damaged state.json or history.csv stops a resume with exit 3 instead of losing epochs.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic
from ..config import Config
from ..config.fields import MAX_EPOCHS
from ..config.loading import load_saved_config
from ..errors import ConfigError, MissingFileError, os_failure, short_path
from ..paths import check_run_outputs
from ..records import STAGES, StageSummary
from .checked import checked

if TYPE_CHECKING:  # keras only in annotations: resume checks run before TensorFlow loads
    import keras

STATE = "state.json"
LAST = "last.keras"  # the full model with its optimizer
LAST_HEAD = "last_head.keras"  # the head with its optimizer (stage 1 on cached features)
BEST_HEAD = "best_head.keras"  # the best head so far (stage 1 on cached features)
SCRATCH = (LAST, LAST_HEAD, BEST_HEAD)  # removed when the run completes
TMP = ".tmp"  # the sitting's temporary folder (Python's tempfile points here), then removed
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
    # Stage 2 on cached activations commits only the top (LAST_HEAD); the full model it started
    # from stays in LAST, and this is LAST's SHA-256, so a resumed run can restore the bottom.
    base_sha256: str | None = None
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
        """state.json, every field checked for its type: a damaged file is exit 3, not a crash."""
        path = run_dir / STATE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MissingFileError(
                f"{path}: unreadable run state ({exc}); this run cannot be resumed: start it "
                f"again with `fmnist train {run_dir / 'config.yaml'}`"
            ) from None
        try:
            state = cls(**checked(cls, raw, STATE, optional=_ADDED_LATER, nested=_NESTED))
            state.summaries = [
                StageSummary(**checked(StageSummary, s, f"{STATE} summaries"))
                for s in state.summaries
            ]
            _check_meaning(state)
        except (TypeError, ValueError) as exc:
            raise MissingFileError(
                f"{path}: damaged run state ({exc}); this run cannot be resumed: start it "
                f"again with `fmnist train {run_dir / 'config.yaml'}`"
            ) from None
        return state


_NESTED = {  # the dicts inside state.json, as the callbacks write them
    "checkpoint": {"best": "float | None", "best_epoch": "int | None"},
    "early_stopping": {"wait": "int", "best": "float | None", "best_epoch": "int"},
    "plateau": {"wait": "int", "cooldown_counter": "int", "best": "float | None"},
}
# Fields added after state.json version 1: a file written before them lacks them. Every other
# field is always written, so a missing one means a damaged file.
_ADDED_LATER = frozenset({"base_sha256"})


def _check_meaning(state: RunState) -> None:
    """Values of the right type that still cannot describe a run."""
    if state.command not in ("train", "finetune"):
        raise ValueError(f"'command' is {state.command!r}, not train or finetune")
    if not state.stages or any(s not in STAGES for s in state.stages):
        raise ValueError(f"'stages' is {state.stages!r}, not a list of {' / '.join(STAGES)}")
    if state.stage is not None and state.stage not in state.stages:
        raise ValueError(f"'stage' is {state.stage!r}, not one of {state.stages}")
    if not 0 <= state.stage_start <= state.epochs_done <= MAX_EPOCHS * len(state.stages):
        raise ValueError(
            f"'stage_start' {state.stage_start} and 'epochs_done' {state.epochs_done} disagree "
            f"(at most {MAX_EPOCHS} epochs a stage)"
        )
    if state.model_file not in (None, LAST, LAST_HEAD):
        raise ValueError(f"'model_file' is {state.model_file!r}, not {LAST} or {LAST_HEAD}")
    if state.version != STATE_VERSION:
        raise ValueError(f"version {state.version}, this fmnist reads version {STATE_VERSION}")


def new_run_dir(config: Config) -> Path:
    """A fresh run folder <output.dir>/<name>-<timestamp>; never reuses an existing one.

    Its output paths are checked first (as the CLI does before TensorFlow loads), so a
    finetune or API run whose log or cache folder is a file leaves no run folder behind.
    """
    check_run_outputs(config.output)
    return new_folder(Path(config.output.dir), str(config.output.name))


def new_folder(root: Path, name: str, what: str = "run") -> Path:
    """A fresh folder <root>/<name>-<timestamp>[-k] for a run, a repeat group or a tune.

    `mkdir` without exist_ok is the claim, so two processes never share a folder.
    """
    base = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_failure(exc, root, key="output.dir") from None
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise os_failure(exc, folder, key="output.dir") from None
    raise MissingFileError(f"output.dir: too many {what}s named {base} in {root}")


def find_run(run: str | Path, root: str | Path) -> Path:
    """A run folder given as a path, or as a run id under `root` (output.dir)."""
    as_path = Path(run)
    for candidate in (as_path, Path(root) / as_path):
        if candidate.is_dir():
            return candidate
    if as_path.exists():
        raise MissingFileError(
            f"--resume {short_path(run)}: is a file, not a run folder; pass the run folder "
            "(the one holding state.json and config.yaml)"
        )
    raise MissingFileError(
        f"--resume {run}: no run folder {as_path} or {Path(root) / as_path}; pass the run "
        "folder's path, or the run id with the config whose output.dir holds it"
    )


def load_resumable(run_dir: Path) -> RunState:
    """The state of an unfinished run; a finished, diverged or foreign folder is an error."""
    state_path = run_dir / STATE
    if state_path.is_symlink() or (state_path.exists() and not state_path.is_file()):
        what = "a folder" if state_path.is_dir() else "not a readable file"
        raise MissingFileError(
            f"{state_path}: damaged run state ({STATE} is {what}); this run cannot be resumed: "
            f"start it again with `fmnist train {run_dir / 'config.yaml'}`"
        )
    if not state_path.is_file():
        raise ConfigError(
            f"{run_dir}: not a resumable run (no {STATE}); resume a folder that "
            "`fmnist train` or `fmnist finetune` wrote"
        )
    state = RunState.load(run_dir)
    if state.complete and not (run_dir / "metrics.json").is_file():
        raise MissingFileError(  # nothing removed: its last.keras may be all that is left
            f"{run_dir / STATE}: damaged run state (it says complete, but metrics.json is "
            f"missing); this run cannot be resumed: start it again with "
            f"`fmnist train {run_dir / 'config.yaml'}`"
        )
    if state.complete:
        remove_scratch(run_dir)  # a kill between the last commit and the cleanup left them
        remove_leftovers(run_dir)
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
        raise MissingFileError(
            f"{run_dir}: config.yaml is missing, so this run cannot be resumed; put back the "
            "config it was started with as config.yaml, or train again with `fmnist train CONFIG`"
        )
    check_run_outputs(load_saved_config(run_dir / "config.yaml").output)  # before it writes
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
            if None in r.values():
                raise ValueError("fewer cells than the header names: cut short")
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
    """Epochs 1..`epochs` of history.csv, as state.json counts them (later rows dropped).

    A history that lacks any of them cannot be rebuilt, so the run is not resumed: a resumed
    run would otherwise end with a history missing its first epochs.
    """
    path = run_dir / "history.csv"
    if epochs == 0:
        return []
    lost = (
        f"the run's history cannot be rebuilt, so it cannot be resumed: put back the "
        f"history.csv of this run, or start it again with `fmnist train {run_dir / 'config.yaml'}`"
    )
    if not path.is_file():
        raise MissingFileError(f"{path}: missing, but {STATE} records {epochs} epochs; {lost}")
    try:
        rows = [r for r in read_history(path) if r["epoch"] <= epochs]
    except MissingFileError as exc:
        raise MissingFileError(f"{exc}; {lost}") from None
    if [r["epoch"] for r in rows] != list(range(1, epochs + 1)):
        raise MissingFileError(
            f"{path}: its {len(rows)} rows are not epochs 1..{epochs} as {STATE} records; {lost}"
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
        "this run cannot be resumed: start it again with "
        f"`fmnist train {run_dir / 'config.yaml'}`"
    )


def base_model(run_dir: Path, state: RunState) -> Path | None:
    """LAST, the full model a stage on cached activations started from (checked by hash)."""
    if state.base_sha256 is None:
        return None
    base = RunState(state.command, state.stages, state.stage, epochs_done=state.epochs_done)
    base.model_file, base.model_sha256 = LAST, state.base_sha256
    return committed_model(run_dir, base)


def drop_previous(run_dir: Path) -> None:
    for name in SCRATCH:
        _prev(run_dir / name).unlink(missing_ok=True)


def remove_scratch(run_dir: Path) -> None:
    """A complete run keeps its artifacts, not the per-epoch model files."""
    drop_previous(run_dir)
    for name in SCRATCH:
        (run_dir / name).unlink(missing_ok=True)


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold a run folder for one sitting: one process at a time, its temporary files inside it.

    An exclusive flock on the folder (the kernel drops it even on SIGKILL) keeps a second
    sitting off a run that is training. Meanwhile Python's tempfile, and so Keras's
    `model.save` (a mkdtemp for its assets), writes under run_dir/.tmp; what a killed or
    failed sitting left there, or as atomic.py temporaries, is removed at both ends.
    """
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError as exc:
        raise MissingFileError(f"{run_dir}: cannot open the run folder: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MissingFileError(
            f"{run_dir}: another fmnist process is training this run; wait for it to end "
            "(or stop it) before resuming"
        ) from None
    previous = tempfile.tempdir
    try:
        remove_leftovers(run_dir)
        (run_dir / TMP).mkdir()
        tempfile.tempdir = str(run_dir / TMP)
        yield
    finally:
        tempfile.tempdir = previous
        remove_leftovers(run_dir)
        os.close(fd)


def remove_leftovers(run_dir: Path) -> None:
    """What a killed or failed save leaves: atomic.py's `.<stem>.<random><suffix>` files and
    the run's .tmp folder (Keras's `tmp*/assets`)."""
    shutil.rmtree(run_dir / TMP, ignore_errors=True)
    for path in run_dir.glob(".*"):
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)


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
