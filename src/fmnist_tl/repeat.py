"""One experiment, several seeds: a group folder with mean ± sample std over the runs.

One run on Fashion-MNIST says little: seeds alone move test accuracy by a few tenths of a
percent, as much as many of the choices people compare. `run_repeated` trains the same config
once per seed (each a normal run folder under output.dir) and writes a group folder beside them:

    <output.dir>/<name>-x<N>-<timestamp>/repeat.json   (read by `report.collect_runs`)
    <output.dir>/<name>-x<N>-<timestamp>/repeat.md     (the same numbers as a Markdown table)

The group folder is written only after every run finished, so it never names a missing run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from . import atomic
from .config import Config
from .errors import ConfigError, MissingFileError
from .report import mean_std

MAX_SEED = 2**32 - 1  # NumPy's and Keras's seeding accept 0 .. 2**32 - 1
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
        chosen = list(range(base_seed, base_seed + repeat))
        return check_seeds(chosen, "--repeat")
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
    seeds = [int(s) for s in seeds]
    if len(seeds) < MIN_RUNS:
        raise ConfigError(
            f"{what}: need at least {MIN_RUNS} seeds to measure a spread, got {len(seeds)}"
        )
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ConfigError(f"{what}: seeds must be in 0..{MAX_SEED}, got {bad[0]}")
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise ConfigError(
            f"{what}: seed {dupes[0]} appears twice; a repeated seed repeats the same run"
        )
    return seeds


def run_repeated(
    config: Config,
    seeds: Sequence[int],
    *,
    on_run: Callable[[int, int, Any], None] | None = None,
) -> dict[str, Any]:
    """Train `config` once per seed, then write repeat.json and repeat.md in a group folder.

    Args:
        config: the experiment; it is not modified (each run gets a copy with its seed).
        seeds: two or more distinct seeds.
        on_run: called as on_run(index, seed, RunResult) after each run, e.g. to print progress.

    Returns the content of repeat.json plus "group_dir", "json_path" and "markdown_path".
    """
    # Imported here so that option errors are reported without paying for TensorFlow.
    from .trainer import train

    seeds = check_seeds(seeds)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    per_run = []
    for i, seed in enumerate(seeds):
        run_config = config.model_copy(deep=True)
        run_config.seed = seed  # validated assignment
        result = train(run_config)
        per_run.append(
            {
                "run_id": result.run_id,
                "seed": seed,
                "accuracy": float(result.metrics["test"]["accuracy"]),
                "loss": float(result.metrics["test"]["loss"]),
                "wall_time_s": float(result.metrics["wall_time_s"]),
            }
        )
        if on_run is not None:
            on_run(i, seed, result)

    acc_mean, acc_std = mean_std([r["accuracy"] for r in per_run])
    loss_mean, loss_std = mean_std([r["loss"] for r in per_run])
    group_dir = _new_group_dir(
        Path(config.output.dir), f"{config.output.name}-x{len(seeds)}-{stamp}"
    )
    summary: dict[str, Any] = {
        "group_id": group_dir.name,
        "config_name": config.output.name,
        "created": datetime.now().isoformat(timespec="seconds"),
        # Member run folders sit beside this group folder, in output.dir, as train() left them.
        "runs": [r["run_id"] for r in per_run],
        "seeds": list(seeds),
        "n": len(per_run),
        "std_ddof": 1,  # sample standard deviation: the spread a new seed would show
        "accuracy": {"mean": acc_mean, "std": acc_std},
        "loss": {"mean": loss_mean, "std": loss_std},
        "per_run": per_run,
    }
    json_path, md_path = group_dir / "repeat.json", group_dir / "repeat.md"
    atomic.write_json(json_path, summary)
    atomic.write_text(md_path, repeat_markdown(summary))
    return {
        **summary,
        "group_dir": str(group_dir),
        "json_path": str(json_path),
        "markdown_path": str(md_path),
    }


def repeat_markdown(summary: dict[str, Any]) -> str:
    """Markdown: one row per run, then the mean ± sample std row."""
    acc, loss = summary["accuracy"], summary["loss"]
    wall = sum(r["wall_time_s"] for r in summary["per_run"]) / len(summary["per_run"])
    lines = [
        f"# {summary['group_id']}",
        "",
        f"Config `{summary['config_name']}`, {len(summary['per_run'])} runs with seeds "
        f"{', '.join(str(s) for s in summary['seeds'])}; ± is the sample standard deviation.",
        "",
        "| run | seed | test accuracy | test loss | wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in summary["per_run"]:
        lines.append(
            f"| {r['run_id']} | {r['seed']} | {r['accuracy']:.4f} | {r['loss']:.4f} "
            f"| {r['wall_time_s']:.1f} |"
        )
    lines.append(
        f"| **mean ± std** | | {acc['mean']:.4f} ± {acc['std']:.4f} "
        f"| {loss['mean']:.4f} ± {loss['std']:.4f} | {wall:.1f} |"
    )
    return "\n".join(lines) + "\n"


def _new_group_dir(root: Path, base: str) -> Path:
    """A fresh folder <root>/<base>[-k]; never reuses an existing one."""
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise MissingFileError(
                f"output.dir: cannot write the group folder in {root}: {exc.strerror}"
            ) from None
    raise MissingFileError(f"output.dir: too many groups named {base} in {root}")
