"""Two-stage training and the run folder it fills.

Reads top to bottom: load data, build the model, stage 1 (frozen backbone: head only, on
cached features when possible), stage 2 (unfreeze from a named layer, recompile with a small
learning rate), then evaluate the best checkpoint and write the run's artifacts (results.py).
Each stage is one `Session.run_stage` (stage.run_stage with the run's per-epoch commit), so
`resume_run` carries an interrupted run on from its last completed epoch, in the right stage,
with its optimizer state.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import keras

from .. import progress, tracking
from ..config import Config
from ..config.loading import finetune_config
from ..errors import ConfigError
from ..evaluation.loading import load_classifier
from ..machine import Clock
from ..models.assembly import Built, build_model, find_backbone
from ..records import FINETUNE, HEAD
from . import multiworker, runtime
from .features import FeatureStore, features_of_test_images
from .freezing import check_unfreeze_layer, unfreeze_from
from .optim import check_warmups, compile_model, steps_per_epoch
from .publish import DEFAULT_FINETUNE_SOURCE, pinned
from .results import RunResult, finish
from .runfolder import RunFolder
from .session import Session
from .splits import Splits, prepare_data
from .stage1 import feature_cache_bytes, stage1_inputs
from .stage2 import BackbonePass, Plan, plan_stage2, stage2_inputs
from .state import RunState

DEFAULT_FINETUNE_EPOCHS = 5  # `fmnist finetune` on a config whose finetune.epochs is 0


def _setup(config: Config) -> tuple[Splits, Any]:
    """TF_CONFIG checked, seeds and precision first, then the data and the strategy."""
    runtime.check_environment(config)
    tracking.require(config.output)  # MLflow asked for but missing: before any work
    runtime.apply(config)
    with progress.task("loading data", None):
        splits = prepare_data(config)
    return splits, runtime.strategy(config)


def train(config: Config) -> RunResult:
    """Run both stages as configured, evaluate the best model on the test set."""
    t_start = Clock.now()
    splits, strategy = _setup(config)
    stages = [HEAD, FINETUNE] if config.finetune.epochs > 0 else [HEAD]
    check_warmups(config, stages, _steps(config, splits, strategy))
    with runtime.scope(strategy):
        built = build_model(config)
    if config.finetune.epochs > 0:
        check_unfreeze_layer(built.backbone, config.finetune.unfreeze_from)
    state = RunState("train", stages, HEAD, weights_used=built.weights_used)
    folder = RunFolder.new(config)
    s = Session.open(config, splits, strategy, folder, state, built.model, t_start)
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
    t_start = Clock.now()
    model_path = pinned(Path(model_path) if model_path else DEFAULT_FINETUNE_SOURCE)
    config = finetune_config(model_path, unfreeze_from, epochs, learning_rate, overrides)
    if config.finetune.epochs == 0:
        config.finetune.epochs = DEFAULT_FINETUNE_EPOCHS
    config.output.name = f"{config.output.name}-finetune"

    splits, strategy = _setup(config)
    check_warmups(config, [FINETUNE], _steps(config, splits, strategy))
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
    folder = RunFolder.new(config)
    s = Session.open(config, splits, strategy, folder, state, model, t_start)
    return _run(s, lambda: _finetune_if_pending(s, model))


def resume_run(run: str | Path, *, root: str | Path = "saved_models") -> RunResult:
    """Carry an interrupted `train` or `finetune` run on from its last completed epoch.

    `run` is a run folder, or a run id under `root` (the output.dir that holds it). The run
    goes on with the config saved in it and ends with the artifacts of an uninterrupted run.
    """
    t_start = Clock.now()
    folder = RunFolder.find(run, root)
    state = folder.load_resumable()
    config = folder.read_config()
    splits, strategy = _setup(config)
    if state.command == "train":
        with runtime.scope(strategy):
            built = build_model(config)
        s = Session.open(config, splits, strategy, folder, state, built.model, t_start)
        return _run(s, lambda: _train_stages(s, built))
    # A `finetune` run: its last committed model, or the model it started from.
    with runtime.scope(strategy):
        committed = folder.base_model(state) or folder.committed_model(state)
        model = load_classifier(committed or Path(state.source_model or ""))
    s = Session.open(config, splits, strategy, folder, state, model, t_start)
    return _run(s, lambda: _finetune_if_pending(s, model))


def _train_stages(s: Session, built: Built) -> None:
    config = s.config
    # Planned now (one backbone pass may serve both stages), said when stage 2 starts: a
    # stage 1 that fails first (a full disk under its feature cache) never hears of it.
    plan = _plan_stage2(s, built.model, built) if FINETUNE in s.state.stages else None
    # One pass over the frozen backbone for both stages, when stage 2 caches its activations.
    backbone_pass = BackbonePass.for_plan(plan, s.splits.x_pool, Path(config.output.cache_dir))
    if s.state.stage == HEAD:
        # Features only on one device: a strategy trains the full model, replicated.
        inputs = stage1_inputs(
            config,
            s.splits,
            FeatureStore(),
            built,
            allow_cache=s.strategy is None,
            backbone_pass=backbone_pass,
        )
        if inputs.on_features:  # best.keras is the full model, compiled as this stage compiles
            with runtime.scope(s.strategy):
                compile_model(built.model, config, HEAD, _steps(config, s.splits, s.strategy))
        s.run_stage(HEAD, inputs, built.model)
        if inputs.on_features and plan is None:  # tested on features, from the same cache
            assert inputs.frozen is not None  # the pool's pass over the feature extractor
            s.test_features, s.test_features_s, s.test_pass = features_of_test_images(
                config, inputs.frozen, built.weights_used, s.splits.x_test
            )
    _finetune_if_pending(s, built.model, plan, backbone_pass)


def _plan_stage2(s: Session, model: keras.Model, built: Built | None = None) -> Plan:
    """Stage 2's plan; with `built` (a run that has stage 1 ahead), the activations must leave
    room on the disk for stage 1's feature cache, which is written first."""
    x = s.splits.x_pool
    stage1_bytes = None
    if built is not None and s.state.stage == HEAD and s.strategy is None:
        stage1_bytes = partial(feature_cache_bytes, s.config, built, x)
    return plan_stage2(s.config, model, len(x), s.strategy, x, stage1_bytes)


