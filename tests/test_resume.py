"""Interrupt a run (SIGINT, SIGTERM, SIGKILL), resume it, end with an uninterrupted run's results.

Two real subprocesses, the way a user meets this: Ctrl-C mid-stage, and a hard kill. The
in-process tests interrupt at a known epoch (SIGINT sent to ourselves right after a commit) and
compare against an uninterrupted run with the same seed; with one batch per epoch and no
dropout the data order cannot differ, so equal losses prove weights AND optimizer state came back.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, epochs_in, interrupted, sets
from test_training import CNN, saved_backbone
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.training import runfolder
from fmnist_tl.training.trainer import finetune, resume_run, train

runner = CliRunner()
ARTIFACTS = {
    "best.keras",
    "config.yaml",
    "history.csv",
    "history.png",
    "metrics.json",
    "evaluation.json",
    "evaluation_confusion.png",
    "evaluation_misclassified.png",
    "state.json",
}
# One batch per epoch, no dropout: a resumed epoch sees exactly what an uninterrupted one sees.
EXACT = [
    "train.batch_size=512",
    "train.patience=null",
    "model.head.dropout=0",
    "model.cnn.dropout=0",
]


def start_cli(tmp_path: Path, overrides: list[str]) -> tuple[subprocess.Popen, queue.Queue]:
    """`python -m fmnist_tl.cli train` with stdout lines arriving on a queue."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist_tl.cli", "train", str(SMOKE), *sets(overrides)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.txt").open("w"),
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    return proc, lines


def wait_until(check, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or hung before {what}")
        time.sleep(0.02)


def tensorboard_epochs(log_dir: Path) -> list[int]:
    """The steps of every epoch_loss point in a run's TensorBoard training logs."""
    import tensorflow as tf

    return [
        e.step
        for f in (log_dir / "train").glob("events.out.tfevents*")
        for e in tf.compat.v1.train.summary_iterator(str(f))
        if any(v.tag == "epoch_loss" for v in e.summary.value)
    ]


def only_run(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def test_ctrl_c_mid_stage_then_resume_gives_every_epoch_once(tmp_path, isolated):
    overrides = [
        *isolated,
        "train.epochs=8",
        "train.batch_size=8",  # 40 steps per epoch: the signal lands inside an epoch
        "train.patience=null",
        "runtime.verbose=epoch",
    ]
    proc, lines = start_cli(tmp_path, overrides)
    seen: list[str] = []

    def epoch_3_began() -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(line.startswith("Epoch 3/") for line in seen)

    wait_until(epoch_3_began, proc, "epoch 3")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    run = only_run(tmp_path / "saved_models")
    assert f"resume with: fmnist train --resume {run}" in stderr.splitlines()[-1]
    done = epochs_in(run)
    assert 2 <= len(done) < 8 and [e for _, e in done] == list(range(1, len(done) + 1))
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()
    assert not (run / "metrics.json").exists()

    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert epochs_in(run) == [("head", e) for e in range(1, 9)]
    assert {p.name for p in run.iterdir()} == ARTIFACTS  # no last.keras left behind
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"][0]["epochs_run"] == 8
    assert json.loads((run / "state.json").read_text())["complete"] is True

    # TensorBoard continues: one epoch_loss point per epoch over both sittings.
    assert sorted(tensorboard_epochs(tmp_path / "logs" / run.name)) == list(range(8))

    again = runner.invoke(app, ["train", "--resume", run.name, "--set", f"output.dir={run.parent}"])
    assert again.exit_code == 2 and "complete" in again.output


def test_sigkill_after_epoch_2_resumes_through_both_stages(tmp_path, isolated):
    overrides = [
        *isolated,
        "train.epochs=3",
        "finetune.epochs=3",
        "finetune.unfreeze_from=block2",
        "train.batch_size=8",
        "train.patience=null",
        "finetune.patience=null",
    ]
    proc, _ = start_cli(tmp_path, overrides)
    runs = tmp_path / "saved_models"

    def epoch_2_committed() -> bool:
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((only_run(runs) / "state.json").read_text())
            return state["epochs_done"] >= 2 and (only_run(runs) / "last.keras").exists()
        return False

    wait_until(epoch_2_committed, proc, "epoch 2 was committed")
    proc.kill()
    proc.wait(timeout=30)
    run = only_run(runs)
    assert not (run / "metrics.json").exists()
    killed = json.loads((run / "state.json").read_text())
    assert killed["cpu_s"] > 0 and killed["elapsed_s"] > 0

    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert epochs_in(run) == [("head", 1), ("head", 2), ("head", 3)] + [
        ("finetune", e) for e in (4, 5, 6)
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [(s["name"], s["epochs_run"]) for s in metrics["stages"]] == [
        ("head", 3),
        ("finetune", 3),
    ]
    assert {p.name for p in run.iterdir()} == ARTIFACTS
    # The run's cost is both sittings': the killed one's up to its last commit, then this one's.
    timings = metrics["timings"]
    assert timings["run_cpu_s"] == pytest.approx(
        killed["cpu_s"] + timings["sitting_cpu_s"], abs=0.01
    )
    assert metrics["wall_time_s"] > killed["elapsed_s"]
    assert timings["prepare_s"] >= 0
    # TensorBoard keeps the killed sitting's points and continues after them.
    assert set(tensorboard_epochs(tmp_path / "logs" / run.name)) == set(range(6))


def assert_same_run(resumed, reference) -> None:
    rows, ref = resumed.history, reference.history
    assert [(r["stage"], r["epoch"]) for r in rows] == [(r["stage"], r["epoch"]) for r in ref]
    np.testing.assert_allclose(
        [r["loss"] for r in rows], [r["loss"] for r in ref], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        [r["learning_rate"] for r in rows], [r["learning_rate"] for r in ref], rtol=1e-5
    )
    a, b = resumed.metrics.to_dict(), reference.metrics.to_dict()
    assert a["test"]["accuracy"] == pytest.approx(b["test"]["accuracy"], abs=0.011)
    assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], rel=1e-3, abs=1e-5)
    assert [s["best_epoch"] for s in a["stages"]] == [s["best_epoch"] for s in b["stages"]]
    assert {p.name for p in resumed.run_dir.iterdir()} == {
        p.name for p in reference.run_dir.iterdir()
    }


@pytest.mark.parametrize(
    "setup, stop_at",
    [
        (["train.epochs=4"], 2),  # mid-stage: weights + optimizer from last.keras
        # at the stage boundary: stage 2 starts from the model stage 1 ended with
        (["train.epochs=2", "finetune.epochs=2", "finetune.unfreeze_from=block2"], 2),
        # schedules: the cosine step count and plateau's counters and lowered rate carry on
        (["train.epochs=4", "train.schedule=cosine", "train.warmup_epochs=1"], 2),
        (["train.epochs=4", "train.schedule=plateau", "train.plateau_patience=1"], 3),
        # the weights' average: committed swapped with the raw weights, swapped back on resume
        (["train.epochs=4", "train.ema=0.9", "finetune.epochs=2", "finetune.ema=0.5"], 3),
    ],
    ids=["mid-stage", "between-stages", "cosine", "plateau", "ema"],
)
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, isolated, setup, stop_at):
    config = load_config(SMOKE, [*isolated, *EXACT, *setup])
    reference = train(config)
    run = interrupted(lambda: train(config), stop_at)
    assert runfolder.RunFolder(run).load_state().epochs_done == stop_at
    assert_same_run(resume_run(run), reference)


