"""One experiment, several seeds: a group folder with mean ± sample std over the runs.

One run on Fashion-MNIST says little: seeds alone move test accuracy by a few tenths of a
percent, as much as many of the choices people compare. `run_repeated` trains the same config
once per seed (each a normal run folder under output.dir) and writes a group folder beside them:

    <output.dir>/<name>-x<N>-<timestamp>/repeat.json   (read by `reporting.runs.collect_runs`)
    <output.dir>/<name>-x<N>-<timestamp>/repeat.md     (the same numbers as a Markdown table)

Plan (the seeds, checked) -> run each (a normal `train`) -> summarise (the group folder, written
only after every run finished, so it never names a missing run). With output.tracking, the
group is a parent MLflow run, each seed's run its child, the mean ± std its metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import atomic, tracking
from ..config import Config
from ..layout import REPEAT_JSON, REPEAT_MD
from ..paths import fresh_folder
from ..reporting.tables import mean_std
from ..training.trainer import RunResult, train
from .seeds import check_seeds


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
        return self.group_dir / REPEAT_JSON

    @property
    def markdown_path(self) -> Path:
        return self.group_dir / REPEAT_MD

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


@dataclass
class RepeatPlan:
    """One config, several seeds: each a normal run under output.dir."""

    config: Config
    seeds: list[int]

    def run_config(self, seed: int) -> Config:
        """The config of one run: a copy with its seed (the plan's config is not modified)."""
        config = self.config.model_copy(deep=True)
        config.seed = seed  # validated assignment
        return config


def plan_repeat(config: Config, seeds: Sequence[int]) -> RepeatPlan:
    """Two or more distinct seeds, checked before any training (ConfigError)."""
    tracking.require(config.output)
    return RepeatPlan(config, check_seeds(seeds))


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
    plan = plan_repeat(config, seeds)
    per_run = []
    name = f"{config.output.name}-x{len(plan.seeds)}"
    with tracking.study(config, "repeat", name, varying=["seed"]) as study:  # seeds: children
        for i, seed in enumerate(plan.seeds):
            with study.child({"fmnist.seed": seed}):
                result = train(plan.run_config(seed))
            m = result.metrics
            scores = (float(m.test.accuracy), float(m.test.loss), float(m.wall_time_s))
            per_run.append(RepeatRun(result.run_id, seed, *scores))
            if on_run is not None:
                on_run(i, seed, result)
        summary = summarise(plan, per_run)
        study.done(**tracking.repeat_summary(summary.group_dir))
    return summary


def summarise(plan: RepeatPlan, per_run: list[RepeatRun]) -> RepeatSummary:
    """The group folder beside the runs: repeat.json and repeat.md."""
    name = f"{plan.config.output.name}-x{len(plan.seeds)}"
    summary = RepeatSummary(
        group_dir=fresh_folder(Path(plan.config.output.dir), name, what="group"),
        config_name=str(plan.config.output.name),
        created=datetime.now().isoformat(timespec="seconds"),
        per_run=per_run,
        accuracy=mean_std([r.accuracy for r in per_run]),
        loss=mean_std([r.loss for r in per_run]),
    )
    atomic.write_json(summary.json_path, summary.to_dict())
    atomic.write_text(summary.markdown_path, repeat_markdown(summary))
    return summary


def repeat_markdown(summary: RepeatSummary) -> str:
    """repeat.md: one row per run, then the mean ± sample std row."""
    (acc, acc_std), (loss, loss_std) = summary.accuracy, summary.loss
    wall = sum(r.wall_time_s for r in summary.per_run) / len(summary.per_run)
    lines = [
        f"# {summary.group_id}",
        "",
        f"Config `{summary.config_name}`, {len(summary.per_run)} runs with seeds "
        f"{', '.join(str(s) for s in summary.seeds)}; ± is the sample standard deviation.",
        "",
        "| run | seed | test accuracy | test loss | wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in summary.per_run:
        lines.append(
            f"| {r.run_id} | {r.seed} | {r.accuracy:.4f} | {r.loss:.4f} | {r.wall_time_s:.1f} |"
        )
    lines.append(
        f"| **mean ± std** | | {acc:.4f} ± {acc_std:.4f} | {loss:.4f} ± {loss_std:.4f} "
        f"| {wall:.1f} |"
    )
    return "\n".join(lines) + "\n"
