"""Callbacks that outlive one `fit`: best-model checkpoint, history, resumable early stopping
and plateau, the divergence guard, TensorBoard. `fit.fit_stage` stacks them."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from .. import metrics
from ..config import Config
from ..records import HEAD

if TYPE_CHECKING:
    from .runfolder import RunFolder

# Cross-entropy over 10 classes stays under ~16 (probabilities are clipped at 1e-7); a loss
# above this has blown up even when it is still finite (seen with oneDNN at learning rate 1e30).
EXPLODED_LOSS = 1e6


def diverged_loss(loss: Any) -> bool:
    """A training loss that is NaN, infinite or exploded: the epoch is neither kept nor saved."""
    return not float(loss) <= EXPLODED_LOSS  # NaN fails every comparison


class BestModelCheckpoint(keras.callbacks.Callback):
    """Track the best monitored value across stages; the best model lives in `path`.

    One instance serves both stages, so a worse stage-2 epoch can never overwrite a better
    stage-1 model (a fresh ModelCheckpoint per `fit` forgets its best value). An epoch whose
    training loss is not finite never counts. The file itself is written by
    `session.EpochCommit`, as a copy of the epoch's committed model, after state.json. When
    `fit` trains only the head on cached features (`defer`), the best weights are kept in
    memory and the full model (whose head layers they are) is saved once when `fit` ends: a
    head epoch on cached features takes milliseconds, a full-model save about a second.
    """

    def __init__(self, full_model: keras.Model, folder: RunFolder, monitor: str) -> None:
        super().__init__()
        self.full_model = full_model
        self.folder = folder
        self.path = folder.best
        self.monitor = monitor
        self.mode = metrics.direction(monitor)
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_epoch: int | None = None  # 1-based, counted across stages
        self.defer = False
        self._pending: list[Any] | None = None

    def improved(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        value, loss = logs.get(self.monitor), logs.get("loss")
        if loss is not None and diverged_loss(loss):
            return
        if value is None or not math.isfinite(float(value)) or not self.improved(float(value)):
            return
        self.best, self.best_epoch = float(value), epoch + 1
        if self.defer:
            self._pending = self.model.get_weights()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._pending is None:
            return
        current = self.model.get_weights()
        self.model.set_weights(self._pending)
        self.folder.save_best(self.full_model)
        self.model.set_weights(current)
        self._pending = None

    def state(self) -> dict[str, Any]:
        return {"best": self.best if self.best_epoch else None, "best_epoch": self.best_epoch}

    def load_state(self, state: dict[str, Any], pending: list[Any] | None = None) -> None:
        if state.get("best_epoch"):
            self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self._pending = pending


class HistoryWriter(keras.callbacks.Callback):
    """One row per epoch, tagged by stage; rewritten to the run's history.csv when there is a
    `folder` (a run), kept in memory only when it is None (a tune trial)."""

    def __init__(self, folder: RunFolder | None, rows: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.rows: list[dict[str, Any]] = rows if rows is not None else []
        self.stage = HEAD
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        lr = logs.get("learning_rate")
        if lr is None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"stage": self.stage, "epoch": epoch + 1, "learning_rate": float(lr)}
        for key in metrics.logged():
            row[key] = float(logs[key]) if key in logs else ""
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.rows.append(row)
        if self.folder is not None:
            self.folder.write_history(self.rows)

    def stage_rows(self, stage: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["stage"] == stage]


class DivergenceGuard(keras.callbacks.Callback):
    """Stop at the first NaN, infinite or exploded training loss and remember where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.diverged_at: tuple[int, float] | None = None  # (1-based epoch, loss)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and diverged_loss(loss):
            self.diverged_at = (self.epoch, float(loss))
            self.model.stop_training = True


class EmaWeights(keras.callbacks.Callback):
    """timm's model EMA on Keras's own (the optimizer's use_ema keeps, step by step, a moving
    average of every trainable weight): validation, the best checkpoint, early stopping, the
    epoch commit and the stage's result all see the average, while training steps on the raw
    weights.

    Between epochs, and in every committed file, the model holds the average and the
    optimizer's average slots the raw weights; each epoch swaps them back to train, and swaps
    again for validation (or at the epoch's end without a validation split). A fresh stage's
    optimizer is not built yet: nothing to swap until its first step. The optimizer is
    optim._tuned, whose finalize leaves the swapped weights alone.
    """

    def __init__(self) -> None:
        super().__init__()
        self.averaged = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Resumed mid-stage, the committed model (and optimizer) hold the swapped pair.
        self.averaged = bool(self.model.optimizer.built)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.averaged:
            self._swap()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.averaged:
            self._swap()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.averaged:
            self._swap()

    def _swap(self) -> None:
        averages = self.model.optimizer._model_variables_moving_average  # Keras's EMA slots
        for weight, average in zip(self.model.trainable_variables, averages, strict=True):
            held = keras.ops.copy(weight.value)
            weight.assign(average.value)
            average.assign(held)
        self.averaged = not self.averaged


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that can pick up where an interrupted run left off.

    Keras resets wait/best in `on_train_begin`; `resume_from` (what `state()` returned) and
    the stage's best weights so far are put back right after that reset.
    """

    def __init__(
        self,
        *,
        resume_from: dict[str, Any] | None = None,
        best_weights: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._resume_from = resume_from
        self._resume_weights = best_weights

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self._resume_from:
            self.wait = int(self._resume_from["wait"])
            self.best = self._resume_from["best"]
            self.best_epoch = int(self._resume_from["best_epoch"])
            self.best_weights = self._resume_weights

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {"wait": int(self.wait), "best": best, "best_epoch": int(self.best_epoch)}


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that can pick up where an interrupted run left off.

    The lowered learning rate itself is an optimizer variable, saved and restored with the
    optimizer; `resume_from` puts back the wait, best and cooldown counters.
    """

    def __init__(self, *, resume_from: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resume_from = resume_from

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self._resume_from:
            self.wait = int(self._resume_from["wait"])
            self.cooldown_counter = int(self._resume_from["cooldown_counter"])
            self.best = self._resume_from["best"]

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
            "best": best,
        }


