"""tune.space: the grammar of a search space and tuning's rules about what may be searched.

A space maps dotted config keys to a list of choices or a range {min, max, step?, log?}.
`search_space` parses it and checks that every choice and both ends of every range validate
in place in the config, so a bad space fails when the config is loaded, not trials later.
`apply_values` builds each trial's config. This lives beside the schema, not in it: the schema
says what one config is; which keys a search may move, and why not the others, is tuning's.
"""

from __future__ import annotations

import copy
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import ConfigError
from .backbones import BACKBONES
from .fields import MAX_TRIALS, members
from .schema import Config, field_annotation, parse, shown

# Keys under these are errors, with the reason.
UNTUNABLE = {
    "tune": "they are the search's own settings",
    "data": "the data and its validation split are what every trial is scored on",
    "output": "they say where results go, not how the model learns",
    "runtime": "they change speed, not the model",
    "seed": "picking the luckiest seed measures noise, not a better setting",
    "finetune": "trials score stage 1 only, so stage-2 settings never change a score",
}
RANGE_KEYS = ("min", "max", "step", "log")


@dataclass(frozen=True)
class SearchDim:
    """One tune.space entry: a choice among values, or an integer or float range."""

    key: str  # dotted config key, e.g. model.head.units
    kind: Literal["choice", "int", "float"]
    values: tuple[Any, ...] = ()  # choice: YAML values, any type the key accepts
    low: float = 0.0  # ranges: min and max, both included (a float range never hits max)
    high: float = 0.0
    step: float | None = None
    log: bool = False  # sample uniformly in log space


def search_space(config: Config) -> list[SearchDim]:
    """tune.space, parsed and checked (ConfigError): each choice and each end of each range
    must validate in place in this config, typed exactly as `--set` types a value."""
    if config.tune.epochs is not None and "train.epochs" in config.tune.space:
        raise ConfigError(
            "tune.epochs: train.epochs is tuned in tune.space, so tune.epochs must be null "
            "(the sampled train.epochs is each trial's epoch count)"
        )
    base = _trial_base(config)
    dims = []
    for key, spec in config.tune.space.items():
        dim = _search_dim(str(key), spec)
        if dim.kind == "choice":
            samples = [("choice", value) for value in dim.values]
        else:
            cast = int if dim.kind == "int" else float
            samples = [("min", cast(dim.low)), ("max", cast(dim.high))]
        for label, value in samples:
            try:
                _with_values(config, {**base, dim.key: value})
            except ConfigError as exc:
                raise ConfigError(
                    f"tune.space: {dim.key}: {label} {shown(value)} is not accepted ({exc}); "
                    "search only values the key accepts"
                ) from None
        dims.append(dim)
    return dims


def _trial_base(config: Config) -> dict[str, Any]:
    """What every trial sets before its sampled values: tune.epochs as its train.epochs."""
    if config.tune.epochs is None:
        return {}
    base = {"train.epochs": config.tune.epochs}
    try:
        _with_values(config, base)
    except ConfigError as exc:
        raise ConfigError(
            f"tune.epochs: {config.tune.epochs} cannot be each trial's train.epochs ({exc})"
        ) from None
    return base


def check_search(config: Config, trials: int | None = None) -> int:
    """How many trials `fmnist tune` runs; ConfigError when this config cannot be searched."""
    if not config.tune.space:
        raise ConfigError(
            "tune.space is empty, so there is nothing to search; add a tune: section with keys "
            "to search, e.g. `space: {model.head.dropout: {min: 0.0, max: 0.5}}` (README: Tuning)"
        )
    if config.data.val_split == 0:
        raise ConfigError(
            "data.val_split: 0 leaves no validation split, and tune scores every trial on it; "
            "set data.val_split above 0 (e.g. 0.1)"
        )
    if config.runtime.distribute != "none":
        raise ConfigError(
            f"runtime.distribute: {config.runtime.distribute!r}: fmnist tune runs its trials in "
            "one process; set runtime.distribute=none"
        )
    n = config.tune.trials if trials is None else trials
    if not 1 <= n <= MAX_TRIALS:
        raise ConfigError(f"--trials {n}: run 1 to {MAX_TRIALS} trials")
    return n


