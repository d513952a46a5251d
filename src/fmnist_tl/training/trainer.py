"""Two-stage training and the run folder it fills.

Reads top to bottom: load data, build the model, stage 1 (frozen backbone: head only, on
cached features when possible), stage 2 (unfreeze from a named layer, recompile with a small
learning rate), then evaluate the best checkpoint and write the run's artifacts. Each stage is
one `Session.fit` (the one `fit_stage` plus the run's per-epoch commit), so `resume_run`
carries an interrupted run on from its last completed epoch, in the right stage, with its
optimizer state.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras

from .. import atomic, progress, runtime, tfenv
from ..config import Config
from ..config.loading import finetune_config, load_saved_config
from ..errors import ConfigError, MissingFileError
from ..evaluation import load_classifier, write_evaluation
from ..inference import infer
from ..model import (
    Built,
    build_model,
    check_unfreeze_layer,
    find_backbone,
    head_of,
    unfreeze_from,
)
from ..records import FINETUNE, HEAD, DataCounts, RunMetrics, RuntimeInfo, Scores
from ..reporting.plots import plot_history, run_title
from . import hparams
from .features import FeatureStore, features_of_test_images
from .fit import monitor_for
from .optim import compile_model, steps_per_epoch
from .publish import DEFAULT_FINETUNE_SOURCE, pinned, publish, test_setup
from .runfolder import (
    RunState,
    base_model,
    claim,
    committed_model,
    find_run,
    load_resumable,
    new_run_dir,
)
from .session import Session
from .splits import Splits, prepare_data
from .stage1 import stage1_inputs
from .stage2 import Plan, Pooled, plan_stage2, pooled_via_activations, stage2_inputs

DEFAULT_FINETUNE_EPOCHS = 5  # `fmnist finetune` on a config whose finetune.epochs is 0


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    model_path: Path
    metrics: RunMetrics
    history: list[dict[str, Any]] = field(default_factory=list)
    published: str | None = None  # what became of <output.dir>/best.keras, in one line


def _setup(config: Config) -> tuple[Splits, Any]:
    """Seeds and precision first, then the data and the distribution strategy."""
    runtime.apply(config)
    with progress.task("loading data", None):
        splits = prepare_data(config)
    return splits, runtime.strategy(config)


def train(config: Config) -> RunResult:
    """Run both stages as configured, evaluate the best model on the test set."""
    t_start = time.perf_counter()
    splits, strategy = _setup(config)
    with runtime.scope(strategy):
        built = build_model(config)
    if config.finetune.epochs > 0:
        check_unfreeze_layer(built.backbone, config.finetune.unfreeze_from)
    stages = [HEAD, FINETUNE] if config.finetune.epochs > 0 else [HEAD]
    state = RunState("train", stages, HEAD, weights_used=built.weights_used)
    s = Session.open(config, splits, strategy, new_run_dir(config), state, built.model, t_start)
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
    model_path = pinned(Path(model_path) if model_path else DEFAULT_FINETUNE_SOURCE)
    config = finetune_config(model_path, unfreeze_from, epochs, learning_rate, overrides)
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
        "finetune",  # the command, which `resume_run` repeats
        [FINETUNE],
        FINETUNE,
        weights_used=f"model {model_path}",
        source_model=str(model_path.resolve()),
    )
    s = Session.open(config, splits, strategy, new_run_dir(config), state, model, t_start)
    return _run(s, lambda: _finetune_if_pending(s, model))


def resume_run(run: str | Path, *, root: str | Path = "saved_models") -> RunResult:
    """Carry an interrupted `train` or `finetune` run on from its last completed epoch.

    `run` is a run folder, or a run id under `root` (the output.dir that holds it). The run
    goes on with the config saved in it and ends with the artifacts of an uninterrupted run.
    """
    t_start = time.perf_counter()
    run_dir = find_run(run, root)
    state = load_resumable(run_dir)
    config = load_saved_config(run_dir / "config.yaml")
    splits, strategy = _setup(config)
    if state.command == "train":
        with runtime.scope(strategy):
            built = build_model(config)
        s = Session.open(config, splits, strategy, run_dir, state, built.model, t_start)
        return _run(s, lambda: _train_stages(s, built))
    # A `finetune` run: its last committed model, or the model it started from.
    with runtime.scope(strategy):
        committed = base_model(run_dir, state) or committed_model(run_dir, state)
        model = load_classifier(committed or Path(state.source_model or ""))
    s = Session.open(config, splits, strategy, run_dir, state, model, t_start)
    return _run(s, lambda: _finetune_if_pending(s, model))


def _train_stages(s: Session, built: Built) -> None:
    config = s.config
    plan = _plan_stage2(s, built.model) if FINETUNE in s.state.stages else None
    acts: list[Pooled] = []  # stage 1's pass over the backbone fills it for stage 2
    if s.state.stage == HEAD:
        prior, t0 = s.state.stage_seconds, time.perf_counter()
        cache_dir = Path(config.output.cache_dir)
        pooled = pooled_via_activations(plan, s.splits.x_pool, cache_dir, acts)
        # Features only on one device: a strategy trains the full model, replicated.
        inputs = stage1_inputs(
            config, s.splits, FeatureStore(), built, allow_cache=s.strategy is None, pooled=pooled
        )
        with runtime.scope(s.strategy):
            compile_model(built.model, config, HEAD, _steps_per_epoch(s))
        if inputs.on_features:
            compile_model(inputs.model, config, HEAD, _steps_per_epoch(s), on_features=True)
        summary = s.fit(inputs.model, HEAD, inputs.data, on_features=inputs.on_features)
        if inputs.on_features:  # the stage's time includes its feature pass
            summary.wall_time_s = round(prior + time.perf_counter() - t0, 3)
            summary.feature_cache = inputs.feature_cache
            summary.feature_seconds = round(inputs.feature_seconds, 3)
        s.end_stage(summary, built.model)
        if inputs.on_features and plan is None:  # tested on features, from the same cache
            assert built.feature_extractor is not None
            s.test_features, s.test_features_s = features_of_test_images(
                config, built.feature_extractor, built.weights_used, s.splits.x_test
            )
    # Stage 2: unfreeze from a named layer, recompile at the fine-tuning learning rate.
    _finetune_if_pending(s, built.model, plan, acts[0] if acts else None)


def _plan_stage2(s: Session, model: keras.Model) -> Plan:
    plan = plan_stage2(s.config, model, len(s.splits.x_pool), s.strategy, s.splits.x_pool)
    if (note := plan.note(len(s.splits.x_pool))) is not None:
        print(f"note: {note}", file=sys.stderr)
    return plan


def _finetune_if_pending(
    s: Session, model: keras.Model, plan: Plan | None = None, acts: Pooled | None = None
) -> None:
    """Stage 2, on cached activations of the frozen bottom when it can (stage2.py)."""
    if s.state.stage != FINETUNE:
        return
    plan = plan or _plan_stage2(s, model)
    unfreeze_from(find_backbone(model), s.config.finetune.unfreeze_from)
    if not plan.cached:
        # Changing `trainable` takes effect only after compiling again.
        with runtime.scope(s.strategy):
            compile_model(model, s.config, FINETUNE, _steps_per_epoch(s))
        s.end_stage(s.fit(model, FINETUNE, s.splits.images()), model)
        return
    prior, t0 = s.state.stage_seconds, time.perf_counter()
    s.start_cached_stage(model)  # the bottom the activations come from, restored on resume
    inputs = stage2_inputs(s.config, model, s.splits, plan, acts)
    compile_model(inputs.model, s.config, FINETUNE, _steps_per_epoch(s))
    summary = s.fit(inputs.model, FINETUNE, inputs.data, on_features=True, full_model=model)
    if acts is None:  # computed or loaded here: part of this stage's time
        summary.wall_time_s = round(prior + time.perf_counter() - t0, 3)
    summary.activation_cache = inputs.cache
    summary.activation_seconds = round(inputs.seconds, 3)
    summary.activation_cut = plan.cut.layer
    summary.activation_mb = round(inputs.cache_bytes / 2**20, 1)
    s.end_stage(summary, model)


def _run(s: Session, stages: Callable[[], None]) -> RunResult:
    """The remaining stages, then the test; SIGINT/SIGTERM end it as a resumable Interrupted.

    The sitting holds its run folder (`claim`): no second process trains it meanwhile, and
    no temporary file outlives the sitting, however it ends.
    """
    with claim(s.run_dir), s.signals:
        try:
            stages()
            return _finish(s)
        except KeyboardInterrupt:
            raise s.interrupted() from None


def _steps_per_epoch(s: Session) -> int:
    batch = s.config.train.batch_size * runtime.replicas(s.strategy)
    return steps_per_epoch(len(s.splits.x_train), batch)


def _finish(s: Session) -> RunResult:
    """Evaluate the best checkpoint on the test set, write metrics, publish best.keras."""
    config, splits, run_dir = s.config, s.splits, s.run_dir
    model_path = run_dir / "best.keras"
    if not model_path.is_file():
        monitor = monitor_for(config, len(splits.x_val) > 0)
        raise MissingFileError(f"{run_dir}: no epoch produced a finite {monitor}; nothing saved")
    t_test = time.perf_counter()
    model = keras.models.load_model(model_path, compile=False)
    views = None
    if s.test_features is not None:  # the head on the test features is the model on the images
        head = head_of(model)
        views = [infer(head, f, label="testing") for f in s.test_features]
    evaluation = write_evaluation(
        model,
        splits.x_test,
        splits.y_test,
        run_dir / "evaluation.json",
        test_flip=config.augment.test_flip,
        extra={"model": str(model_path), "data_source": splits.source},
        views=views,
    )
    metrics = _metrics(s, evaluation)
    t_reports = time.perf_counter()
    hparams.log_run(config, metrics)  # TensorBoard's HParams dashboard lists it
    s.tensorboard.write_test(evaluation, s.ckpt.best_epoch)  # test scores, confusion image
    title = run_title(run_dir.name, metrics.test.accuracy, len(splits.y_test))
    plot_history(s.history.rows, run_dir / "history.png", title=title)
    published = None
    if config.output.update_best:  # output.dir, wherever a resumed run is continued from
        setup = test_setup(splits, config.augment.test_flip)
        published = publish(run_dir, metrics.test.accuracy, setup)
    metrics.timings = _timings(s, t_reports - t_test, time.perf_counter() - t_reports)
    metrics.write(run_dir / "metrics.json")
    s.complete()
    return RunResult(run_dir.name, run_dir, model_path, metrics, s.history.rows, published)


def _timings(s: Session, test_s: float, reports_s: float) -> dict[str, float]:
    """Where this sitting's wall time went, for the speed read-out (metrics.json)."""
    stages = {x.name: x for x in s.state.summaries}
    features = sum(x.feature_seconds or 0.0 for x in stages.values())
    process = runtime.process_seconds()
    fitted = sum(x.wall_time_s for x in stages.values())
    accounted = fitted + s.test_features_s + test_s + reports_s
    parts = {
        "startup_s": process - (time.perf_counter() - s.started) if process else None,
        "features_s": features,  # the pool's: training and validation images
        "test_features_s": s.test_features_s,  # the test images', when tested on features
        "head_s": stages[HEAD].wall_time_s - features if HEAD in stages else 0.0,
        "finetune_s": stages[FINETUNE].wall_time_s if FINETUNE in stages else 0.0,
        "test_s": test_s,
        "reports_s": reports_s,
        # data loading, model building, the run folder: what the others leave
        "prepare_s": time.perf_counter() - s.started - accounted,
        "process_s": process,
    }
    return {k: round(v, 3) for k, v in parts.items() if v is not None}


