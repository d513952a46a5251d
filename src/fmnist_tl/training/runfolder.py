"""One run folder: every file a run writes, where it lies and how it is written and read back.

After every completed epoch a run folder holds, each written atomically, in this order:

    history.csv       one row per epoch (rows past state.json's count are dropped on resume)
    last.keras        the model being trained, with its optimizer state; `last_head.keras`
                      instead while a part of the model trains on cached inputs
    state.json        the commit point: stage, epochs done, checkpoint and early-stopping
                      state, and the SHA-256 of the model file above (training/state.py)
    best.keras        copied from last.keras when the epoch improved (`best_head.keras` on
                      cached inputs; best.keras is then assembled when the stage stops)

So a run killed at any instant (even SIGKILL) resumes from its last committed epoch: the model
file is replaced via `<name>.prev.keras`, and resume takes whichever of the two matches the
SHA-256 that state.json names. session.py decides the order; `RunFolder` is the one place a
file of a run is written. A sitting holds the folder (`claim`): its temporary files (atomic.py's
`.<stem>.<random><suffix>`, Keras's and autograph's under `.tmp`) never outlive it, and a
damaged state.json or history.csv stops a resume with exit 3 instead of losing epochs. The
file names themselves are layout.py's.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic, metrics
from ..config import Config
from ..config.loading import load_saved_config
from ..errors import ConfigError, MissingFileError, first_line, short_path
from ..layout import CONFIG, LAST, SCRATCH, RunPaths
from ..paths import check_run_outputs, fresh_folder, open_regular, read_text
from ..records import RunMetrics
from .state import RunState

if TYPE_CHECKING:  # keras only in annotations: resume checks run before TensorFlow loads
    import keras

# history.csv's columns: the stage, the epoch, every metric Keras logs (metrics.py), the rate.
HISTORY_FIELDS = ("stage", "epoch", *metrics.logged(), "learning_rate", "seconds")


@dataclass(frozen=True)
class RunFolder(RunPaths):
    """A run's folder, and every write and read of its files."""

    @classmethod
    def new(cls, config: Config) -> RunFolder:
        """A fresh folder <output.dir>/<name>-<timestamp>; never an existing one.

        Its output paths are checked first (as the CLI does before TensorFlow loads), so a
        finetune or API run whose log or cache folder is a file leaves no run folder behind.
        """
        check_run_outputs(config.output)
        return cls(fresh_folder(Path(config.output.dir), str(config.output.name)))

    @classmethod
    def find(cls, run: str | Path, root: str | Path) -> RunFolder:
        """A run folder given as a path, or as a run id under `root` (output.dir)."""
        as_path = Path(run)
        for candidate in (as_path, Path(root) / as_path):
            if candidate.is_dir():
                return cls(candidate)
        if as_path.exists():
            raise MissingFileError(
                f"--resume {short_path(run)}: is a file, not a run folder; pass the run folder "
                "(the one holding state.json and config.yaml)"
            )
        raise MissingFileError(
            f"--resume {run}: no run folder {as_path} or {Path(root) / as_path}; pass the run "
            "folder's path, or the run id with the config whose output.dir holds it"
        )

    # ------------------------------------------------------------ config and state

    def write_config(self, config: Config) -> None:
        atomic.write_text(self.config, config.to_yaml())

    def read_config(self) -> Config:
        return load_saved_config(self.config)

    @property
    def restart(self) -> str:
        """What to do when the run cannot go on."""
        return f"start it again with `fmnist train {self.config}`"

    def resume_command(self) -> str:
        return f"fmnist train --resume {shlex.quote(str(self.dir))}"

    def save_state(self, state: RunState) -> None:
        atomic.write_json(self.state, state.to_dict())

    def has_state(self) -> bool:
        return self.state.is_file()

    def load_state(self) -> RunState:
        """state.json, every field checked for its type: a damaged file is exit 3, not a crash."""
        try:
            raw = atomic.loads_json(read_text(self.state))
        except (OSError, ValueError) as exc:
            raise MissingFileError(
                f"{self.state}: unreadable run state ({exc}); this run cannot be resumed: "
                f"{self.restart}"
            ) from None
        try:
            return RunState.from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise MissingFileError(
                f"{self.state}: damaged run state ({exc}); this run cannot be resumed: "
                f"{self.restart}"
            ) from None

    def load_resumable(self) -> RunState:
        """The state of an unfinished run; a finished, diverged or foreign folder is an error."""
        path = self.state
        if path.is_symlink() or (path.exists() and not path.is_file()):
            what = "a folder" if path.is_dir() else "not a readable file"
            raise MissingFileError(
                f"{path}: damaged run state ({path.name} is {what}); this run cannot be "
                f"resumed: {self.restart}"
            )
        if not path.is_file():
            raise ConfigError(
                f"{self.dir}: not a resumable run (no {path.name}); resume a folder that "
                "`fmnist train` or `fmnist finetune` wrote"
            )
        state = self.load_state()
        if state.complete and not self.metrics.is_file():
            raise MissingFileError(  # nothing removed: its last.keras may be all that is left
                f"{path}: damaged run state (it says complete, but {self.metrics.name} is "
                f"missing); this run cannot be resumed: {self.restart}"
            )
        if state.complete:
            self.remove_scratch()  # a kill between the last commit and the cleanup left them
            self.remove_leftovers()
            raise ConfigError(
                f"{self.dir}: this run is complete, there is nothing to resume; its results "
                f"are in {self.metrics.name} (start a new run with `fmnist train CONFIG`)"
            )
        if state.diverged:
            raise ConfigError(
                f"{self.dir}: this run diverged ({state.diverged}); resuming would diverge "
                "again: train again with a lower learning rate"
            )
        if not self.config.is_file():
            raise MissingFileError(
                f"{self.dir}: {self.config.name} is missing, so this run cannot be resumed; put "
                "back the config it was started with as config.yaml, or train again with "
                "`fmnist train CONFIG`"
            )
        check_run_outputs(self.read_config().output)  # before it writes
        return state

    # ------------------------------------------------------------ history and results

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(self.history, buf.getvalue())

    def committed_history(self, epochs: int) -> list[dict[str, Any]]:
        """Epochs 1..`epochs` of history.csv, as state.json counts them (later rows dropped).

        A history that lacks any of them cannot be rebuilt, so the run is not resumed: a
        resumed run would otherwise end with a history missing its first epochs.
        """
        path = self.history
        if epochs == 0:
            return []
        lost = (
            "the run's history cannot be rebuilt, so it cannot be resumed: put back the "
            f"history.csv of this run, or {self.restart}"
        )
        if not path.exists():  # anything else there (a FIFO, a folder): read_history says
            raise MissingFileError(
                f"{path}: missing, but {self.state.name} records {epochs} epochs; {lost}"
            )
        try:
            rows = [r for r in read_history(path) if r["epoch"] <= epochs]
        except MissingFileError as exc:
            raise MissingFileError(f"{exc}; {lost}") from None
        if [r["epoch"] for r in rows] != list(range(1, epochs + 1)):
            raise MissingFileError(
                f"{path}: its {len(rows)} rows are not epochs 1..{epochs} as "
                f"{self.state.name} records; {lost}"
            )
        return rows

    def write_metrics(self, m: RunMetrics) -> None:
        m.write(self.metrics)

    def write_evaluation(self, model: keras.Model, x: Any, y: Any, **kwargs: Any) -> dict[str, Any]:
        """evaluation.json and its pictures (evaluation.report.write_evaluation's arguments)."""
        from ..evaluation.report import write_evaluation

        return write_evaluation(model, x, y, self.evaluation, run_id=self.name, **kwargs)

    def write_history_plot(self, rows: list[dict[str, Any]], title: str) -> None:
        from ..reporting.plots import plot_history

        plot_history(rows, self.history_plot, title=title)

    # ------------------------------------------------------------ model files

    def save_model(self, name: str, model: keras.Model) -> str:
        """Write `model` (with its optimizer) to `name`, keeping the old one as .prev."""
        path = self.model(name)
        if path.exists():
            os.replace(path, _prev(path))
        atomic.write_with(path, lambda tmp: model.save(tmp))
        return atomic.sha256_file(path)

    def committed_model(self, state: RunState) -> Path | None:
        """The model file state.json names: the current one or, after a kill mid-save, .prev."""
        if state.model_file is None:
            return None
        path = self.model(state.model_file)
        for candidate in (path, _prev(path)):
            if candidate.is_file() and atomic.sha256_file(candidate) == state.model_sha256:
                return candidate
        raise MissingFileError(
            f"{path}: missing or not the file {self.state.name} recorded after epoch "
            f"{state.epochs_done}; this run cannot be resumed: {self.restart}"
        )

    def base_model(self, state: RunState) -> Path | None:
        """LAST, the full model a stage on cached inputs started from (checked by hash)."""
        if state.base_sha256 is None:
            return None
        base = RunState(state.command, state.stages, state.stage, epochs_done=state.epochs_done)
        base.model_file, base.model_sha256 = LAST, state.base_sha256
        return self.committed_model(base)

    def copy_best(self, committed: Path, *, part: bool) -> None:
        """The committed model of the best epoch to best.keras (best_head.keras for a part of
        the model trained on cached inputs: best.keras is assembled when its stage ends)."""
        atomic.copy_file(committed, self.best_head if part else self.best)

    def save_best(self, model: keras.Model) -> None:
        atomic.write_with(self.best, lambda tmp: model.save(tmp))

    def drop_previous(self) -> None:
        for name in SCRATCH:
            _prev(self.model(name)).unlink(missing_ok=True)

    def remove_scratch(self) -> None:
        """A complete run keeps its artifacts, not the per-epoch model files."""
        self.drop_previous()
        for name in SCRATCH:
            self.model(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the folder for one sitting: one process at a time, its temporary files inside.

        An exclusive flock on the folder (the kernel drops it even on SIGKILL) keeps a second
        sitting off a run that is training. Meanwhile Python's tempfile, and so Keras's
        `model.save` (a mkdtemp for its assets), writes under .tmp; what a killed or failed
        sitting left there, or as atomic.py temporaries, is removed at both ends.
        """
        try:
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError as exc:
            raise MissingFileError(
                f"{self.dir}: cannot open the run folder: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MissingFileError(
                f"{self.dir}: another fmnist process is training this run; wait for it to end "
                "(or stop it) before resuming"
            ) from None
        previous = tempfile.tempdir
        try:
            self.remove_leftovers()
            self.tmp.mkdir()
            tempfile.tempdir = str(self.tmp)
            yield
        finally:
            tempfile.tempdir = previous
            self.remove_leftovers()
            os.close(fd)

    def remove_leftovers(self) -> None:
        """What a killed or failed save leaves: atomic.py's `.<stem>.<random><suffix>` files
        and the run's .tmp folder (Keras's `tmp*/assets`)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        for path in self.dir.glob(".*"):
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv as typed rows: epoch int, stage str, "" where a value is absent (no
    validation split), every other column float: the types `write_history` writes."""
    try:
        with open_regular(path, "r", newline="", encoding="utf-8") as f:
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


def restore(model: keras.Model, path: Path, *, optimizer: bool) -> None:
    """Load weights (and, with `optimizer`, the optimizer's state) saved by `save_model`.

    `model` is built and compiled the way it was when `path` was saved, so its variables
    match one to one. Without `optimizer`, the (fresh, unbuilt) optimizer stays as it is.
    """
    if optimizer and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(path)
    except ValueError as exc:  # Keras: the layers or shapes differ from the saved ones
        raise MissingFileError(
            f"{short_path(path)}: its weights do not fit the model the run's {CONFIG} describes "
            f"({first_line(exc).rstrip(':')}); was {CONFIG} edited? This run cannot be "
            f"resumed: put {CONFIG} back, or train again"
        ) from None


def _prev(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")
