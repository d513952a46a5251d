"""`fmnist sweep` on one machine: every cell x seed a normal run inside one study folder.

    <output.dir>/<name>-sweep-<timestamp>/            the study folder (found again by its key)
        study.json, study.md, study_accuracy.png, study_cost.png
        <name>-c01-s42-<timestamp>/                    one normal run folder per cell and seed

Running the same sweep again (same config, grid and seeds: the same key) finds its study
folder: a run whose state.json is complete is skipped, an interrupted one is carried on from
its last committed epoch with `resume_run`, a missing one is trained. Runs are found by their
name, so the study files are never the only record of which runs exist. With output.tracking
the study is a parent MLflow run and each run its child; a rerun continues the parent and
records the runs it skips if the store lacks them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ... import tracking
from ...atomic import loads_json
from ...errors import Interrupted, TrainingDiverged
from ...paths import fresh_folder, read_text
from ...records import RunMetrics
from ...training.runfolder import RunFolder
from ...training.trainer import resume_run, train
from .grid import Cell, SweepPlan
from .study import STUDY_JSON, StudyResult, StudyRun, cell_rows
from .summary import study_params, write_study

# on_run(done, total, cell, seed, what, run): what is "trained", "resumed" or "skipped"
RunCallback = Callable[[int, int, Cell, int, str, StudyRun], None]


def run_local(plan: SweepPlan, *, on_run: RunCallback | None = None) -> StudyResult:
    """Run (or continue) the plan's study; study files are rewritten after every run."""
    root = Path(plan.base.output.dir)
    study_dir = find_study(root, plan) or fresh_folder(root, plan.name, what="study")
    result = StudyResult(study_dir, plan, [], [], complete=False)
    _refresh(result)
    done, name = 0, study_dir.name
    # With output.tracking, a parent MLflow run (continued by a rerun) and a child per run.
    params, varying = study_params(plan), ["seed", *plan.grid]
    with tracking.study(
        plan.base, "sweep", name, identity=name, params=params, varying=varying
    ) as t:
        for cell in plan.cells:
            for seed in plan.seeds:
                try:
                    with t.child(tags := {"fmnist.cell": cell.id, "fmnist.seed": seed}):
                        run, what = _one_run(plan, cell, seed, study_dir)
                except (Interrupted, KeyboardInterrupt) as exc:
                    _refresh(result)
                    raise _interrupted(result, cell, seed, exc) from None
                if what == "skipped":  # finished before: in the store already, or now
                    t.adopt(study_dir / run.run_id, tags)
                done += 1
                result.skipped += what == "skipped"
                result.resumed += what == "resumed"
                _refresh(result)
                if on_run is not None:
                    on_run(done, plan.total, cell, seed, what, run)
        result.complete = True
        _refresh(result)
        t.done(**tracking.sweep_summary(result.study_dir))
    return result


def _interrupted(result: StudyResult, cell: Cell, seed: int, exc: BaseException) -> Interrupted:
    finished = sum(r.status == "ok" for r in result.runs)
    return Interrupted(
        f"sweep interrupted at cell {cell.id} seed {seed}; {finished} of {result.plan.total} "
        f"runs finished are kept in {result.markdown_path}; run the same command again to "
        "continue" + (f" ({exc})" if isinstance(exc, Interrupted) else "")
    )


def find_study(root: Path, plan: SweepPlan) -> Path | None:
    """The newest study folder under `root` whose study.json has this plan's key."""
    key = plan.key()
    for folder in sorted(root.glob(f"{plan.name}-[0-9]*"), reverse=True):
        try:
            if loads_json(read_text(folder / STUDY_JSON)).get("key") == key:
                return folder
        except (OSError, ValueError, AttributeError):
            continue
    return None


def run_folder(study_dir: Path, name: str) -> RunFolder | None:
    """The run folder of `name` in the study: a complete one, else the newest resumable one."""
    found = [RunFolder(d) for d in sorted(study_dir.glob(f"{name}-[0-9]*"))]
    states = [(f, f.load_state()) for f in found if f.has_state()]
    complete = [f for f, s in states if s.complete and f.metrics.is_file()]
    if complete:
        return complete[0]
    return states[-1][0] if states else None


def _one_run(plan: SweepPlan, cell: Cell, seed: int, study_dir: Path) -> tuple[StudyRun, str]:
    """Skip, resume or train one cell x seed; a diverged run is recorded, not fatal."""
    name = plan.run_name(cell, seed)
    existing = run_folder(study_dir, name)
    if existing is not None:
        state = existing.load_state()
        if state.complete or state.diverged:
            return read_run(existing, cell, seed), "skipped"
    try:
        if existing is not None:
            resume_run(existing.dir)
            what = "resumed"
        else:
            train(plan.run_config(cell, seed, study_dir))
            what = "trained"
    except TrainingDiverged:
        what = "trained"
    folder = run_folder(study_dir, name)
    assert folder is not None  # train() wrote state.json before its first epoch
    return read_run(folder, cell, seed), what


def read_run(folder: RunFolder, cell: Cell, seed: int) -> StudyRun:
    """A run's study record, from its own metrics.json (or its state: diverged)."""
    if not folder.metrics.is_file():
        status = "diverged" if folder.load_state().diverged else "unfinished"
        return StudyRun(cell.id, seed, folder.name, status)
    m = RunMetrics.read(folder.metrics)
    return StudyRun(
        cell.id,
        seed,
        m.run_id or folder.name,
        "ok",
        test_accuracy=float(m.test.accuracy),
        val_accuracy=m.best_val_accuracy(),
        wall_time_s=float(m.wall_time_s),
    )


def _refresh(result: StudyResult) -> None:
    """Read every run of the plan from its folder, then rewrite the study files."""
    runs = []
    for cell in result.plan.cells:
        for seed in result.plan.seeds:
            folder = run_folder(result.study_dir, result.plan.run_name(cell, seed))
            if folder is not None:
                run = read_run(folder, cell, seed)
                if run.status != "unfinished":
                    runs.append(run)
    result.runs = runs
    result.rows = cell_rows(result.plan, runs)
    write_study(result)
