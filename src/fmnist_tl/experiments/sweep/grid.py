"""A sweep's plan: the grid's cells, the seeds, and each run's config, all checked up front.

The grid comes from the config's `sweep:` section and `--grid key=v1,v2` flags (a flag
replaces the section's values for its key). Keys are dotted config keys, checked against the
schema the way `--set` and `tune.space` check them; each value is typed as `--set` types it
and validated in place, and then every cell as a whole, so a bad grid fails before any work.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ... import tracking
from ...config import Config, apply_values
from ...config.fields import is_text_field
from ...config.schema import field_annotation
from ...errors import ConfigError
from ...paths import check_run_outputs
from ..seeds import sweep_seeds

# The most runs (cells x seeds) a sweep plans unless told more (`--max-runs`, `max_runs`):
# at a minute a run, 10,000 runs are a week of one machine, and the plan of a million cells
# alone took minutes and 1.6 GB. A larger grid stops before any cell is built.
MAX_RUNS = 10_000

# Keys a sweep may not move, with the reason.
FIXED = {
    "seed": "seeds are --seeds (sweep.seeds): every cell runs with the same seeds",
    "sweep": "they are the sweep's own settings",
    "tune": "they are `fmnist tune`'s settings",
    "output": "they say where results go; every run of a study goes into the study folder",
}


@dataclass(frozen=True)
class Cell:
    """One combination of grid values."""

    index: int  # 1-based, in grid order
    values: dict[str, Any]

    @property
    def id(self) -> str:
        return f"c{self.index:02d}"


@dataclass
class SweepPlan:
    """What a sweep runs: every cell once per seed, each a normal run."""

    base: Config
    grid: dict[str, list[Any]]
    cells: list[Cell]
    seeds: list[int]

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    @property
    def name(self) -> str:
        return f"{self.base.output.name or 'default'}-sweep"

    @property
    def total(self) -> int:
        return len(self.cells) * len(self.seeds)

    def run_name(self, cell: Cell, seed: int) -> str:
        return f"{self.base.output.name or 'default'}-{cell.id}-s{seed}"

    def key(self) -> str:
        """A digest of what the study measures: a rerun with the same key continues it."""
        raw = self.base.to_dict()
        for section in ("output", "sweep"):
            raw.pop(section, None)
        raw.pop("seed", None)
        spec = {"config": raw, "grid": self.grid, "seeds": self.seeds}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def run_config(self, cell: Cell, seed: int, study_dir: Path) -> Config:
        """The cell's config for one seed: a normal run inside the study folder."""
        config = apply_values(self.base, cell.values)
        config.output.pin_tracking()  # the study's store and experiment, before dir and name
        config.seed = seed
        config.output.dir = str(study_dir)
        config.output.name = self.run_name(cell, seed)
        config.output.update_best = False  # the study ranks its cells; no run is "the best"
        config.output.log_dir = str(Path(self.base.output.log_dir) / study_dir.name)
        config.sweep.grid = self.grid  # saved with the run: its swept keys (HParams)
        config.sweep.seeds = len(self.seeds)
        return config


def plan_sweep(
    config: Config,
    grid_flags: list[str] | None,
    seeds: int | None,
    max_runs: int | None = None,
) -> SweepPlan:
    """The checked plan for `config`'s sweep section and `--grid` flags (ConfigError); more
    than `max_runs` (default MAX_RUNS) runs, cells x seeds, stop before any cell is built."""
    raw_grid: dict[str, Any] = dict(config.sweep.grid)
    flagged: set[str] = set()
    for item in grid_flags or []:
        key, values = parse_grid_flag(item)
        if key in flagged:  # the last would silently win: a typo, or two halves of one list
            raise ConfigError(
                f"--grid {key} is given twice; give each key once, with all its values: "
                f"--grid {key}=V1,V2,..."
            )
        flagged.add(key)
        raw_grid[key] = values
    if not raw_grid:
        raise ConfigError(
            "nothing to sweep: give --grid KEY=V1,V2 (e.g. --grid model.resize_method="
            "nearest,bilinear) or a sweep: section with a grid"
        )
    chosen = sweep_seeds(config, seeds)
    check_size(raw_grid, len(chosen), MAX_RUNS if max_runs is None else max_runs)
    grid = {key: check_values(config, key, values) for key, values in raw_grid.items()}
    cells = [
        Cell(i, dict(zip(grid, combo, strict=True)))
        for i, combo in enumerate(itertools.product(*grid.values()), 1)
    ]
    for cell in cells:  # each value was valid alone; a combination may clash
        try:
            apply_values(config, cell.values)
        except ConfigError as exc:
            raise ConfigError(f"sweep cell {_describe(cell.values)}: {exc}") from None
    # The study folder, its runs' logs and the feature cache: before any folder is made.
    check_run_outputs(config.output, publish=False)
    tracking.require(config.output)
    return SweepPlan(config, grid, cells, chosen)


