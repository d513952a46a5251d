"""The experiment config, one import away: `from fmnist_tl.config import Config, load_config`.

Parts, each with one job: `fields` (value types, bounds, how a type reads), `backbones` (the
backbone registry), `sections` and `run_sections` (each section's keys: default, bounds,
one-line meaning), `schema` (the whole Config, rules across
sections, one-line errors), `keys` (the key table built from the schema), `loading` (strict
YAML, overrides, the config beside a model, source-prefixed errors) and `space` (the tune.space
grammar and what a search may change). Imports go one way:
fields, backbones <- sections <- run_sections <- schema <- keys, space <- loading.
"""

from __future__ import annotations

from .keys import KeyInfo, key_table
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
    SweepConfig,
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
    "KeyInfo",
    "ModelConfig",
    "OutputConfig",
    "RuntimeConfig",
    "SearchDim",
    "SweepConfig",
    "TrainConfig",
    "TuneConfig",
    "apply_values",
    "check_search",
    "config_beside",
    "key_table",
    "load_config",
    "search_space",
    "validate",
]
