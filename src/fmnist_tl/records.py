"""Typed records that cross modules: a stage's summary, a run's metrics, a tuning trial.

Each is written and read in one place (`to_dict` / `from_dict`, `RunMetrics.write` /
`RunMetrics.read`), so a renamed field is one edit and the renderers take these types, not
dicts. Stage names are the constants below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import atomic, metrics
from .errors import MissingFileError
from .paths import read_text

HEAD = "head"  # stage 1: the head (and a from-scratch backbone), the pretrained backbone frozen
FINETUNE = "finetune"  # stage 2: unfreeze from a named layer, small learning rate
STAGES = (HEAD, FINETUNE)


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


@dataclass
class StageSummary:
    """One finished stage: best epoch, epochs wasted after it, and speed."""

    name: str
    epochs_run: int
    monitor: str
    wall_time_s: float
    images_per_s: float | None
    best_epoch: int | None = None  # None when no epoch gave a monitored value
    epochs_after_best: int | None = None
    best_val_accuracy: float | None = None
    best_val_loss: float | None = None
    feature_cache: str | None = None  # "hit" or "miss" when the head trained on cached features
    feature_seconds: float | None = None
    feature_pass: str | None = None  # the frozen pass that made them: "xnnpack" or "keras"
    # Stage 2 on cached activations of the frozen bottom: "hit" or "miss", the seconds it took
    # to load or compute them, the layer the cut sits before, and the cache's size.
    activation_cache: str | None = None
    activation_seconds: float | None = None
    activation_cut: str | None = None
    activation_mb: float | None = None
    activation_pass: str | None = None  # the frozen pass that made them

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "epochs_run": self.epochs_run}
        d["monitor"] = self.monitor
        if self.best_epoch is not None:
            d.update(
                best_epoch=self.best_epoch,
                epochs_after_best=self.epochs_after_best,
                best_val_accuracy=self.best_val_accuracy,
                best_val_loss=self.best_val_loss,
            )
        d.update(wall_time_s=self.wall_time_s, images_per_s=self.images_per_s)
        if self.feature_cache is not None:
            d.update(feature_cache=self.feature_cache, feature_seconds=self.feature_seconds)
            if self.feature_pass is not None:
                d["feature_pass"] = self.feature_pass
        if self.activation_cache is not None:
            d.update(
                activation_cache=self.activation_cache,
                activation_seconds=self.activation_seconds,
                activation_cut=self.activation_cut,
                activation_mb=self.activation_mb,
            )
            if self.activation_pass is not None:
                d["activation_pass"] = self.activation_pass
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StageSummary:
        defaults = {"epochs_run": 0, "monitor": "", "wall_time_s": 0.0, "images_per_s": None}
        d = {**defaults, **_known(cls, raw)}
        return cls(**d)


@dataclass
class Scores:
    """The test set's scores: every metric of metrics.METRICS, and how the test was run."""

    values: dict[str, float]  # metric name -> value, e.g. {"accuracy": 0.91, "loss": 0.25}
    test_flip: bool = False
    accuracy_without_flip: float | None = None  # beside a flip-averaged accuracy

    @property
    def accuracy(self) -> float:
        return self.values["accuracy"]

    @property
    def loss(self) -> float:
        return self.values["loss"]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Scores:
        """From metrics.json's `test` or an evaluation report (the metrics it has)."""
        values = {m.name: float(raw[m.name]) for m in metrics.shown() if m.name in raw}
        without = raw.get("accuracy_without_flip")
        return cls(values, bool(raw.get("test_flip", False)), without)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.values, "test_flip": self.test_flip}
        if self.accuracy_without_flip is not None:
            d["accuracy_without_flip"] = self.accuracy_without_flip
        return d


@dataclass
class DataCounts:
    source: str
    train: int
    val: int
    test: int


@dataclass
class RuntimeInfo:
    distribute: str
    replicas: int
    global_batch_size: int
    precision_policy: str
    jit_compile: bool
    onednn: bool
    # runtime.frozen_pass as configured, and what runs a converted pass here (models/litert.py):
    # the runtime and its threads. Which pass each result used is beside it: the stages'
    # feature_pass and activation_pass, RunMetrics.test_pass.
    frozen_pass: str | None = None
    xnnpack: str | None = None


