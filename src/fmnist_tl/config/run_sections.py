"""The config's sections of how runs run: where results go (output, MLflow tracking included),
how a run uses the machine (runtime), and the studies that make many runs (tune, sweep). Each
key's default, bounds and one-line meaning, as in sections.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from .fields import (
    MAX_CACHE_GB,
    MAX_EPOCHS,
    MAX_STEPS_PER_EXECUTION,
    MAX_TRIALS,
    MAX_WAIT_S,
    Bool,
    Float,
    Int,
    Label,
    Name,
    PathText,
    Uri,
)
from .sections import _key, _Section

MAX_RUNS_PER_CELL = 100  # sweep.seeds: a mean over 100 seeds is already tight
TRACKING_DB = "mlflow.db"  # the default tracking store, a SQLite file in output.dir


class OutputConfig(_Section):
    """Where a run's results go."""

    dir: PathText = _key("saved_models", "run folders go to <dir>/<name>-<time>/")
    log_dir: PathText = _key("logs/fit", "TensorBoard logs go to <log_dir>/<run_id>/")
    name: Name | None = _key(None, "run name (not a path); null = the config file's stem")
    update_best: Bool = _key(True, "offer this run's model to <dir>/best.keras")
    cache_dir: PathText = _key(
        ".cache/features", "frozen-backbone features, keyed by what they depend on"
    )
    # MLflow is an optional extra (pip install -e '.[mlflow]'); off, nothing imports it.
    tracking: Literal["none", "mlflow"] = _key("none", "record runs and studies: none or mlflow")
    tracking_uri: Uri | None = _key(
        None, "MLflow store (database or server); null = sqlite:///<dir>/mlflow.db"
    )
    experiment: Label | None = _key(None, "MLflow experiment; null = output.name")
    tracking_model: Bool = _key(False, "also log best.keras to MLflow (tens of MB a run)")

    def store(self) -> str:
        """tracking_uri, else a SQLite file in output.dir (absolute: the same from anywhere)."""
        return self.tracking_uri or f"sqlite:///{Path(self.dir).resolve() / TRACKING_DB}"

    def pin_tracking(self) -> None:
        """With tracking on, write the store and experiment into the config (saved with each
        run), so a sweep's runs and a resumed run go on where their study or run began."""
        if self.tracking != "none":
            self.tracking_uri, self.experiment = self.store(), self.experiment or self.name


class RuntimeConfig(_Section):
    """How a run uses the machine: speed, not results (except deterministic)."""

    mixed_precision: Bool = _key(False, "float16 compute on GPU (output layer stays float32)")
    jit_compile: Bool = _key(False, "XLA-compile the train step")
    steps_per_execution: Int = _key(1, "batches per Keras call", ge=1, le=MAX_STEPS_PER_EXECUTION)
    distribute: Literal["none", "mirrored", "multi_worker"] = _key("none", "tf.distribute strategy")
    deterministic: Bool = _key(False, "TF deterministic ops (GPU reproducibility, slower)")
    # Stage 2 streams instead when its activation cache would take more memory than this.
    cache_memory_gb: Float = _key(
        6.0, "memory a stage-2 activation cache may take (GiB)", gt=0.0, le=MAX_CACHE_GB
    )
    # Distributed waits (a Keras Tuner worker for its chief, the chief for its workers, a
    # multi_worker process for its peers) are announced, bounded by these, and interruptible.
    peer_wait_s: Int = _key(
        600, "seconds a distributed process waits for its chief, workers or peers; then exit 3",
        ge=1, le=MAX_WAIT_S,
    )  # fmt: skip
    peer_lost_s: Int = _key(
        30, "seconds the chief or a worker may stay silent before it counts as gone (exit 3)",
        ge=1, le=MAX_WAIT_S,
    )  # fmt: skip
    # auto: XNNPACK on a CPU for a pass of 4,096 images or more, checked against Keras before use
    # and kept only where it is not slower (models/frozen.py); a GPU or runtime.distribute
    # always runs Keras's pass.
    frozen_pass: Literal["auto", "keras", "xnnpack"] = _key(
        "auto", "frozen forward passes (features, activations, tests): auto, keras or xnnpack"
    )
    # debug = auto plus every TensorFlow/Keras start-up line and warning (`fmnist --verbose`).
    verbose: Literal["auto", "bar", "epoch", "silent", "debug"] = _key(
        "auto", "Keras progress: auto (a bar on a terminal), bar, epoch, silent or debug"
    )


class TuneConfig(_Section):
    """`fmnist tune`: random search; each trial trains stage 1 and is scored on validation."""

    trials: Int = _key(20, "default for --trials", ge=1, le=MAX_TRIALS)
    objective: Literal["val_accuracy", "val_loss"] = _key(
        "val_accuracy", "maximised (accuracy) or minimised (loss)"
    )
    epochs: Int | None = _key(
        None, "stage-1 epochs per trial; null = train.epochs", ge=1, le=MAX_EPOCHS
    )
    # Floats for a float key, integers for an integer key; checked when loaded (space.py).
    space: dict[str, Any] = _key(
        dict, "dotted key -> a list of choices or a range {min, max, step?, log?}"
    )

    @field_validator("space", mode="before")
    @classmethod
    def _null_space(cls, value: Any) -> Any:
        return {} if value is None else value  # `space:` with nothing under it


class SweepConfig(_Section):
    """`fmnist sweep`: every combination of the grid's values is a cell, run once per seed."""

    # Checked like tune.space keys when the sweep starts (fmnist_tl.study.grid).
    grid: dict[str, list[Any]] = _key(
        dict, "dotted key -> the values to try, e.g. {model.resize_method: [nearest, bilinear]}"
    )
    seeds: Int = _key(1, "runs per cell, with seeds seed, seed+1, ...", ge=1, le=MAX_RUNS_PER_CELL)

    @field_validator("grid", mode="before")
    @classmethod
    def _null_grid(cls, value: Any) -> Any:
        return {} if value is None else value  # `grid:` with nothing under it