def apply_values(config: Config, values: dict[str, Any]) -> Config:
    """A copy of `config` with dotted-key values set, validated as a whole (ConfigError).

    The copy passes the same checks as a loaded config, its tune.space included, so a trial's
    config (and best.yaml, written from one) is one that `load_config` accepts. A tuned backbone
    brings its own input_size and unfreeze_from unless the config had moved them off the old
    backbone's defaults.
    """
    result = _with_values(config, values)
    search_space(result)
    return result


def _with_values(config: Config, values: dict[str, Any]) -> Config:
    """`apply_values` without the tune.space check (which applies values itself)."""
    raw = config.to_dict()
    backbone = values.get("model.backbone", config.model.backbone)
    if backbone != config.model.backbone and config.model.backbone in BACKBONES:
        old = BACKBONES[config.model.backbone]
        if raw["model"]["input_size"] == old.default_size:
            raw["model"]["input_size"] = None
        if raw["finetune"]["unfreeze_from"] == old.default_unfreeze:
            raw["finetune"]["unfreeze_from"] = None
    for key, value in values.items():
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)
    return parse(raw)


def _search_dim(key: str, spec: Any) -> SearchDim:
    """One tune.space entry checked against the schema: a tunable value, then its spec."""
    where = f"tune.space: {key}"
    parts = key.split(".")
    if parts[0] in UNTUNABLE:
        what = "seed" if parts[0] == "seed" else f"{parts[0]}.* keys"
        raise ConfigError(
            f"{where}: {what} cannot be tuned ({UNTUNABLE[parts[0]]}); tune model.*, augment.* "
            "or train.* keys"
        )
    annotation = field_annotation(parts, "tune.space")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise ConfigError(
            f"{where}: this is a section, not a value; tune keys inside it: "
            f"{', '.join(f'{key}.{f}' for f in annotation.model_fields)}"
        )
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: the list of choices is empty; give at least one value")
        return SearchDim(key, "choice", values=tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: give a list of choices (e.g. [128, 256]) or a range "
            f"(e.g. {{min: 0.0, max: 0.5}}), got {spec!r}"
        )
    return _range_dim(key, spec, _number_kind(annotation))


def _range_dim(key: str, spec: dict[Any, Any], kind: str | None) -> SearchDim:
    """A {min, max, step?, log?} range; integers only where the key takes integers."""
    where = f"tune.space: {key}"
    unknown = [str(k) for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown range key {unknown[0]!r}; a range takes min and max, and "
            "optionally step or log: true"
        )
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: a range needs both min and max, got {spec!r}")
    low, high = _range_number(spec["min"], where, "min"), _range_number(spec["max"], where, "max")
    step = None if spec.get("step") is None else _range_number(spec["step"], where, "step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{where}: min {low} is above max {high}")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be above 0, got {step}")
    if log and step is not None:
        raise ConfigError(f"{where}: give step or log: true, not both")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs min above 0, got {low}")
    integers = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    if kind == "int" and not integers:
        raise ConfigError(f"{where}: this key takes integers; give integer min, max and step")
    dim_kind: Literal["int", "float"] = "int" if integers and kind != "float" else "float"
    return SearchDim(key, dim_kind, low=low, high=high, step=step, log=log)


def _range_number(value: Any, where: str, name: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    return value


def _number_kind(annotation: Any) -> str | None:
    """For a range: "float" for a float key, "int" for an integer key, None for others."""
    kinds = members(annotation)
    if any(typing.get_origin(kind) is Literal for kind in kinds):
        return None
    if float in kinds:
        return "float"
    if int in kinds:
        return "int"
    return None