def _finetune_if_pending(
    s: Session,
    model: keras.Model,
    plan: Plan | None = None,
    backbone_pass: BackbonePass | None = None,
) -> None:
    """Stage 2: unfreeze from a named layer; on cached activations of the frozen bottom when
    it can (stage2.py), else the full model on images, recompiled at its learning rate."""
    if s.state.stage != FINETUNE:
        return
    plan = plan or _plan_stage2(s, model)
    if (note := plan.note(len(s.splits.x_pool))) is not None:  # what stage 2 does, as it starts
        progress.say(f"note: {note}")
    unfreeze_from(find_backbone(model), s.config.finetune.unfreeze_from)
    if plan.cached:
        s.start_cached_stage(model)  # the bottom the activations come from, restored on resume
    s.run_stage(FINETUNE, stage2_inputs(s.config, model, s.splits, plan, backbone_pass), model)


def _run(s: Session, stages: Callable[[], None]) -> RunResult:
    """The remaining stages, then the test; SIGINT/SIGTERM end it as a resumable Interrupted.

    The sitting holds its run folder (`claim`): no second process trains it meanwhile, and
    no temporary file outlives the sitting, however it ends.
    """
    with s.folder.claim(), s.signals, s.tracker.sitting():
        try:
            stages()
            return finish(s)
        except KeyboardInterrupt:
            raise s.interrupted() from None
        except Exception as exc:  # a multi_worker peer that died: one line, exit 3
            if (lost := multiworker.lost_peer(exc, s.config.runtime.distribute)) is not None:
                raise lost from None
            raise


def _steps(config: Config, splits: Splits, strategy: Any) -> int:
    """Optimizer steps per epoch: what the schedules and their warmups count in."""
    batch = config.train.batch_size * runtime.replicas(strategy)
    return steps_per_epoch(len(splits.x_train), batch)
