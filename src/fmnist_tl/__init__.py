"""fmnist-tl: transfer-learning experiments on Fashion-MNIST from YAML configs.

The Python API mirrors the CLI: `train(config)`, `finetune(model_path, ...)`, `resume_run(run)`,
`evaluate(model_path, ...)`, `run_repeated(config, seeds)`, `compare_runs(patterns, ...)`,
`tune(config, trials)`, `run_sweep(config, grid, seeds)`, `predict_images(model_path, paths)`
and `track_runs(paths)` (finished runs into MLflow) return results; the CLI only prints them.
"""

from __future__ import annotations

import importlib
from typing import Any

# First: TensorFlow's environment, and Keras's and matplotlib's folders when HOME cannot hold
# them, before anything loads those libraries.
from . import libdirs, tfenv  # noqa: F401
from ._version import __version__

libdirs.install()

# Lazy: `fmnist --help` and config validation must not pay for importing TensorFlow.
_API = {
    "load_config": "config",
    "train": "training.trainer",
    "finetune": "training.trainer",
    "resume_run": "training.trainer",
    "evaluate": "evaluation.report",
    "run_repeated": "experiments.repeat",
    "compare_runs": "reporting.compare",
    "predict_images": "evaluation.predict",
    "tune": "experiments.tune.search",
    "export_model": "evaluation.export",
    "run_sweep": "experiments.sweep",
    "track_runs": "tracking.backfill",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