def _weights_sha256(state: RunState) -> str | None:
    """The SHA-256 of the weights file or source model a run loaded, so a result names them."""
    used = state.weights_used
    path = used.removeprefix("file ") if used.startswith("file ") else state.source_model
    return atomic.sha256_file(path) if path and Path(path).is_file() else None


def _metrics(s: Session, evaluation: dict[str, Any]) -> RunMetrics:
    config, splits = s.config, s.splits
    replicas = runtime.replicas(s.strategy)
    return RunMetrics(
        run_id=s.run_dir.name,
        config_name=config.output.name,
        created=datetime.now().isoformat(timespec="seconds"),
        backbone=config.model.backbone,
        input_size=config.model.input_size,
        resize_method=config.model.resize_method,
        weights_requested=config.model.weights,
        weights_used=s.state.weights_used,
        weights_sha256=_weights_sha256(s.state),
        seed=config.seed,
        test=Scores(
            evaluation["accuracy"],
            evaluation["loss"],
            evaluation["test_flip"],
            evaluation.get("accuracy_without_flip"),
        ),
        stages=list(s.state.summaries),
        wall_time_s=s.elapsed(),
        log_dir=config.output.log_dir,
        data=DataCounts(splits.source, len(splits.x_train), len(splits.x_val), len(splits.x_test)),
        runtime=RuntimeInfo(
            distribute=config.runtime.distribute,
            replicas=replicas,
            global_batch_size=config.train.batch_size * replicas,
            precision_policy=keras.mixed_precision.global_policy().name,
            jit_compile=config.runtime.jit_compile,
            onednn=tfenv.onednn(),
        ),
        versions=runtime.versions(),
    )
