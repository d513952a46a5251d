"""fmnist-tl: transfer-learning experiments on Fashion-MNIST from YAML configs.

The Python API mirrors the CLI: `train(config)`, `finetune(model_path, ...)`,
`evaluate(model_path, ...)` return results; the CLI only prints them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_config", "train", "finetune", "evaluate"]


def __getattr__(name: str) -> Any:
    # Lazy: `fmnist --help` and config validation must not pay for importing TensorFlow.
    if name == "load_config":
        from .config import load_config

        return load_config
    if name in ("train", "finetune"):
        from . import trainer as _train

        return getattr(_train, name)
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(name)
