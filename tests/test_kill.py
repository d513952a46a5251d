"""SIGKILL a real `fmnist train` at 10 seeded random moments, some of them mid-save, resume
after each (`fmnist train --resume RUN`), and end with the files of an uninterrupted run.

The moments are drawn per sitting from three kinds: a random delay after the process starts
(importing TensorFlow, loading data, building or restoring the model, tracing), the n-th
model save of the sitting (killed the moment its temporary file appears: atomic.py's
`.last.<random>.keras` or Keras's `tmp*/assets` folder under the run's .tmp), and a random
delay after the n-th epoch commit of the sitting. The subprocess gets its own TMPDIR, which
must stay empty: Keras's temporary folders belong in the run folder, and go with the sitting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE
from test_resume import ARTIFACTS, epochs_in, sets

from fmnist_tl.layout import TMP
from fmnist_tl.training.runfolder import RunFolder

HEAD_EPOCHS, FINETUNE_EPOCHS = 4, 4
STAGES = [
    f"train.epochs={HEAD_EPOCHS}",
    f"finetune.epochs={FINETUNE_EPOCHS}",
    "finetune.unfreeze_from=block2",
    "train.patience=null",
    "finetune.patience=null",
]
KILLS = 10
# The first sitting is killed mid-save, so the run folder exists; then a seeded mix.
MIX = ["start"] * 3 + ["save"] * 3 + ["commit"] * 3
KINDS = ["save", *np.random.default_rng(19).permutation(MIX).tolist()]


def spawn(tmp_path: Path, args: list[str], n: int) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp_path / "systmp"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fmnist_tl.cli", "train", *args],
        stdout=(tmp_path / f"out{n}.txt").open("w"),
        stderr=(tmp_path / f"err{n}.txt").open("w"),
        env=env,
        cwd=tmp_path,
    )


def saving(run: Path | None) -> list[str]:
    """The temporary files of a model save in progress, by name."""
    if run is None:
        return []
    try:
        names = [e.name for e in os.scandir(run) if e.name.startswith((".last.", ".last_head."))]
        tmp = run / TMP
        if tmp.is_dir():
            # Keras's mkdtemp for the assets; TensorFlow's autograph also writes its
            # `__autograph_generated_file*.py` here (in the system temp without the run's).
            names += [f"{TMP}/{e.name}" for e in os.scandir(tmp) if e.name.startswith("tmp")]
    except FileNotFoundError:
        return []
    return names


def committed(run: Path | None) -> int:
    try:
        return json.loads((run / "state.json").read_text())["epochs_done"]
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def find_run(root: Path) -> Path | None:
    runs = [p for p in root.glob("*") if p.is_dir() and (p / "state.json").exists()]
    return runs[0] if runs else None


def kill_when(proc, kind, rng, root: Path, run: Path | None, deadline: float) -> Path:
    """Wait for this sitting's moment of `kind`, then SIGKILL; the run folder it trains."""
    start = committed(run)
    left = HEAD_EPOCHS + FINETUNE_EPOCHS - max(start, 0)
    target, delay, after = int(rng.integers(1, 3)), rng.uniform(0.3, 5.0), rng.uniform(0, 0.3)
    if left == 0:  # every epoch committed: the test pass, the artifacts, the final commit
        kind = "start"
    target = min(target, max(left, 1))
    seen: set[str] = set()
    t0, hit_at = time.monotonic(), None
    while proc.poll() is None and time.monotonic() < deadline:
        run = run or find_run(root)
        if kind == "start" and time.monotonic() - t0 >= delay and run is not None:
            break
        if kind == "save":
            seen.update(n for n in saving(run) if not n.startswith(TMP))
            if len(seen) >= target:
                break
        if kind == "commit" and committed(run) >= start + target:
            hit_at = hit_at or time.monotonic() + after
            if time.monotonic() >= hit_at:
                break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    code = proc.wait(timeout=30)
    assert code == -signal.SIGKILL, f"the {kind} sitting ended by itself ({code}) before its kill"
    assert run is not None, "no run folder was created"
    return run


