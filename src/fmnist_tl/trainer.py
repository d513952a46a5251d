"""Two-stage training and the run folder it fills.

Reads top to bottom: load data, build the model, stage 1 (frozen backbone: head only, on
cached features when possible), stage 2 (unfreeze from a named layer, recompile with a small
learning rate), then evaluate the best checkpoint and write the run's artifacts. Every epoch
is committed to the run folder (see resume.py), so `resume_run` carries an interrupted run on
from its last completed epoch, in the right stage, with its optimizer state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import atomic, data, features, runtime
from .callbacks import DivergenceGuard, ResumableEarlyStopping, plateau_callback
from .classes import NUM_CLASSES
from .config import Config, config_beside, load_config
from .errors import ConfigError, MissingFileError, TrainingDiverged
from .evaluation import load_classifier, write_evaluation
from .interrupts import StopAtSafePoint, StopRequested
from .model import (
    Built,
    build_model,
    check_unfreeze_layer,
    compile_model,
    find_backbone,
    set_backbone_trainable,
    unfreeze_from,
)
from .report import plot_history
from .resume import (
    LAST,
    LAST_HEAD,
    EpochCommit,
    RunState,
    Session,
    committed_model,
    complete,
    end_stage,
    find_run,
    interrupted,
    load_resumable,
    new_run_dir,
    open_session,
    restore_stage,
)

DEFAULT_FINETUNE_EPOCHS = 5  # `fmnist finetune` on a config whose finetune.epochs is 0


@dataclass
class Splits:
    x_pool: np.ndarray  # training examples before the validation split (feature cache key)
    y_pool: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def _setup(config: Config) -> tuple[Splits, Any]:
    """Seeds and precision first, then the data and the distribution strategy."""
    runtime.apply(config)
    return prepare_data(config), runtime.strategy(config)


def prepare_data(config: Config) -> Splits:
    ds = data.load_fashion_mnist(config.data.dir)
    x, y = data.limit(ds.x_train, ds.y_train, config.data.train_limit)
    (xt, yt), (xv, yv) = data.split_train_val(x, y, config.data.val_split, config.seed)
    xs, ys = data.limit(ds.x_test, ds.y_test, config.data.test_limit)
    return Splits(x, y, xt, yt, xv, yv, xs, ys, ds.source)


def train(config: Config) -> RunResult:
    """Run both stages as configured, evaluate the best model on the test set."""
    t_start = time.perf_counter()
    splits, strategy = _setup(config)
    with runtime.scope(strategy):
        built = build_model(config)
    if config.finetune.epochs > 0:
        check_unfreeze_layer(built.backbone, config.finetune.unfreeze_from)
    stages = ["head", "finetune"] if config.finetune.epochs > 0 else ["head"]
    state = RunState("train", stages, "head", weights_used=built.weights_used)
    s = _open(config, splits, strategy, new_run_dir(config), state, built.model, t_start)
    return _run(s, lambda: _train_stages(s, built))


def finetune(
    model_path: str | Path | None = None,
    *,
    unfreeze_from: str | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    overrides: list[str] | None = None,
) -> RunResult:
    """Stage 2 only, from a saved model and the config saved beside it; writes a new run."""
    t_start = time.perf_counter()
    model_path = Path(model_path) if model_path else Path("saved_models") / "best.keras"
    config_path = _run_config(model_path)
    extra = list(overrides or [])
    if unfreeze_from is not None:
        extra.append(f"finetune.unfreeze_from={unfreeze_from}")
    if learning_rate is not None:
        extra.append(f"finetune.learning_rate={learning_rate}")
    if epochs is not None:
        extra.append(f"finetune.epochs={epochs}")
    config = load_config(config_path, extra)
    if config.finetune.epochs == 0:
        config.finetune.epochs = DEFAULT_FINETUNE_EPOCHS
    config.output.name = f"{config.output.name}-finetune"

    splits, strategy = _setup(config)
    with runtime.scope(strategy):
        model = load_classifier(model_path)
    try:
        backbone = find_backbone(model)
    except ValueError:
        raise ConfigError(
            f"{model_path}: this model has no 'backbone' layer to unfreeze; "
            "fine-tune a model saved by `fmnist train`"
        ) from None
    check_unfreeze_layer(backbone, config.finetune.unfreeze_from)
    state = RunState(
        "finetune",
        ["finetune"],
        "finetune",
        weights_used=f"model {model_path}",
        source_model=str(model_path.resolve()),
    )
    s = _open(config, splits, strategy, new_run_dir(config), state, model, t_start)
    return _run(s, lambda: _finetune_if_pending(s, model))


def resume_run(run: str | Path, *, root: str | Path = "saved_models") -> RunResult:
    """Carry an interrupted `train` or `finetune` run on from its last completed epoch.

    `run` is a run folder, or a run id under `root` (the output.dir that holds it). The run
    goes on with the config saved in it and ends with the artifacts of an uninterrupted run.
    """
    t_start = time.perf_counter()
    run_dir = find_run(run, root)
    state = load_resumable(run_dir)
    config = load_config(run_dir / "config.yaml")
    splits, strategy = _setup(config)
    if state.command == "train":
        with runtime.scope(strategy):
            built = build_model(config)
        s = _open(config, splits, strategy, run_dir, state, built.model, t_start)
        return _run(s, lambda: _train_stages(s, built))
    # A `finetune` run: its last committed model, or the model it started from.
    with runtime.scope(strategy):
        model = load_classifier(committed_model(run_dir, state) or Path(state.source_model or ""))
    s = _open(config, splits, strategy, run_dir, state, model, t_start)
    return _run(s, lambda: _finetune_if_pending(s, model))


def _train_stages(s: Session, built: Built) -> None:
    config = s.config
    if s.state.stage == "head":
        use_cache = prepare_stage1(config, built) and s.strategy is None
        with runtime.scope(s.strategy):
            compile_model(built.model, config, "head", _steps_per_epoch(s))
        if use_cache:
            stage = _fit_head_on_features(s, built)
        else:
            stage = _fit(s, built.model, "head", config.train.epochs, config.train.patience)
        end_stage(s, stage, built.model)
    # Stage 2: unfreeze from a named layer, recompile at the fine-tuning learning rate.
    _finetune_if_pending(s, built.model)


def prepare_stage1(config: Config, built: Built) -> bool:
    """Freeze the backbone for stage 1; True when the head can train on cached features.

    A pretrained backbone is frozen and a from-scratch one trains whole, unless
    model.freeze_backbone says otherwise. Features can be cached when the backbone is frozen
    and nothing random (augmentation) sits before it.
    """
    m = config.model
    frozen = m.freeze_backbone if m.freeze_backbone is not None else built.pretrained
    set_backbone_trainable(built.backbone, not frozen, built.pretrained)
    return frozen and built.head is not None and config.train.feature_cache == "auto"


def _finetune_if_pending(s: Session, model: keras.Model) -> None:
    if s.state.stage == "finetune":
        end_stage(s, _finetune_stage(s, model), model)


def _open(
    config: Config,
    splits: Splits,
    strategy: Any,
    run_dir: Path,
    state: RunState,
    full_model: keras.Model,
    t_start: float,
) -> Session:
    monitor = _monitor(config, splits)
    return open_session(config, splits, strategy, run_dir, state, full_model, t_start, monitor)


def _run(s: Session, stages: Callable[[], None]) -> RunResult:
    """The remaining stages, then the test; SIGINT/SIGTERM end it as a resumable Interrupted."""
    with s.signals:
        try:
            stages()
            return _finish(s)
        except KeyboardInterrupt:
            raise interrupted(s) from None


def _run_config(model_path: Path) -> Path:
    """The resolved config saved with a model, or an error saying what to do."""
    if not model_path.is_file():
        raise MissingFileError(
            f"{model_path}: model file not found; train one first (`fmnist train CONFIG`) "
            "or pass the path to a .keras file"
        )
    found = config_beside(model_path)
    if found is not None:
        return found
    raise MissingFileError(
        f"{model_path}: no config.yaml beside the model; fine-tune a model inside a run "
        "folder written by `fmnist train`"
    )


def _finetune_stage(s: Session, model: keras.Model) -> dict[str, Any]:
    config = s.config
    unfreeze_from(find_backbone(model), config.finetune.unfreeze_from)
    s.history.stage = "finetune"
    # Changing `trainable` takes effect only after compiling again.
    with runtime.scope(s.strategy):
        compile_model(model, config, "finetune", _steps_per_epoch(s))
    return _fit(s, model, "finetune", config.finetune.epochs, config.finetune.patience)


def _steps_per_epoch(s: Session) -> int:
    return steps_per_epoch(
        len(s.splits.x_train), s.config.train.batch_size * runtime.replicas(s.strategy)
    )


def steps_per_epoch(n_train: int, batch: int) -> int:
    """Optimizer steps in one epoch: what learning-rate schedules count in."""
    return max(1, math.ceil(n_train / batch))


def _monitor(config: Config, splits: Splits) -> str:
    # Without a validation split, fall back on the training metric of the same kind.
    return config.train.monitor if len(splits.x_val) else config.train.monitor.removeprefix("val_")


def dataset(config: Config, x: np.ndarray, y: np.ndarray, *, shuffle: bool, batch: int) -> Any:
    ds = data.make_dataset(x, y, batch_size=batch, shuffle=shuffle, seed=config.seed)
    if config.train.label_smoothing > 0:  # CategoricalCrossentropy wants one-hot labels
        import tensorflow as tf

        ds = ds.map(lambda a, b: (a, tf.one_hot(tf.cast(b, tf.int32), NUM_CLASSES)))
    return ds


def _fit(
    s: Session,
    model: keras.Model,
    stage: str,
    epochs: int,
    patience: int | None,
    *,
    x_train: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    file_name: str = LAST,
) -> dict[str, Any]:
    """One `fit` for one stage: streaming images, or (x_train/x_val given) cached features.

    Starts at the stage's first epoch, or where a resumed run left it; commits every epoch.
    """
    config, splits, state = s.config, s.splits, s.state
    early_from, early_weights = restore_stage(s, model, file_name) if s.resumed else (None, None)
    plateau_from = state.plateau if s.resumed else None
    s.resumed = False
    batch = config.train.batch_size * runtime.replicas(s.strategy)
    xt = splits.x_train if x_train is None else x_train
    xv = splits.x_val if x_val is None else x_val
    train_ds = dataset(config, xt, splits.y_train, shuffle=True, batch=batch)
    val_ds = dataset(config, xv, splits.y_val, shuffle=False, batch=batch) if len(xv) else None
    monitor = _monitor(config, splits)
    early = None
    if patience is not None:
        early = ResumableEarlyStopping(
            monitor=monitor,
            patience=patience,
            restore_best_weights=True,
            resume_from=early_from,
            best_weights=early_weights,
        )
    plateau = plateau_callback(config, stage, monitor, resume_from=plateau_from)
    end = state.stage_start + epochs
    guard = DivergenceGuard()
    commit = EpochCommit(s.run_dir, state, s.ckpt, early, plateau, file_name, end, s.elapsed)
    # History first: it records the learning rate the epoch ran at, before plateau lowers it.
    extra = [c for c in (early, plateau) if c is not None]
    cbs = [s.history, s.ckpt, s.tensorboard, *extra, guard, commit]
    prior_seconds, t0 = state.stage_seconds, time.perf_counter()
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            # A stage that early stopping had ended runs no more epochs, only its end.
            epochs=state.epochs_done if state.stage_finished else end,
            initial_epoch=state.epochs_done,
            callbacks=[*cbs, StopAtSafePoint(s.signals)],
            shuffle=False,  # the tf.data pipeline shuffles, seeded
            verbose=runtime.verbosity(config),
        )
    except StopRequested:  # left between batches: close what `fit` would have closed
        s.signals.defer = False
        s.ckpt.on_train_end()
        s.tensorboard.on_train_end()
    seconds = prior_seconds + time.perf_counter() - t0
    if guard.diverged_at is not None:
        _diverged(s, stage, guard.diverged_at, model)
    if s.signals.requested:
        raise interrupted(s)
    return stage_summary(stage, s.history.stage_rows(stage), monitor, seconds, len(xt))


def _diverged(s: Session, stage: str, where: tuple[int, float], model: keras.Model) -> None:
    epoch, loss = where
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    s.state.diverged = f"stage {stage}, epoch {epoch}, learning rate {lr:g}"
    s.state.save(s.run_dir)
    ckpt = s.ckpt
    kept = (
        f"the best model so far (epoch {ckpt.best_epoch}) is kept in {ckpt.path}"
        if ckpt.path.is_file()
        else "no epoch finished with a finite loss, so no model was saved"
    )
    raise TrainingDiverged(
        f"stage {stage}: the training loss became {loss} at epoch {epoch} with learning rate "
        f"{lr:g}; {kept}; lower the learning rate and train again"
    )


def _fit_head_on_features(s: Session, built: Built) -> dict[str, Any]:
    """Stage 1 on cached pooled features: the same head, trained in place, far faster."""
    config, splits = s.config, s.splits
    prior_seconds, t0 = s.state.stage_seconds, time.perf_counter()
    key = features.cache_key(config, built.weights_used, splits.x_pool)
    feats, info = features.cached_features(
        built.feature_extractor, splits.x_pool, key, Path(config.output.cache_dir)
    )
    (f_train, _), (f_val, _) = data.split_train_val(
        feats, splits.y_pool, config.data.val_split, config.seed
    )
    compile_model(built.head, config, "head", _steps_per_epoch(s), on_features=True)
    s.ckpt.defer = True
    try:
        stage = _fit(
            s,
            built.head,
            "head",
            config.train.epochs,
            config.train.patience,
            x_train=f_train,
            x_val=f_val,
            file_name=LAST_HEAD,
        )
    finally:
        s.ckpt.defer = False
    stage["wall_time_s"] = round(prior_seconds + time.perf_counter() - t0, 3)
    stage["feature_cache"] = info["cache"]
    stage["feature_seconds"] = round(info["seconds"], 3)
    return stage


def stage_summary(
    stage: str, rows: list[dict[str, Any]], monitor: str, seconds: float, n_train: int
) -> dict[str, Any]:
    """Best epoch, wasted epochs after it, and speed, for the overfitting read-out."""
    values = [r[monitor] for r in rows if _number(r.get(monitor)) is not None]
    summary: dict[str, Any] = {"name": stage, "epochs_run": len(rows), "monitor": monitor}
    if values:
        pick = max if "accuracy" in monitor else min
        finite = [v for v in values if math.isfinite(v)] or values
        best_i = values.index(pick(finite))
        best = rows[best_i]
        summary.update(
            best_epoch=best["epoch"],
            epochs_after_best=len(rows) - 1 - best_i,
            best_val_accuracy=_number(best.get("val_accuracy")),
            best_val_loss=_number(best.get("val_loss")),
        )
    summary["wall_time_s"] = round(seconds, 3)
    summary["images_per_s"] = round(n_train * len(rows) / seconds, 1) if seconds > 0 else None
    return summary


def _number(value: Any) -> float | None:
    return None if value in ("", None) else float(value)


def _finish(s: Session) -> RunResult:
    """Evaluate the best checkpoint on the test set, write metrics, publish best.keras."""
    config, splits, run_dir = s.config, s.splits, s.run_dir
    model_path = run_dir / "best.keras"
    if not model_path.is_file():
        raise MissingFileError(
            f"{run_dir}: no epoch produced a finite {_monitor(config, splits)}; nothing saved"
        )
    model = keras.models.load_model(model_path, compile=False)
    evaluation = write_evaluation(
        model,
        splits.x_test,
        splits.y_test,
        run_dir / "evaluation.json",
        test_flip=config.augment.test_flip,
        extra={"model": str(model_path), "data_source": splits.source},
    )
    replicas = runtime.replicas(s.strategy)
    metrics = {
        "run_id": run_dir.name,
        "config_name": config.output.name,
        "created": datetime.now().isoformat(timespec="seconds"),
        "backbone": config.model.backbone,
        "input_size": config.model.input_size,
        "resize_method": config.model.resize_method,
        "weights_requested": config.model.weights,
        "weights_used": s.state.weights_used,
        "seed": config.seed,
        "test": {
            k: evaluation[k]
            for k in ("accuracy", "loss", "test_flip", "accuracy_without_flip")
            if k in evaluation
        },
        "stages": s.state.summaries,
        "wall_time_s": s.elapsed(),
        "log_dir": config.output.log_dir,
        "data": {
            "source": splits.source,
            "train": int(len(splits.x_train)),
            "val": int(len(splits.x_val)),
            "test": int(len(splits.x_test)),
        },
        "runtime": {
            "distribute": config.runtime.distribute,
            "replicas": replicas,
            "global_batch_size": config.train.batch_size * replicas,
            "precision_policy": keras.mixed_precision.global_policy().name,
            "jit_compile": config.runtime.jit_compile,
            "onednn": runtime.onednn(),
        },
        "versions": runtime.versions(),
    }
    atomic.write_json(run_dir / "metrics.json", metrics)
    plot_history(s.history.rows, run_dir / "history.png", title=run_dir.name)
    if config.output.update_best:
        root = run_dir.parent  # output.dir, wherever a resumed run is continued from
        atomic.copy_file(run_dir / "config.yaml", root / "best.config.yaml")
        atomic.copy_file(model_path, root / "best.keras")
    complete(s)
    return RunResult(run_dir.name, run_dir, model_path, metrics, s.history.rows)
