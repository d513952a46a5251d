"""Which seeds an experiment runs, checked before any training: one home for `--repeat`,
`--seeds` and sweep.seeds, all bounded by config.fields (0 .. 2**32-1, NumPy's range)."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config
from ..config.fields import MAX_SEED, consecutive_seeds
from ..config.run_sections import MAX_RUNS_PER_CELL
from ..errors import ConfigError

MIN_RUNS = 2  # with one run the spread is unknown; mean_std would report a misleading 0.0


def following(first: int, n: int, what: str) -> list[int]:
    """first, first+1, ... (n of them), or ConfigError naming `what` when they pass MAX_SEED."""
    try:
        return consecutive_seeds(first, n, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def resolve_seeds(base_seed: int, *, repeat: int | None, seeds: str | None) -> list[int]:
    """The seeds that `--repeat N` (base_seed, base_seed+1, ...) or `--seeds 0,1,2` ask for.

    Raises ConfigError (exit 2) for both options at once or a bad value, before any training.
    """
    if repeat is not None and seeds is not None:
        raise ConfigError(
            "--repeat and --seeds exclude each other: use --repeat N for N consecutive seeds "
            "from the config's seed, or --seeds 0,1,2 to name them"
        )
    if repeat is not None:
        if repeat < MIN_RUNS:
            raise ConfigError(
                f"--repeat: need at least {MIN_RUNS} runs to measure a spread, got {repeat}; "
                "for a single run leave --repeat out"
            )
        if repeat > MAX_RUNS_PER_CELL:  # checked before any list is built
            raise ConfigError(
                f"--repeat: at most {MAX_RUNS_PER_CELL} runs (as sweep.seeds), got {repeat}"
            )
        return check_seeds(following(base_seed, repeat, "--repeat"), "--repeat")
    if seeds is None:
        raise ConfigError("give --repeat N or --seeds S1,S2,...")
    items = [s.strip() for s in seeds.split(",")]
    try:
        parsed = [int(s) for s in items]
    except ValueError:
        raise ConfigError(
            f"--seeds: expected comma-separated integers such as 0,1,2, got {seeds!r}"
        ) from None
    return check_seeds(parsed, "--seeds")


def check_seeds(seeds: Sequence[int], what: str = "seeds") -> list[int]:
    """At least two distinct seeds in 0 .. 2**32-1 (the same seed twice repeats one run)."""
    if len(seeds) < MIN_RUNS:
        raise ConfigError(
            f"{what}: need at least {MIN_RUNS} seeds to measure a spread, got {len(seeds)}"
        )
    if len(seeds) > MAX_RUNS_PER_CELL:
        raise ConfigError(
            f"{what}: at most {MAX_RUNS_PER_CELL} seeds (as sweep.seeds), got {len(seeds)}"
        )
    seeds = [int(s) for s in seeds]
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ConfigError(f"{what}: seeds must be in 0..{MAX_SEED}, got {bad[0]}")
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise ConfigError(
            f"{what}: seed {dupes[0]} appears twice; a repeated seed repeats the same run"
        )
    return seeds


def sweep_seeds(config: Config, seeds: int | None) -> list[int]:
    """seed, seed+1, ... for `--seeds N` (else sweep.seeds), bounded before any list is built."""
    if seeds is None:
        return following(config.seed, config.sweep.seeds, "sweep.seeds")
    if not 1 <= seeds <= MAX_RUNS_PER_CELL:
        raise ConfigError(
            f"--seeds {seeds}: runs per cell must be in 1..{MAX_RUNS_PER_CELL} (as sweep.seeds)"
        )
    return following(config.seed, seeds, "--seeds")
