"""What stops a resume, and says so: signals, usage errors, damaged run folders, a run that
another process trains."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import SMOKE, epochs_in, interrupted
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.training.interrupts import StopSignals
from fmnist_tl.training.trainer import train

runner = CliRunner()


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