def plateau_callback(
    config: Config, stage: str, monitor: str, resume_from: dict[str, Any] | None = None
) -> ResumablePlateau | None:
    """The stage's ReduceLROnPlateau when its schedule is `plateau`, else None."""
    sched = config.schedule(stage)
    if sched.schedule != "plateau":
        return None
    return ResumablePlateau(
        monitor=monitor,
        factor=sched.plateau_factor,
        patience=sched.plateau_patience,
        min_lr=sched.min_learning_rate,
        resume_from=resume_from,
    )


class StepProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, never past the epoch's steps.

    With steps_per_execution > 1 Keras reports the last step of each call into TensorFlow, so
    a head on cached features (32 steps per call, 8 steps per epoch) drew `32/8` and a bar
    80 characters wide.
    """

    def _update_progbar(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.target is not None:
            batch = min(batch, int(self.target) - 1)
        super()._update_progbar(batch, logs)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard for one run, across its stages and sittings.

    - Writers are flushed every epoch, so a killed run keeps its curves.
    - Epoch scalars use the run's epoch (stage 2 continues at `initial_epoch`), and the
      `evaluation_*_vs_iterations` scalars the run's training steps so far, (epoch + 1) x steps
      per epoch: Keras uses the optimizer's counter, which starts again at 0 when stage 2
      compiles a new optimizer.
    - The graph is the full model's forward pass (raw pixels to probabilities), written once:
      Keras would write the graph of what each `fit` trains, which in stage 1 on cached
      features is the 4-layer head.
    - `write_test` adds the test scores at the kept epoch and the confusion matrix image.
    """

    def __init__(self, log_dir: str, full_model: keras.Model | None = None, **kwargs: Any):
        super().__init__(log_dir=log_dir, write_graph=False, **kwargs)
        self.full_model = full_model
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        train_dir = Path(self.log_dir) / "train"
        # A previous sitting of the run wrote its events, and so its graph, already.
        written = train_dir.is_dir() and any(train_dir.glob("events.out.tfevents.*"))
        super().on_train_begin(logs)
        if self.full_model is not None and not written:
            with self._train_writer.as_default():
                write_model_graph(self.full_model)
        self.full_model = None  # once per sitting

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._epoch = epoch

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        step = (self._epoch + 1) * int(self.params.get("steps") or 0)
        with self._val_writer.as_default():
            for name, value in (logs or {}).items():
                self.summary.scalar(f"evaluation_{name}_vs_iterations", value, step=step)
        self._pop_writer()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()

    def write_test(self, evaluation: dict[str, Any], best_epoch: int | None) -> None:
        """The test scores as one more point on the epoch curves (at the kept epoch, the
        "test" run beside "train" and "validation"), and the confusion matrix PNG as an image."""
        write_test_summary(Path(self.log_dir) / "test", evaluation, max((best_epoch or 1) - 1, 0))


def write_model_graph(model: keras.Model) -> None:
    """The forward graph of `model` (raw pixels to probabilities) into the default summary
    writer, for TensorBoard's Graphs tab."""
    import tensorflow as tf

    spec = tf.TensorSpec(model.input_shape, tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    tf.summary.graph(graph)


def write_test_summary(test_dir: Path, evaluation: dict[str, Any], step: int) -> None:
    """`epoch_accuracy`, `epoch_loss` (and `epoch_accuracy_without_flip`) of the test set at
    `step`, and `confusion_matrix`: the PNG that evaluation drew (evaluation["plots"][0])."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(test_dir))
    try:
        with writer.as_default():
            for name in (*(m.name for m in metrics.shown()), "accuracy_without_flip"):
                if evaluation.get(name) is not None:
                    tf.summary.scalar(f"epoch_{name}", float(evaluation[name]), step=step)
            png = Path(evaluation["plots"][0]) if evaluation.get("plots") else None
            if png is not None and png.is_file():
                image = tf.image.decode_png(tf.io.read_file(str(png)), channels=3)
                tf.summary.image("confusion_matrix", image[tf.newaxis], step=step)
    finally:
        writer.flush()
        writer.close()
