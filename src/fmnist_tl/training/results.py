"""The end of a run: the best checkpoint tested, and every result of it written.

evaluation.json and its pictures, metrics.json (records.RunMetrics), history.png, the test
scores and HParams in TensorBoard, latest.keras / best.keras in output.dir (publish.py), and
the run's MLflow run completed from those files (output.tracking).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import keras

from .. import atomic, tfenv
from ..config import Config
from ..config.backbones import BACKBONES
from ..errors import MissingFileError
from ..machine import cpu_seconds, machine, process_seconds, versions
from ..models import litert
from ..models.backbones import imagenet_file
from ..models.frozen import FrozenPass
from ..models.head import head_of
from ..models.inference import infer
from ..records import FINETUNE, HEAD, DataCounts, RunMetrics, RuntimeInfo, Scores
from ..reporting.plots import run_title
from . import hparams, runtime
from .fit import monitor_for
from .publish import publish, test_setup
from .session import Session
from .state import RunState


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    model_path: Path
    metrics: RunMetrics
    history: list[dict[str, Any]] = field(default_factory=list)
    published: str | None = None  # what became of <output.dir>/best.keras, in one line


def finish(s: Session) -> RunResult:
    """Evaluate the best checkpoint on the test set, write metrics, publish best.keras."""
    config, splits, folder = s.config, s.splits, s.folder
    model_path = folder.best
    if not model_path.is_file():
        monitor = monitor_for(config, len(splits.x_val) > 0)
        raise MissingFileError(f"{folder.dir}: no epoch produced a finite {monitor}; nothing saved")
    t_test = time.perf_counter()
    model = keras.models.load_model(model_path, compile=False)
    views = frozen = None
    extra = {"model": str(model_path), "data_source": splits.source}
    if s.test_features is not None:  # the head on the test features is the model on the images
        head = head_of(model)
        views = [infer(head, f, label="testing") for f in s.test_features]
        extra["frozen_pass"] = s.test_pass
    else:  # the model on the test images, through the run's frozen pass
        n_images = len(splits.x_test) * (2 if config.augment.test_flip else 1)
        setup = runtime.frozen_setup(config, s.strategy)
        frozen = FrozenPass(model, setup, n_images, what="the test pass")
    evaluation = folder.write_evaluation(
        model,
        splits.x_test,
        splits.y_test,
        test_flip=config.augment.test_flip,
        extra=extra,
        views=views,
        frozen=frozen,
    )
    metrics = _metrics(s, evaluation)
    t_reports = time.perf_counter()
    hparams.log_run(config, metrics)  # TensorBoard's HParams dashboard lists it
    s.tensorboard.write_test(evaluation, s.ckpt.best_epoch)  # test scores, confusion image
    title = run_title(folder.name, metrics.test.accuracy, len(splits.y_test))
    folder.write_history_plot(s.history.rows, title)
    published = None
    if config.output.update_best:  # output.dir, wherever a resumed run is continued from
        setup = test_setup(splits, config.augment.test_flip)
        published = publish(folder, metrics.test.accuracy, setup)
    metrics.timings = _timings(s, t_reports - t_test, time.perf_counter() - t_reports)
    metrics.mlflow_run_id = s.tracker.run_id
    folder.write_metrics(metrics)
    s.complete()
    s.tracker.finish(folder)  # the MLflow run filled from the files just written
    return RunResult(folder.name, folder.dir, model_path, metrics, s.history.rows, published)


def _timings(s: Session, test_s: float, reports_s: float) -> dict[str, float]:
    """Where the run's wall time went, for the speed read-out (metrics.json); startup_s,
    process_s, cpu_s and sitting_cpu_s are this sitting's."""
    stages = {x.name: x for x in s.state.summaries}
    features = sum(x.feature_seconds or 0.0 for x in stages.values())
    process = process_seconds()
    fitted = sum(x.wall_time_s for x in stages.values())
    accounted = fitted + s.test_features_s + test_s + reports_s
    parts = {
        "startup_s": process - (time.perf_counter() - s.started.wall) if process else None,
        "features_s": features,  # the pool's: training and validation images
        "test_features_s": s.test_features_s,  # the test images', when tested on features
        "head_s": stages[HEAD].wall_time_s - features if HEAD in stages else 0.0,
        "finetune_s": stages[FINETUNE].wall_time_s if FINETUNE in stages else 0.0,
        "test_s": test_s,
        "reports_s": reports_s,
        # data loading, model building, the run folder: what the others leave, over every
        # sitting (the stages' fit times are, so a resumed run's share is never negative)
        "prepare_s": s.elapsed() - accounted,
        "process_s": process,
        "cpu_s": cpu_seconds(),  # the process's, up to here (process_s is its wall age)
        "run_cpu_s": s.cpu_used(),  # the run's, over every sitting (as wall_time_s)
        "sitting_cpu_s": cpu_seconds() - s.started.cpu,  # this sitting's alone
    }
    return {k: round(v, 3) for k, v in parts.items() if v is not None}


def _weights_sha256(config: Config, state: RunState) -> str | None:
    """The SHA-256 of the weights a run loaded (a weights file, Keras's cached ImageNet file,
    or the model a finetune started from), so a result names them."""
    used, m = state.weights_used, config.model
    if used == "imagenet":
        path: str | Path | None = imagenet_file(BACKBONES[m.backbone], int(m.input_size or 0))
    else:
        path = used.removeprefix("file ") if used.startswith("file ") else state.source_model
    return atomic.sha256_file(path) if path and Path(path).is_file() else None


def _metrics(s: Session, evaluation: dict[str, Any]) -> RunMetrics:
    config, splits = s.config, s.splits
    replicas = runtime.replicas(s.strategy)
    return RunMetrics(
        run_id=s.folder.name,
        config_name=config.output.name,
        created=datetime.now().isoformat(timespec="seconds"),
        backbone=config.model.backbone,
        input_size=config.model.input_size,
        resize_method=config.model.resize_method,
        weights_requested=config.model.weights,
        weights_used=s.state.weights_used,
        weights_sha256=_weights_sha256(config, s.state),
        seed=config.seed,
        test=Scores.from_dict(evaluation),
        test_pass=evaluation.get("frozen_pass"),
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
            frozen_pass=config.runtime.frozen_pass,
            xnnpack=f"{litert.runtime()}, {litert.threads()} threads",
        ),
        versions=versions(),
        machine=machine(),
    )