@dataclass
class RunMetrics:
    """What metrics.json holds for one run."""

    run_id: str
    backbone: str
    test: Scores
    stages: list[StageSummary]
    wall_time_s: float
    config_name: str | None = None
    created: str | None = None
    input_size: int | None = None
    resize_method: str | None = None
    weights_requested: str | None = None
    weights_used: str | None = None
    weights_sha256: str | None = None  # of the weights file (or source model) actually loaded
    seed: int | None = None
    test_pass: str | None = None  # the frozen pass that gave the test's probabilities or features
    log_dir: str | None = None
    data: DataCounts | None = None
    runtime: RuntimeInfo | None = None
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)  # CPU, cores, GPUs, TensorFlow
    # Where the run's wall time went, over every sitting: prepare_s, features_s (the pool's),
    # test_features_s (the test images', when only the head trained), head_s, finetune_s,
    # test_s, reports_s; run_cpu_s, the run's CPU seconds (all threads, every sitting: a cost
    # another job on the machine barely moves). This sitting's: startup_s, process_s (the
    # process's life up to metrics.json), cpu_s (the process's CPU seconds, which count
    # earlier runs when one process trains several), sitting_cpu_s.
    timings: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None  # with output.tracking: mlflow, the run's MLflow run

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["test"] = self.test.to_dict()
        d["stages"] = [s.to_dict() for s in self.stages]
        d["data"] = asdict(self.data) if self.data else None
        d["runtime"] = asdict(self.runtime) if self.runtime else None
        order = ("run_id", "config_name", "created", "backbone", "input_size", "resize_method")
        order += ("weights_requested", "weights_used", "weights_sha256", "seed", "test")
        order += ("test_pass",)
        order += ("stages", "wall_time_s")
        order += ("log_dir", "data", "runtime", "versions", "machine", "timings")
        if self.mlflow_run_id is not None:  # tracking off: no key at all
            order += ("mlflow_run_id",)
        return {k: d[k] for k in order}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunMetrics:
        d = {"run_id": "", **_known(cls, raw)}  # no run_id: the reader names it by its folder
        d["test"] = Scores.from_dict(raw["test"])
        d["stages"] = [StageSummary.from_dict(s) for s in raw.get("stages") or []]
        d["data"] = DataCounts(**raw["data"]) if raw.get("data") else None
        d["runtime"] = RuntimeInfo(**raw["runtime"]) if raw.get("runtime") else None
        d["wall_time_s"] = float(raw.get("wall_time_s") or 0.0)
        return cls(**d)

    def best_val_accuracy(self) -> float | None:
        """Validation accuracy at the run's best epoch: the stage whose best wins on its
        monitor (the checkpoint keeps the best epoch over both stages)."""
        stages = [s for s in self.stages if s.best_val_accuracy is not None]
        if not stages:
            return None
        monitor = stages[0].monitor  # "" in a metrics.json written without it: by loss
        if monitor in metrics.logged() and metrics.direction(monitor) == "max":
            best = max(stages, key=lambda s: s.best_val_accuracy or 0.0)
        else:
            best = min(
                stages, key=lambda s: s.best_val_loss if s.best_val_loss is not None else 1e9
            )
        return float(best.best_val_accuracy) if best.best_val_accuracy is not None else None

    def write(self, path: Path) -> None:
        atomic.write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> RunMetrics:
        """metrics.json of a run; MissingFileError (exit 3) naming what is wrong."""
        raw = read_json_object(path)
        try:
            return cls.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise MissingFileError(f"{path}: unreadable (missing or bad field {exc})") from None


@dataclass
class TrialRecord:
    """One `fmnist tune` trial, as leaderboard.json lists it."""

    trial: int
    values: dict[str, Any]
    status: str = "ok"  # ok, invalid, diverged or failed
    objective: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    epochs_run: int = 0
    best_epoch: int | None = None
    seconds: float | None = None
    feature_cache: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"trial": d.pop("trial"), "status": d.pop("status"), **d}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialRecord:
        return cls(**_known(cls, raw))


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file fmnist wrote (metrics.json, repeat.json, study.json, a leaderboard), read
    as regular files are and parsed with a bounded depth; MissingFileError (exit 3) if it is
    unreadable or not an object."""
    try:
        raw = atomic.loads_json(read_text(path))
    except (OSError, ValueError) as exc:
        raise MissingFileError(f"{path}: unreadable ({exc})") from None
    if not isinstance(raw, dict):
        raise MissingFileError(f"{path}: unreadable (expected a JSON object)")
    return raw
