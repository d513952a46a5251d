"""One stage as one unit, for a run (both stages) and for a tune trial.

A stage's inputs say what it fits (the head on cached features, the top on cached
activations, or the full model on images) and how they were had; `run_stage` compiles that
model for the stage, fits it with the caller's fit (a run's `Session.fit`, which commits every
epoch, or a trial's plain `fit_stage`), and the inputs fill the stage's summary: its cache use,
and the frozen pass it paid for in its wall time. stage1.py and stage2.py decide the inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import keras

from .. import progress
from ..config import Config
from ..records import FINETUNE, StageSummary
from . import runtime
from .fit import FitOutcome
from .optim import compile_model, steps_per_epoch
from .splits import StageData


@dataclass
class StageInputs:
    """What a stage fits, and what its summary should say about how it got it."""

    model: keras.Model  # the head on features, the top on activations, or the full model
    data: StageData
    on_features: bool  # `model` is a part of the full model, fitted on cached inputs
    seconds: float = 0.0  # the frozen pass (or cache load) made for this stage
    counts_pass: bool = False  # whether that pass belongs in the stage's wall time

    def fill(self, summary: StageSummary) -> None:
        """Add what these inputs know to the stage's summary (subclasses: their cache)."""


class Fit(Protocol):
    def __call__(
        self, model: keras.Model, stage: str, data: StageData, *, on_features: bool
    ) -> FitOutcome: ...


def run_stage(
    config: Config, stage: str, inputs: StageInputs, fit: Fit, strategy: Any = None
) -> FitOutcome:
    """Compile `inputs.model` for `stage`, fit it, and fill the stage's summary."""
    t0 = time.perf_counter()
    batch = config.train.batch_size * runtime.replicas(strategy)
    steps = steps_per_epoch(len(inputs.data.x_train), batch)
    with runtime.scope(strategy):  # changing `trainable` takes effect only after compiling
        compile_model(inputs.model, config, stage, steps, on_features=inputs.on_features)
    compiled = time.perf_counter() - t0
    outcome = fit(inputs.model, stage, inputs.data, on_features=inputs.on_features)
    summary = outcome.summary
    if inputs.counts_pass:  # the stage's time includes its frozen pass
        summary.wall_time_s = round(summary.wall_time_s + inputs.seconds + compiled, 3)
    inputs.fill(summary)
    return outcome


def stage_header(config: Config, stages: list[str], stage: str, *, on_features: bool) -> None:
    """ "stage 1/2 head: ..." before a stage's epochs (not with runtime.verbose: silent)."""
    if config.runtime.verbose == "silent":
        return
    sched = config.schedule(stage)
    index = stages.index(stage) + 1 if stage in stages else 1
    total = max(len(stages), index)
    if stage == FINETUNE:
        what = f"finetune from {config.finetune.unfreeze_from}:"
    else:
        what = f"{stage}: " + ("head on cached features;" if on_features else "on images;")
    progress.say(
        f"stage {index}/{total} {what} {sched.epochs} epoch{'s' * (sched.epochs != 1)}, "
        f"learning rate {sched.learning_rate:g} ({sched.schedule})"
    )