def test_cached_feature_head_resumes_with_its_own_optimizer(tmp_path, isolated):
    weights, _ = saved_backbone(tmp_path, *CNN)
    config = load_config(
        None, [*isolated, *CNN, *EXACT, f"model.weights={weights}", "train.epochs=4"]
    )
    reference = train(config)
    assert "feature_cache" in reference.metrics.to_dict()["stages"][0]
    run = interrupted(lambda: train(config), 2)
    assert {"last_head.keras", "best.keras"} <= {p.name for p in run.iterdir()}
    assert_same_run(resume_run(run), reference)


def test_kill_between_saving_the_model_and_committing_the_state(tmp_path, isolated):
    """The windows a SIGKILL can hit: a history row and a model file newer than state.json."""
    config = load_config(SMOKE, [*isolated, *EXACT, "train.epochs=4"])
    reference = train(config)
    run = interrupted(lambda: train(config), 2)
    # As if killed after epoch 3 rewrote history.csv and moved last.keras aside for its own.
    with (run / "history.csv").open("a") as f:
        f.write("head,3,0.1,0.9,0.1,0.9,0.003,0.1\n")
    os.replace(run / "last.keras", run / "last.prev.keras")
    (run / "last.keras").write_bytes(b"half-written epoch 3")
    assert_same_run(resume_run(run), reference)


def test_changed_model_file_cannot_be_resumed(tmp_path, isolated):
    run = interrupted(lambda: train(load_config(SMOKE, [*isolated, "train.epochs=3"])), 1)
    (run / "last.keras").write_bytes(b"someone else's file")
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 3, result.output
    assert "last.keras" in result.output and "cannot be resumed" in result.output
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_interrupted_finetune_resumes_as_a_finetune_run(tmp_path, isolated):
    first = train(load_config(SMOKE, [*isolated, "train.epochs=1"]))
    run = interrupted(
        lambda: finetune(first.model_path, unfreeze_from="block2", epochs=3, learning_rate=1e-3),
        1,
    )
    assert run.name.startswith("smoke-finetune-")
    result = resume_run(run.name, root=run.parent)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [s["name"] for s in result.metrics.to_dict()["stages"]] == ["finetune"]
    assert result.metrics.to_dict()["weights_used"] == f"model {first.model_path}"
