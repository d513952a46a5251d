"""fmnist-tl: transfer-learning experiments on Fashion-MNIST from YAML configs.

The Python API mirrors the CLI: `train(config)`, `finetune(model_path, ...)`, `resume_run(run)`,
`evaluate(model_path, ...)`, `run_repeated(config, seeds)`, `compare_runs(patterns, ...)`,
`tune(config, trials)` and `predict_images(model_path, paths)` return results; the CLI only
prints them.
"""

from __future__ import annotations

import os
from typing import Any

# Before TensorFlow is imported: use its oneDNN CPU kernels. TensorFlow enables them by default
# only on some x86 CPUs; on this project's 2-core AMD VM they trained cnn_best 1.5x faster (best
# of three alternating runs, scripts/bench_onednn.py; README, "Speed and memory").
# TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_config",
    "train",
    "finetune",
    "resume_run",
    "evaluate",
    "run_repeated",
    "compare_runs",
    "predict_images",
    "tune",
]


def __getattr__(name: str) -> Any:
    # Lazy: `fmnist --help` and config validation must not pay for importing TensorFlow.
    if name == "load_config":
        from .config import load_config

        return load_config
    if name in ("train", "finetune", "resume_run"):
        from . import trainer as _train

        return getattr(_train, name)
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    if name == "run_repeated":
        from .repeat import run_repeated

        return run_repeated
    if name == "compare_runs":
        from .compare import compare_runs

        return compare_runs
    if name == "predict_images":
        from .predict import predict_images

        return predict_images
    if name == "tune":
        from .tuning import tune

        return tune
    raise AttributeError(name)