def test_ten_random_sigkills_then_resume_gives_a_complete_clean_run(tmp_path, isolated):
    (tmp_path / "systmp").mkdir()
    root = tmp_path / "saved_models"
    rng = np.random.default_rng(2026)
    deadline = time.monotonic() + 240
    run, mid_save, procs, log = None, 0, [], []
    try:
        for n, kind in enumerate(KINDS):
            args = ["--resume", str(run)] if run else [str(SMOKE), *sets([*isolated, *STAGES])]
            procs.append(proc := spawn(tmp_path, args, n))
            run = kill_when(proc, kind, rng, root, run, deadline)
            mid_save += bool(saving(run))
            log.append(f"{kind}@{committed(run)}{'*' if saving(run) else ''}")
            # A hard kill never leaves an unreadable resume point, nor anything in TMPDIR.
            assert RunFolder(run).load_state().complete is False
            assert not list((tmp_path / "systmp").rglob("*")), f"kill {n}: system temp used"
        assert len(procs) == KILLS
        procs.append(final := spawn(tmp_path, ["--resume", str(run)], KILLS))
        assert final.wait(timeout=max(30, deadline - time.monotonic())) == 0, (
            tmp_path / f"err{KILLS}.txt"
        ).read_text()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    print("kills (kind@epochs committed, * = mid-save):", " ".join(log))
    assert mid_save >= 1, "no kill landed while a model was being saved"
    assert epochs_in(run) == [("head", e) for e in range(1, HEAD_EPOCHS + 1)] + [
        ("finetune", e) for e in range(HEAD_EPOCHS + 1, HEAD_EPOCHS + FINETUNE_EPOCHS + 1)
    ]
    assert {p.name for p in run.iterdir()} == ARTIFACTS  # no .last.*.keras, no .tmp, no .prev
    assert not list((tmp_path / "systmp").rglob("*"))
    assert json.loads((run / "state.json").read_text())["complete"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert [(s["name"], s["epochs_run"]) for s in metrics["stages"]] == [
        ("head", HEAD_EPOCHS),
        ("finetune", FINETUNE_EPOCHS),
    ]
    assert "Traceback" not in "".join(p.read_text() for p in tmp_path.glob("err*.txt"))


@pytest.mark.parametrize("leftover", [".last.k2j4x9.keras", f"{TMP}/tmpab12cd/assets"])
def test_resume_removes_what_a_killed_save_left(tmp_path, isolated, leftover):
    """A partial atomic temporary or Keras's temp folder, left by a kill or a full disk."""
    from typer.testing import CliRunner

    from fmnist_tl.cli import app

    runner = CliRunner()
    first = runner.invoke(
        app, ["train", str(SMOKE), *sets([*isolated, "train.epochs=1", "output.update_best=true"])]
    )
    assert first.exit_code == 0, first.output
    (run,) = [p for p in (tmp_path / "saved_models").iterdir() if p.is_dir()]
    state = json.loads((run / "state.json").read_text())
    state["complete"] = False  # as if killed after the test pass, before the commit
    (run / "state.json").write_text(json.dumps(state))
    path = run / leftover
    path.parent.mkdir(parents=True, exist_ok=True)
    if leftover.endswith(".keras"):
        path.write_bytes(b"PK\x03\x04 half of a zip")
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert {p.name for p in run.iterdir()} == ARTIFACTS


def test_a_full_disk_mid_save_leaves_no_partial_file(tmp_path, isolated, monkeypatch):
    """The save of epoch 2 fails half-written (ENOSPC): exit 3 in one line, only the run's
    documented files stay, and the run resumes from epoch 1."""
    import errno

    import keras
    from typer.testing import CliRunner

    from fmnist_tl.cli import app

    real_save, calls = keras.Model.save, []

    def save(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:  # epoch 2's last.keras (best.keras is a copy, not a save)
            real_save(self, filepath, *args, **kwargs)
            Path(filepath).write_bytes(Path(filepath).read_bytes()[:1000])
            raise OSError(errno.ENOSPC, "No space left on device", str(filepath))
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    runner = CliRunner()
    args = ["train", str(SMOKE), *sets([*isolated, "train.epochs=3", "train.patience=null"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    (run,) = [p for p in (tmp_path / "saved_models").iterdir() if p.is_dir()]
    names = {p.name for p in run.iterdir()}
    assert not [n for n in names if n.startswith(".")], names  # no .last.*.keras, no .tmp
    assert names <= ARTIFACTS | {"last.keras", "last.prev.keras"}
    assert RunFolder(run).load_state().epochs_done == 1
    monkeypatch.setattr(keras.Model, "save", real_save)
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert epochs_in(run) == [("head", 1), ("head", 2), ("head", 3)]
    assert {p.name for p in run.iterdir()} == ARTIFACTS