def check_size(grid: dict[str, Any], seeds: int, max_runs: int) -> None:
    """At most `max_runs` runs: counted from the lengths alone, before anything is built."""
    cells = math.prod(len(v) if isinstance(v, list) else 1 for v in grid.values())
    if cells * seeds > max_runs:
        sizes = " x ".join(str(len(v) if isinstance(v, list) else 1) for v in grid.values())
        raise ConfigError(
            f"the grid has {cells:,} cells ({sizes} values) x {seeds} seeds = "
            f"{cells * seeds:,} runs, more than --max-runs {max_runs:,}; sweep fewer values, "
            "or pass a larger --max-runs if you mean it"
        )


def parse_grid_flag(item: str) -> tuple[str, list[Any]]:
    """`key=v1,v2,...` -> (key, values), each value typed as `--set` types it."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise ConfigError(
            f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid model.input_size=64,96"
        )
    annotation = check_key(key, f"--grid {item!r}")
    if is_text_field(annotation):  # strings stay verbatim, as with --set
        return key, [v.strip() for v in text.split(",")]
    try:  # YAML flow syntax: 64,96 or [8,16],[16,32] or true,false
        values = yaml.safe_load(f"[{text}]")
    except yaml.YAMLError:
        raise ConfigError(f"--grid {item!r}: cannot parse the values {text!r}") from None
    except RecursionError:
        raise ConfigError(f"--grid {key}: the values are nested too deeply to read") from None
    return key, list(values)


def check_key(key: str, label: str) -> Any:
    """The schema annotation of a sweepable dotted key, or ConfigError saying why not."""
    parts = key.split(".")
    if parts[0] in FIXED:
        raise ConfigError(f"{label}: {parts[0]} cannot be swept ({FIXED[parts[0]]})")
    annotation = field_annotation(parts, label)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise ConfigError(
            f"{label}: {key} is a section, not a value; sweep keys inside it: "
            f"{', '.join(f'{key}.{f}' for f in annotation.model_fields)}"
        )
    return annotation


def check_values(config: Config, key: str, values: Any) -> list[Any]:
    """Each value of one grid key, validated in place in `config`."""
    check_key(key, f"sweep.grid: {key}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep.grid: {key}: give a non-empty list of values, got {values!r}")
    seen: dict[str, Any] = {}  # each value as the config holds it (typed) -> as given
    for value in values:
        try:
            typed = _value_at(apply_values(config, {key: value}), key)
        except ConfigError as exc:
            raise ConfigError(
                f"sweep.grid: {key}: {value!r} is not accepted ({exc}); sweep only values the "
                "key accepts"
            ) from None
        same = json.dumps(typed, sort_keys=True, default=str)
        if same in seen:  # 0.1 and 1e-1, 64 and 64.0: one value, so one cell twice
            first = seen[same]
            twice = (
                f"{first!r} and {value!r} are" if repr(first) != repr(value) else f"{value!r} is"
            )
            raise ConfigError(
                f"sweep.grid: {key}: {twice} the same value ({typed!r}) given twice; "
                "give each value once"
            )
        seen[same] = value
    return list(values)


def _value_at(config: Config, key: str) -> Any:
    """The typed value at a dotted key of a validated config (a section as a dict)."""
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node.model_dump(mode="json") if isinstance(node, BaseModel) else node


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
