"""The experiment config, one import away: `from fmnist_tl.config import Config, load_config`.

Three parts, each with one job: `schema` (the sections, their defaults and checks), `loading`
(YAML, `--set`, the config beside a model, source-prefixed errors) and `space` (the tune.space
grammar and what a search may change). Imports go one way: schema <- space <- loading.
"""

from __future__ import annotations

from .loading import config_beside, load_config, validate
from .schema import (
    AugmentConfig,
    CNNConfig,
    Config,
    DataConfig,
    DenseConfig,
    FinetuneConfig,
    HeadConfig,
    ModelConfig,
    OutputConfig,
    RuntimeConfig,
    TrainConfig,
    TuneConfig,
)
from .space import SearchDim, apply_values, check_search, search_space

__all__ = [
    "AugmentConfig",
    "CNNConfig",
    "Config",
    "DataConfig",
    "DenseConfig",
    "FinetuneConfig",
    "HeadConfig",
    "ModelConfig",
    "OutputConfig",
    "RuntimeConfig",
    "SearchDim",
    "TrainConfig",
    "TuneConfig",
    "apply_values",
    "check_search",
    "config_beside",
    "load_config",
    "search_space",
    "validate",
]
