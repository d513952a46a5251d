"""One sitting of a run, fresh or resumed: what the trainer's stages share, and its bookkeeping.

A `Session` holds the run folder of one sitting (runfolder.RunFolder: every file it writes),
its state, history writer, best-model checkpoint, TensorBoard writer, MLflow run (tracking)
and stop signals. The
trainer asks it to run a stage (stage.run_stage with the run's fit: the one `fit_stage`, plus
the checkpoint, TensorBoard and per-epoch commit), to complete the run, and to word an
interruption. Every epoch is committed in the order that runfolder.py describes, so a run
killed at any instant resumes from its last committed epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from .. import tracking
from ..config import Config
from ..errors import Interrupted, TrainingDiverged
from ..layout import LAST, LAST_HEAD
from ..machine import Clock, cpu_seconds
from ..records import StageSummary
from . import runtime
from .callbacks import (
    BestModelCheckpoint,
    EpochTensorBoard,
    HistoryWriter,
    ResumableEarlyStopping,
    ResumablePlateau,
    diverged_loss,
)
from .fit import Divergence, FitOutcome, Resume, fit_stage, monitor_for
from .interrupts import StopSignals
from .runfolder import RunFolder, restore
from .splits import Splits, StageData
from .stage import StageInputs, run_stage, stage_header
from .state import RunState


@dataclass
class Session:
    """One sitting of a run: what its stages share."""

    config: Config
    splits: Splits
    strategy: Any  # a tf.distribute strategy, or None for the default device
    folder: RunFolder
    state: RunState
    history: HistoryWriter
    ckpt: BestModelCheckpoint
    tensorboard: EpochTensorBoard
    signals: StopSignals
    started: Clock  # when this sitting began
    prior_elapsed: float  # wall time of the sittings before this one
    prior_cpu: float  # CPU seconds of the sittings before this one, up to their last commit
    resumed: bool  # the first stage of this sitting continues from saved files
    # Features of the test images (and mirror images) when the head alone was trained on
    # features: the test then runs the head on them (trainer._finish).
    test_features: list[Any] | None = None
    test_features_s: float = 0.0
    tracker: tracking.RunTracker = tracking.NO_RUN  # its MLflow run (output.tracking)
    test_pass: str | None = None  # the frozen pass that made them

    @classmethod
    def open(
        cls,
        config: Config,
        splits: Splits,
        strategy: Any,
        folder: RunFolder,
        state: RunState,
        full_model: keras.Model,
        started: Clock,
    ) -> Session:
        """Start a sitting: a new run writes its config and first state; a resumed run reads
        them."""
        resumed = folder.state.exists()
        if not resumed:
            folder.write_config(config)
            folder.save_state(state)
        monitor = monitor_for(config, len(splits.x_val) > 0)
        ckpt = BestModelCheckpoint(full_model, folder, monitor)
        ckpt.load_state(state.checkpoint)
        history = HistoryWriter(folder, folder.committed_history(state.epochs_done))
        tensorboard = EpochTensorBoard(
            str(Path(config.output.log_dir) / folder.name), full_model=full_model
        )
        tracker = tracking.open_run(config, folder.dir, state.mlflow_run_id)
        if tracker.run_id is not None and tracker.run_id != state.mlflow_run_id:
            state.mlflow_run_id = tracker.run_id  # a resumed sitting continues this MLflow run
            folder.save_state(state)
        return cls(
            config,
            splits,
            strategy,
            folder,
            state,
            history,
            ckpt,
            tensorboard,
            StopSignals(),
            started,
            state.elapsed_s,
            state.cpu_s,
            resumed,
            tracker=tracker,
        )

    def elapsed(self) -> float:
        """Wall time over every sitting of this run, up to now."""
        return round(self.prior_elapsed + time.perf_counter() - self.started.wall, 3)

    def cpu_used(self) -> float:
        """CPU seconds over every sitting of this run, up to now: a resumed run's cost is
        both sittings', as its wall time is."""
        return round(self.prior_cpu + cpu_seconds() - self.started.cpu, 3)

    def stamp(self) -> None:
        """Bring the state's wall and CPU totals up to now, before it is committed."""
        self.state.elapsed_s = self.elapsed()
        self.state.cpu_s = self.cpu_used()

    def run_stage(self, stage: str, inputs: StageInputs, full_model: keras.Model) -> None:
        """Run the current stage on `inputs` (stage.run_stage with this run's fit), then
        commit it: the next stage starts from the model this one ended with."""

        def fit(model: keras.Model, stage: str, data: StageData, *, on_features: bool) -> Any:
            return self.fit(model, stage, data, on_features=on_features, full_model=full_model)

        outcome = run_stage(self.config, stage, inputs, fit, self.strategy)
        self.end_stage(outcome.summary, full_model)

    def fit(
        self,
        model: keras.Model,
        stage: str,
        data: StageData,
        *,
        on_features: bool = False,
        full_model: keras.Model | None = None,
    ) -> FitOutcome:
        """Fit the current stage from where this run left it, committing every epoch; a
        diverged or interrupted fit raises (TrainingDiverged, Interrupted).

        `on_features`: `model` is a part of `full_model` (the head on cached features, or the
        top on cached activations); the checkpoint then keeps the best part in memory and
        saves the full model once the fit ends.
        """
        state = self.state
        file_name = LAST_HEAD if on_features else LAST
        stage_header(self.config, state.stages, stage, on_features=on_features)
        self.ckpt.defer = on_features
        try:
            resume = Resume()
            if self.resumed:
                resume = self.restore_stage(model, file_name, full_model)
            self.resumed = False
            end = state.stage_start + self.config.schedule(stage).epochs
            outcome = fit_stage(
                model,
                self.config,
                stage,
                data,
                signals=self.signals,
                initial_epoch=state.epochs_done,
                # A stage that early stopping had ended runs no more epochs, only its end.
                end_epoch=state.epochs_done if state.stage_finished else end,
                strategy=self.strategy,
                hooks=_RunHooks(self, file_name, end),
                resume=resume,
                prior_seconds=state.stage_seconds,
            )
        finally:
            self.ckpt.defer = False
        if outcome.diverged is not None:
            self._diverged(stage, outcome.diverged)
        if outcome.stopped:
            raise self.interrupted()
        return outcome

    def restore_stage(
        self, model: keras.Model, file_name: str, full_model: keras.Model | None = None
    ) -> Resume:
        """Put back the model (and, mid-stage, its optimizer) that a resumed run had committed,
        and the stage's early-stopping and plateau state."""
        state, ckpt = self.state, self.ckpt
        committed = self.folder.committed_model(state)
        if committed is None:  # no epoch finished yet: the model as built
            return Resume()
        if state.epochs_done == state.stage_start:  # the model the previous stage ended with
            restore(full_model or model, committed, optimizer=False)
            return Resume()
        best_weights = None
        best_epoch = state.checkpoint.get("best_epoch") or 0
        if best_epoch > state.stage_start:  # this stage's best is the run's best so far
            if best_epoch == state.epochs_done:  # a kill may have come before the copy
                self.folder.copy_best(committed, part=ckpt.defer)
            best = self.folder.best_head if ckpt.defer else self.folder.best
            restore(model, best, optimizer=False)
            best_weights = model.get_weights()
        with runtime.scope(self.strategy):
            restore(model, committed, optimizer=True)
        ckpt.load_state(state.checkpoint, pending=best_weights if ckpt.defer else None)
        return Resume(state.early_stopping, best_weights, state.plateau)

    def start_cached_stage(self, full_model: keras.Model) -> None:
        """Before a stage trains a part of the model on cached activations: keep the full model
        it starts from in LAST (its hash in state.json), or, resumed, put that model back, so
        the frozen bottom that makes the activations is the one the stage began with."""
        state = self.state
        if state.base_sha256 is None:
            if state.model_file != LAST or state.epochs_done != state.stage_start:
                # A `finetune` run has committed nothing yet: its source model is the base.
                state.model_sha256 = self.folder.save_model(LAST, full_model)
                state.model_file = LAST
            state.base_sha256 = state.model_sha256
            self.folder.save_state(state)
        if self.resumed:
            base = self.folder.base_model(state)
            assert base is not None
            restore(full_model, base, optimizer=False)

    def end_stage(self, summary: StageSummary, full_model: keras.Model) -> None:
        """Commit a finished stage; the next one starts from the model this one ended with."""
        state = self.state
        state.summaries.append(summary)
        following = state.stages[state.stages.index(str(state.stage)) + 1 :]
        state.stage = following[0] if following else None
        state.stage_start, state.stage_finished = state.epochs_done, False
        state.stage_seconds, state.early_stopping, state.plateau = 0.0, None, None
        state.base_sha256 = None
        if following:
            state.model_sha256 = self.folder.save_model(LAST, full_model)
            state.model_file = LAST
        self.stamp()
        self.folder.save_state(state)
        self.folder.drop_previous()

    def complete(self) -> None:
        """Mark the run done (resuming it is then an error) and drop the per-epoch files."""
        self.state.complete = True
        self.state.model_file = self.state.model_sha256 = None
        self.stamp()
        self.folder.save_state(self.state)
        self.folder.remove_scratch()

    def interrupted(self) -> Interrupted:
        """The one-line message for a stopped run: where, what is kept, how to go on."""
        state = self.state
        where = f"after epoch {state.epochs_done}" if state.epochs_done else "before any epoch"
        where += f" (stage {state.stage})" if state.stage else " (trained, not yet evaluated)"
        best = state.checkpoint.get("best_epoch")
        if self.ckpt.path.is_file():
            kept = f"the best model so far (epoch {best}) is in {self.ckpt.path}"
        else:
            kept = f"epoch {best}, the best so far, is kept" if best else "no model saved yet"
        return Interrupted(
            f"{self.signals.requested or 'interrupted'}: stopped {where}; {kept}; "
            f"resume with: {self.folder.resume_command()}"
        )

    def _diverged(self, stage: str, d: Divergence) -> None:
        self.state.diverged = f"stage {stage}, epoch {d.epoch}, learning rate {d.learning_rate:g}"
        self.folder.save_state(self.state)
        kept = (
            f"the best model so far (epoch {self.ckpt.best_epoch}) is kept in {self.ckpt.path}"
            if self.ckpt.path.is_file()
            else "no epoch finished with a finite loss, so no model was saved"
        )
        raise TrainingDiverged(
            f"stage {stage}: the training loss became {d.loss} at epoch {d.epoch} with learning "
            f"rate {d.learning_rate:g}; {kept}; lower the learning rate and train again"
        )


