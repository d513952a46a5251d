"""Interrupt a run (SIGINT, SIGTERM, SIGKILL), resume it, end with an uninterrupted run's results.

Two real subprocesses, the way a user meets this: Ctrl-C mid-stage, and a hard kill. The
in-process tests interrupt at a known epoch (SIGINT sent to ourselves right after a commit) and
compare against an uninterrupted run with the same seed; with one batch per epoch and no
dropout the data order cannot differ, so equal losses prove weights AND optimizer state came back.
"""

from __future__ import annotations

import contextlib
import csv
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
from conftest import SMOKE
from test_training import CNN, saved_backbone
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.errors import Interrupted
from fmnist_tl.training import runfolder, session
from fmnist_tl.training.interrupts import StopSignals
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


def epochs_in(run_dir: Path) -> list[tuple[str, int]]:
    with (run_dir / "history.csv").open() as f:
        return [(r["stage"], int(r["epoch"])) for r in csv.DictReader(f)]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


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


def wait_until(check, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
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
    # TensorBoard keeps the killed sitting's points and continues after them.
    assert set(tensorboard_epochs(tmp_path / "logs" / run.name)) == set(range(6))


@contextlib.contextmanager
def sigint_after_epoch(epoch: int):
    """Send ourselves SIGINT right after `epoch` is committed: the real handler, a known point."""
    commit = session.EpochCommit.on_epoch_end

    def on_epoch_end(self, e, logs=None):
        commit(self, e, logs)
        if e + 1 == epoch:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session.EpochCommit, "on_epoch_end", on_epoch_end)
        yield


def interrupted(run_fn, epoch: int) -> Path:
    with sigint_after_epoch(epoch), pytest.raises(Interrupted) as info:
        run_fn()
    message = str(info.value)
    assert message.startswith("SIGINT: stopped after epoch") and "resume with:" in message
    return Path(message.rsplit("fmnist train --resume ", 1)[1])


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
    ],
    ids=["mid-stage", "between-stages", "cosine", "plateau"],
)
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, isolated, setup, stop_at):
    config = load_config(SMOKE, [*isolated, *EXACT, *setup])
    reference = train(config)
    run = interrupted(lambda: train(config), stop_at)
    assert runfolder.RunState.load(run).epochs_done == stop_at
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


def test_signals_ask_for_a_safe_stop_then_stop_at_once():
    old = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        stop.defer = True  # inside `fit`: the first signal only asks
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if stop.requested:
                break
            time.sleep(0.01)
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # the second one does not wait
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is old
    with StopSignals(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)  # outside `fit` nothing to wait for
        time.sleep(5)


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["train"], 2, "give a CONFIG file"),
        (["train", "--resume", "nope"], 3, "no run folder"),
        (["train", "--resume", "x", "--repeat", "2"], 2, "leave out --repeat"),
        (["train", "--resume", "x", "--set", "train.epochs=3"], 2, "cannot change it"),
    ],
)
def test_resume_usage_errors(args, code, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_a_folder_without_state_is_not_resumable(tmp_path):
    (tmp_path / "old-run").mkdir()
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "old-run")])
    assert result.exit_code == 2 and "not a resumable run" in result.output


# ---------------------------------------------------------------- damaged run folders


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, synthetic_dir) -> Path:
    """A run stopped after epoch 2 of 3, copied by each test that damages it."""
    tmp = tmp_path_factory.mktemp("stopped")
    overrides = [
        f"data.dir={synthetic_dir}",
        f"output.dir={tmp / 'saved_models'}",
        f"output.log_dir={tmp / 'logs'}",
        f"output.cache_dir={tmp / 'cache'}",
        "runtime.verbose=silent",
        "train.epochs=3",
    ]
    return interrupted(lambda: train(load_config(SMOKE, overrides)), 2)


def damaged(stopped_run: Path, tmp_path: Path, change) -> Path:
    import shutil

    run = tmp_path / stopped_run.name
    shutil.copytree(stopped_run, run)
    change(run)
    return run


def edit_state(**changes):
    def change(run: Path) -> None:
        state = json.loads((run / "state.json").read_text())
        for key, value in changes.items():
            if value is KeyError:
                del state[key]
            elif "." in key:
                outer, inner = key.split(".")
                state[outer][inner] = value
            else:
                state[key] = value
        (run / "state.json").write_text(json.dumps(state))

    return change


def cut_history(keep_lines: int, tail: str = ""):
    def change(run: Path) -> None:
        lines = (run / "history.csv").read_text().splitlines(keepends=True)
        (run / "history.csv").write_text("".join(lines[:keep_lines]) + tail)

    return change


@pytest.mark.parametrize(
    "change, needle",
    [
        (edit_state(epochs_done="x"), "'epochs_done' is 'x'"),
        (edit_state(epochs_done=True), "'epochs_done' is True"),
        (edit_state(summaries={"name": "head"}), "'summaries'"),
        (edit_state(stage=KeyError), "'stage' is missing"),
        (edit_state(stages=["head", 3]), "'stages'"),
        (edit_state(**{"checkpoint.best_epoch": "2"}), "'checkpoint.best_epoch'"),
        (edit_state(model_file="../../elsewhere.keras"), "'model_file'"),
        (edit_state(stage_start=5), "'stage_start'"),
        (lambda run: (run / "state.json").write_text("[1, 2]"), "is a list, not an object"),
        (lambda run: (run / "history.csv").unlink(), "history cannot be rebuilt"),
        (cut_history(2), "history cannot be rebuilt"),  # the header and epoch 1 only
        (cut_history(2, "head,2,0.5"), "cut short"),  # epoch 2's row half-written
        (cut_history(1), "history cannot be rebuilt"),  # the header alone
    ],
    ids=[
        "epochs-str",
        "epochs-bool",
        "summaries-dict",
        "missing-key",
        "stages-int",
        "checkpoint-str",
        "model-file-path",
        "stage-start",
        "state-list",
        "history-deleted",
        "history-truncated",
        "history-cut-row",
        "history-header-only",
    ],
)
def test_a_damaged_run_folder_is_exit_3_in_one_line(stopped_run, tmp_path, change, needle):
    run = damaged(stopped_run, tmp_path, change)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.output
    assert "Traceback" not in result.output and "cannot be resumed" in lines[0]
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing touched


def test_a_run_being_trained_is_not_resumed_by_a_second_process(stopped_run, tmp_path):
    import fcntl

    run = damaged(stopped_run, tmp_path, lambda run: None)
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the sitting that trains it holds it
        result = runner.invoke(app, ["train", "--resume", str(run)])
    finally:
        os.close(fd)
    assert result.exit_code == 3, result.output
    assert "another fmnist process is training this run" in result.output
    assert epochs_in(run) == [("head", 1), ("head", 2)]
