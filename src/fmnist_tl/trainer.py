"""Two-stage training and the run folder it fills.

Reads top to bottom: load data, build the model, stage 1 (frozen backbone: head only, on
cached features when possible), stage 2 (unfreeze from a named layer, recompile with a small
learning rate), then evaluate the best checkpoint and write the run's artifacts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import atomic, data, features, runtime
from .callbacks import BestModelCheckpoint, DivergenceGuard, HistoryWriter
from .classes import NUM_CLASSES
from .config import Config, load_config
from .errors import ConfigError, MissingFileError, TrainingDiverged
from .evaluation import load_classifier, write_evaluation
from .model import (
    build_model,
    find_backbone,
    layer_prefixes,
    set_backbone_trainable,
    unfreeze_from,
)
from .report import plot_history

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


def prepare_data(config: Config) -> Splits:
    ds = data.load_fashion_mnist(config.data.dir)
    x, y = data.limit(ds.x_train, ds.y_train, config.data.train_limit)
    (xt, yt), (xv, yv) = data.split_train_val(x, y, config.data.val_split, config.seed)
    xs, ys = data.limit(ds.x_test, ds.y_test, config.data.test_limit)
    return Splits(x, y, xt, yt, xv, yv, xs, ys, ds.source)


def train(config: Config) -> RunResult:
    """Run both stages as configured, evaluate the best model on the test set."""
    t_start = time.perf_counter()
    runtime.apply(config)
    splits = prepare_data(config)
    strategy = runtime.strategy(config)
    with runtime.scope(strategy):
        built = build_model(config)
    frozen = (
        config.model.freeze_backbone
        if config.model.freeze_backbone is not None
        else built.pretrained
    )
    if config.finetune.epochs > 0:
        _check_unfreeze_layer(built.backbone, config.finetune.unfreeze_from)

    run_id, run_dir = _new_run(config)
    atomic.write_text(run_dir / "config.yaml", config.to_yaml())
    history = HistoryWriter(run_dir / "history.csv")
    ckpt = BestModelCheckpoint(built.model, run_dir / "best.keras", _monitor(config, splits))
    tensorboard = keras.callbacks.TensorBoard(log_dir=str(Path(config.output.log_dir) / run_id))
    stages: list[dict[str, Any]] = []

    # Stage 1: freeze the backbone (a pretrained one; from-scratch models train whole).
    set_backbone_trainable(built.backbone, not frozen, built.pretrained)
    with runtime.scope(strategy):
        _compile(built.model, config, config.train.learning_rate)
    use_cache = (
        frozen
        and built.head is not None
        and config.train.feature_cache == "auto"
        and strategy is None
    )
    if use_cache:
        stage = _fit_head_on_features(built, config, splits, [history, ckpt, tensorboard])
    else:
        stage = _fit(
            built.model,
            config,
            splits,
            "head",
            config.train.epochs,
            config.train.patience,
            0,
            [history, ckpt, tensorboard],
            strategy,
        )
    stages.append(stage)

    # Stage 2: unfreeze from a named layer, recompile at the fine-tuning learning rate.
    if config.finetune.epochs > 0:
        stages.append(
            _finetune_stage(built.model, config, splits, history, ckpt, tensorboard, strategy)
        )

    return _finish(
        config, splits, run_id, run_dir, stages, history, built.weights_used, t_start, strategy
    )


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
    config_path = config_beside(model_path)
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

    runtime.apply(config)
    splits = prepare_data(config)
    strategy = runtime.strategy(config)
    with runtime.scope(strategy):
        model = load_classifier(model_path)
    try:
        backbone = find_backbone(model)
    except ValueError:
        raise ConfigError(
            f"{model_path}: this model has no 'backbone' layer to unfreeze; "
            "fine-tune a model saved by `fmnist train`"
        ) from None
    _check_unfreeze_layer(backbone, config.finetune.unfreeze_from)

    run_id, run_dir = _new_run(config)
    atomic.write_text(run_dir / "config.yaml", config.to_yaml())
    history = HistoryWriter(run_dir / "history.csv")
    ckpt = BestModelCheckpoint(model, run_dir / "best.keras", _monitor(config, splits))
    tensorboard = keras.callbacks.TensorBoard(log_dir=str(Path(config.output.log_dir) / run_id))
    stage = _finetune_stage(model, config, splits, history, ckpt, tensorboard, strategy)
    return _finish(
        config,
        splits,
        run_id,
        run_dir,
        [stage],
        history,
        f"model {model_path}",
        t_start,
        strategy,
    )


def config_beside(model_path: Path) -> Path:
    """The resolved config saved with a model: <stem>.config.yaml, else config.yaml."""
    if not model_path.is_file():
        raise MissingFileError(
            f"{model_path}: model file not found; train one first (`fmnist train CONFIG`) "
            "or pass the path to a .keras file"
        )
    for candidate in (model_path.with_suffix(".config.yaml"), model_path.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise MissingFileError(
        f"{model_path}: no config.yaml beside the model; fine-tune a model inside a run "
        "folder written by `fmnist train`"
    )


def _finetune_stage(
    model: keras.Model,
    config: Config,
    splits: Splits,
    history: HistoryWriter,
    ckpt: BestModelCheckpoint,
    tensorboard: keras.callbacks.Callback,
    strategy: Any,
) -> dict[str, Any]:
    backbone = find_backbone(model)
    unfreeze_from(backbone, config.finetune.unfreeze_from)
    history.stage = "finetune"
    # Changing `trainable` takes effect only after compiling again.
    with runtime.scope(strategy):
        _compile(model, config, config.finetune.learning_rate)
    start = len(history.rows)
    return _fit(
        model,
        config,
        splits,
        "finetune",
        start + config.finetune.epochs,
        config.finetune.patience,
        start,
        [history, ckpt, tensorboard],
        strategy,
    )


def _check_unfreeze_layer(backbone: keras.Model, prefix: str | None) -> None:
    names = [layer.name for layer in backbone.layers]
    if not prefix or not any(n.startswith(prefix) for n in names):
        raise ConfigError(
            f"finetune.unfreeze_from: no layer of the backbone starts with {prefix!r}; "
            f"valid prefixes: {', '.join(layer_prefixes(backbone))}"
        )


def _new_run(config: Config) -> tuple[str, Path]:
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
            return run_id, root / run_id
        except FileExistsError:
            continue
        except OSError as exc:
            raise MissingFileError(
                f"output.dir: cannot write in {root}: {exc.strerror}; choose a writable "
                "folder with --set output.dir=PATH"
            ) from None
    raise MissingFileError(f"output.dir: too many runs named {base} in {root}")


def _monitor(config: Config, splits: Splits) -> str:
    # Without a validation split, fall back on the training metric of the same kind.
    return config.train.monitor if len(splits.x_val) else config.train.monitor.removeprefix("val_")


def _optimizer(config: Config, learning_rate: float) -> keras.optimizers.Optimizer:
    t = config.train
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, nesterov=True, weight_decay=t.weight_decay or None
        )
    return keras.optimizers.Adam(learning_rate, weight_decay=t.weight_decay or None)


def _compile(model: keras.Model, config: Config, learning_rate: float) -> None:
    smoothing = config.train.label_smoothing
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
        if smoothing > 0
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(
        optimizer=_optimizer(config, learning_rate),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=config.runtime.jit_compile,
        steps_per_execution=config.runtime.steps_per_execution,
    )


def _dataset(config: Config, x: np.ndarray, y: np.ndarray, *, shuffle: bool, batch: int) -> Any:
    ds = data.make_dataset(x, y, batch_size=batch, shuffle=shuffle, seed=config.seed)
    if config.train.label_smoothing > 0:  # CategoricalCrossentropy wants one-hot labels
        import tensorflow as tf

        ds = ds.map(lambda a, b: (a, tf.one_hot(tf.cast(b, tf.int32), NUM_CLASSES)))
    return ds


def _fit(
    model: keras.Model,
    config: Config,
    splits: Splits,
    stage: str,
    epochs: int,
    patience: int | None,
    initial_epoch: int,
    callbacks: list[keras.callbacks.Callback],
    strategy: Any,
    *,
    x_train: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
) -> dict[str, Any]:
    """One `fit` call: streaming images, or (x_train/x_val given) cached features."""
    batch = config.train.batch_size * runtime.replicas(strategy)
    xt = splits.x_train if x_train is None else x_train
    xv = splits.x_val if x_val is None else x_val
    train_ds = _dataset(config, xt, splits.y_train, shuffle=True, batch=batch)
    val_ds = _dataset(config, xv, splits.y_val, shuffle=False, batch=batch) if len(xv) else None
    monitor = _monitor(config, splits)
    cbs = list(callbacks)
    if patience is not None:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=patience, restore_best_weights=True
            )
        )
    guard = DivergenceGuard()
    cbs.append(guard)
    t0 = time.perf_counter()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=cbs,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        verbose=runtime.verbosity(config),
    )
    seconds = time.perf_counter() - t0
    if guard.diverged_at is not None:
        _diverged(stage, guard.diverged_at, model, callbacks)
    history = next(c for c in callbacks if isinstance(c, HistoryWriter))
    return _stage_summary(stage, history.stage_rows(stage), monitor, seconds, len(xt))


def _diverged(
    stage: str,
    where: tuple[int, float],
    model: keras.Model,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    epoch, loss = where
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    ckpt = next(c for c in callbacks if isinstance(c, BestModelCheckpoint))
    kept = (
        f"the best model so far (epoch {ckpt.best_epoch}) is kept in {ckpt.path}"
        if ckpt.path.is_file()
        else "no epoch finished with a finite loss, so no model was saved"
    )
    raise TrainingDiverged(
        f"stage {stage}: the training loss became {loss} at epoch {epoch} with learning rate "
        f"{lr:g}; {kept}; lower the learning rate and train again"
    )


def _fit_head_on_features(
    built: Any, config: Config, splits: Splits, callbacks: list[keras.callbacks.Callback]
) -> dict[str, Any]:
    """Stage 1 on cached pooled features: the same head, trained in place, far faster."""
    t0 = time.perf_counter()
    key = features.cache_key(config, built.weights_used, splits.x_pool)
    feats, info = features.cached_features(
        built.feature_extractor, splits.x_pool, key, Path(config.output.cache_dir)
    )
    (f_train, _), (f_val, _) = data.split_train_val(
        feats, splits.y_pool, config.data.val_split, config.seed
    )
    _compile(built.head, config, config.train.learning_rate)
    ckpt = next(c for c in callbacks if isinstance(c, BestModelCheckpoint))
    ckpt.defer = True
    try:
        stage = _fit(
            built.head,
            config,
            splits,
            "head",
            config.train.epochs,
            config.train.patience,
            0,
            callbacks,
            None,
            x_train=f_train,
            x_val=f_val,
        )
    finally:
        ckpt.defer = False
    stage["wall_time_s"] = round(time.perf_counter() - t0, 3)
    stage["feature_cache"] = info["cache"]
    stage["feature_seconds"] = round(info["seconds"], 3)
    return stage


def _stage_summary(
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


def _finish(
    config: Config,
    splits: Splits,
    run_id: str,
    run_dir: Path,
    stages: list[dict[str, Any]],
    history: HistoryWriter,
    weights_used: str,
    t_start: float,
    strategy: Any,
) -> RunResult:
    """Evaluate the best checkpoint on the test set, write metrics, publish best.keras."""
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
        extra={"model": str(model_path), "data_source": splits.source},
    )
    metrics = {
        "run_id": run_id,
        "config_name": config.output.name,
        "created": datetime.now().isoformat(timespec="seconds"),
        "backbone": config.model.backbone,
        "input_size": config.model.input_size,
        "resize_method": config.model.resize_method,
        "weights_requested": config.model.weights,
        "weights_used": weights_used,
        "seed": config.seed,
        "test": {"accuracy": evaluation["accuracy"], "loss": evaluation["loss"]},
        "stages": stages,
        "wall_time_s": round(time.perf_counter() - t_start, 3),
        "log_dir": config.output.log_dir,
        "data": {
            "source": splits.source,
            "train": int(len(splits.x_train)),
            "val": int(len(splits.x_val)),
            "test": int(len(splits.x_test)),
        },
        "runtime": {
            "distribute": config.runtime.distribute,
            "replicas": runtime.replicas(strategy),
            "global_batch_size": config.train.batch_size * runtime.replicas(strategy),
            "precision_policy": keras.mixed_precision.global_policy().name,
            "jit_compile": config.runtime.jit_compile,
        },
        "versions": runtime.versions(),
    }
    atomic.write_json(run_dir / "metrics.json", metrics)
    plot_history(history.rows, run_dir / "history.png", title=run_id)
    if config.output.update_best:
        root = Path(config.output.dir)
        atomic.copy_file(run_dir / "config.yaml", root / "best.config.yaml")
        atomic.copy_file(model_path, root / "best.keras")
    return RunResult(run_id, run_dir, model_path, metrics, history.rows)