class _RunHooks:
    """What a run adds to `fit_stage`: history file, checkpoint, TensorBoard, epoch commit."""

    def __init__(self, session: Session, file_name: str, last_epoch: int) -> None:
        self.s, self.file_name, self.last_epoch = session, file_name, last_epoch
        self.history = session.history

    def before(self) -> list[keras.callbacks.Callback]:
        return [self.s.history, self.s.ckpt, self.s.tensorboard]

    def after(
        self, early: ResumableEarlyStopping | None, plateau: ResumablePlateau | None
    ) -> list[keras.callbacks.Callback]:
        return [EpochCommit(self.s, early, plateau, self.file_name, self.last_epoch)]

    def on_stopped(self) -> None:
        self.s.ckpt.on_train_end()
        self.s.tensorboard.on_train_end()


class EpochCommit(keras.callbacks.Callback):
    """After each finite epoch: save the trained model, then state.json, then the best copy.

    Comes after HistoryWriter, BestModelCheckpoint and EarlyStopping in the callback list,
    so their state for this epoch is final when it is committed.
    """

    def __init__(
        self,
        session: Session,
        early_stopping: ResumableEarlyStopping | None,
        plateau: ResumablePlateau | None,
        file_name: str,
        last_epoch: int,
    ) -> None:
        super().__init__()
        self.s, self.early_stopping, self.plateau = session, early_stopping, plateau
        self.file_name = file_name
        self.last_epoch = last_epoch  # 1-based epoch that ends the stage
        self._t0, self._seconds0 = time.perf_counter(), session.state.stage_seconds

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._t0, self._seconds0 = time.perf_counter(), self.s.state.stage_seconds

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or diverged_loss(loss):
            return  # a diverged epoch is never committed
        s, folder, ckpt = self.s.state, self.s.folder, self.s.ckpt
        s.model_sha256 = folder.save_model(self.file_name, self.model)
        s.model_file = self.file_name
        s.epochs_done = epoch + 1
        s.stage_finished = bool(self.model.stop_training) or epoch + 1 >= self.last_epoch
        s.stage_seconds = self._seconds0 + time.perf_counter() - self._t0
        self.s.stamp()
        s.checkpoint = ckpt.state()
        s.early_stopping = self.early_stopping.state() if self.early_stopping else None
        s.plateau = self.plateau.state() if self.plateau else None
        folder.save_state(s)
        folder.drop_previous()
        if ckpt.best_epoch == epoch + 1:
            folder.copy_best(folder.model(self.file_name), part=ckpt.defer)
        self.s.tracker.log_epoch(self.s.history.rows[-1])  # committed: its point in MLflow
