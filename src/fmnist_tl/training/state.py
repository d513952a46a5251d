"""A run's resume point: what state.json holds, checked field by field when it is read back.

training.runfolder.RunFolder reads and writes it; a damaged file is named (exit 3), never a
crash and never a run resumed from a wrong point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..config.fields import MAX_EPOCHS
from ..layout import LAST, LAST_HEAD, STATE
from ..records import STAGES, StageSummary
from .checked import checked

STATE_VERSION = 1


@dataclass
class RunState:
    """Everything besides history.csv and the model files that a resumed run needs."""

    command: str  # "train" or "finetune"
    stages: list[str]  # the stages this run trains, in order
    stage: str | None  # the stage running now; None once every stage is done
    stage_start: int = 0  # epochs completed before this stage (its initial_epoch)
    epochs_done: int = 0  # epochs completed and committed, all stages together
    stage_finished: bool = False  # early stopping (or the last epoch) ended this stage
    stage_seconds: float = 0.0  # fit time spent in this stage so far
    elapsed_s: float = 0.0  # wall time over every sitting, up to the last commit
    cpu_s: float = 0.0  # CPU seconds over every sitting, up to the last commit
    summaries: list[StageSummary] = field(default_factory=list)  # the finished stages
    checkpoint: dict[str, Any] = field(default_factory=dict)  # BestModelCheckpoint best
    early_stopping: dict[str, Any] | None = None  # this stage's EarlyStopping state
    plateau: dict[str, Any] | None = None  # this stage's ReduceLROnPlateau state
    model_file: str | None = None  # LAST or LAST_HEAD: the model after epochs_done
    model_sha256: str | None = None
    # Stage 2 on cached activations commits only the top (LAST_HEAD); the full model it started
    # from stays in LAST, and this is LAST's SHA-256, so a resumed run can restore the bottom.
    base_sha256: str | None = None
    weights_used: str = ""  # recorded in metrics.json
    source_model: str | None = None  # `finetune` runs: the model they started from
    diverged: str | None = None
    complete: bool = False
    version: int = STATE_VERSION
    mlflow_run_id: str | None = None  # output.tracking: mlflow: a resumed run continues it

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["summaries"] = [s.to_dict() for s in self.summaries]
        if self.mlflow_run_id is None:  # tracking off: state.json as it always was
            del raw["mlflow_run_id"]
        return raw

    @classmethod
    def from_dict(cls, raw: Any) -> RunState:
        """Every field checked for its type and meaning: TypeError or ValueError saying which."""
        state = cls(**checked(cls, raw, STATE, optional=_ADDED_LATER, nested=_NESTED))
        state.summaries = [
            StageSummary(**checked(StageSummary, s, f"{STATE} summaries")) for s in state.summaries
        ]
        _check_meaning(state)
        return state


_NESTED = {  # the dicts inside state.json, as the callbacks write them
    "checkpoint": {"best": "float | None", "best_epoch": "int | None"},
    "early_stopping": {"wait": "int", "best": "float | None", "best_epoch": "int"},
    "plateau": {"wait": "int", "cooldown_counter": "int", "best": "float | None"},
}
# Fields added after state.json version 1: a file written before them lacks them. Every other
# field is always written, so a missing one means a damaged file.
_ADDED_LATER = frozenset({"base_sha256", "cpu_s", "mlflow_run_id"})


def _check_meaning(state: RunState) -> None:
    """Values of the right type that still cannot describe a run."""
    if state.command not in ("train", "finetune"):
        raise ValueError(f"'command' is {state.command!r}, not train or finetune")
    if not state.stages or any(s not in STAGES for s in state.stages):
        raise ValueError(f"'stages' is {state.stages!r}, not a list of {' / '.join(STAGES)}")
    if state.stage is not None and state.stage not in state.stages:
        raise ValueError(f"'stage' is {state.stage!r}, not one of {state.stages}")
    if not 0 <= state.stage_start <= state.epochs_done <= MAX_EPOCHS * len(state.stages):
        raise ValueError(
            f"'stage_start' {state.stage_start} and 'epochs_done' {state.epochs_done} disagree "
            f"(at most {MAX_EPOCHS} epochs a stage)"
        )
    if state.model_file not in (None, LAST, LAST_HEAD):
        raise ValueError(f"'model_file' is {state.model_file!r}, not {LAST} or {LAST_HEAD}")
    for key in ("elapsed_s", "cpu_s", "stage_seconds"):
        if not getattr(state, key) >= 0:  # NaN too
            raise ValueError(f"'{key}' is {getattr(state, key)!r}, not a count of seconds")
    if state.version != STATE_VERSION:
        raise ValueError(f"version {state.version}, this fmnist reads version {STATE_VERSION}")
