"""One experiment, several seeds: a group folder with mean ± sample std over the runs.

One run on Fashion-MNIST says little: seeds alone move test accuracy by a few tenths of a
percent, as much as many of the choices people compare. `run_repeated` trains the same config
once per seed (each a normal run folder under output.dir) and writes a group folder beside them:

    <output.dir>/<name>-x<N>-<timestamp>/repeat.json   (read by `reporting.runs.collect_runs`)
    <output.dir>/<name>-x<N>-<timestamp>/repeat.md     (the same numbers as a Markdown table)

The group folder is written only after every run finished, so it never names a missing run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import atomic
from .cli.render import repeat_markdown
from .config.fields import MAX_SEED  # NumPy's and Keras's seeding accept 0 .. 2**32 - 1
from .config.sections import MAX_RUNS_PER_CELL  # sweep.seeds' bound: the same for a group
from .errors import ConfigError
from .reporting.runs import mean_std

if TYPE_CHECKING:
    from .config import Config
    from .training.trainer import RunResult

MIN_RUNS = 2  # with one run the spread is unknown; mean_std would report a misleading 0.0


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
        if repeat > MAX_RUNS_PER_CELL:  # checked before range() builds anything
            raise ConfigError(
                f"--repeat: at most {MAX_RUNS_PER_CELL} runs (as sweep.seeds), got {repeat}"
            )
        if base_seed + repeat - 1 > MAX_SEED:
            raise ConfigError(
                f"--repeat {repeat}: seeds from seed {base_seed} pass {MAX_SEED}, the largest "
                "seed NumPy takes; lower seed or --repeat"
            )
        return check_seeds(range(base_seed, base_seed + repeat), "--repeat")
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


@dataclass
class RepeatRun:
    """One member run of a group, as repeat.json's per_run lists it."""

    run_id: str
    seed: int
    accuracy: float  # test
    loss: float
    wall_time_s: float


@dataclass
class RepeatSummary:
    """A finished group: what repeat.json holds (`to_dict`), and where it lies."""

    group_dir: Path
    config_name: str
    created: str
    per_run: list[RepeatRun]
    accuracy: tuple[float, float]  # mean and sample std of the runs' test accuracy
    loss: tuple[float, float]

    @property
    def group_id(self) -> str:
        return self.group_dir.name

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.per_run]

    @property
    def n(self) -> int:
        return len(self.per_run)

    @property
    def json_path(self) -> Path:
        return self.group_dir / "repeat.json"

    @property
    def markdown_path(self) -> Path:
        return self.group_dir / "repeat.md"

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "config_name": self.config_name,
            "created": self.created,
            # Member run folders sit beside this group folder, in output.dir, as train() left them.
            "runs": [r.run_id for r in self.per_run],
            "seeds": self.seeds,
            "n": self.n,
            "std_ddof": 1,  # sample standard deviation: the spread a new seed would show
            "accuracy": dict(zip(("mean", "std"), self.accuracy, strict=True)),
            "loss": dict(zip(("mean", "std"), self.loss, strict=True)),
            "per_run": [asdict(r) for r in self.per_run],
        }


def run_repeated(
    config: Config,
    seeds: Sequence[int],
    *,
    on_run: Callable[[int, int, RunResult], None] | None = None,
) -> RepeatSummary:
    """Train `config` once per seed, then write repeat.json and repeat.md in a group folder.

    Args:
        config: the experiment; it is not modified (each run gets a copy with its seed).
        seeds: two or more distinct seeds.
        on_run: called as on_run(index, seed, RunResult) after each run, e.g. to print progress.
    """
    # Imported here so that option errors are reported without paying for TensorFlow.
    from .training.runfolder import new_folder
    from .training.trainer import train

    seeds = check_seeds(seeds)
    per_run = []
    for i, seed in enumerate(seeds):
        run_config = config.model_copy(deep=True)
        run_config.seed = seed  # validated assignment
        result = train(run_config)
        m = result.metrics
        scores = (float(m.test.accuracy), float(m.test.loss), float(m.wall_time_s))
        per_run.append(RepeatRun(result.run_id, seed, *scores))
        if on_run is not None:
            on_run(i, seed, result)

    name = f"{config.output.name}-x{len(seeds)}"
    summary = RepeatSummary(
        group_dir=new_folder(Path(config.output.dir), name, what="group"),
        config_name=config.output.name,
        created=datetime.now().isoformat(timespec="seconds"),
        per_run=per_run,
        accuracy=mean_std([r.accuracy for r in per_run]),
        loss=mean_std([r.loss for r in per_run]),
    )
    atomic.write_json(summary.json_path, summary.to_dict())
    atomic.write_text(summary.markdown_path, repeat_markdown(summary))
    return summary
