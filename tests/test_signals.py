"""Issue 28, class 3: SIGINT, SIGTERM and SIGHUP are the same clean stop in every command.

Real signals to real `fmnist` processes: exit 130, one line, no partial artifact, nothing left
in the temp folder (each process gets its own TMPDIR, where TensorFlow's autograph writes its
`__autograph_generated_file*.py`), no replay of TensorFlow's start-up lines, and a second
signal during the stop never undoes half of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE, interrupted, learnable, outputs

from fmnist_tl.config import load_config
from fmnist_tl.data.images import save_png
from fmnist_tl.training.trainer import train

FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]
LIMIT_S = 120
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_dir) -> dict[str, Path]:
    """An interrupted run, whose best model (its run's config beside it) the model commands
    take, an image and a tune config, made once through the Python API."""
    root = tmp_path_factory.mktemp("signals")
    cut = load_config(SMOKE, [*outputs(root / "cut", synthetic_dir), "train.epochs=3"])
    run = interrupted(lambda: train(cut), 1)
    model = run / "best.keras"
    save_png(learnable(1, 3)[0][0], root / "x.png")
    raw = yaml.safe_load(SMOKE.read_text())
    raw["tune"] = {"space": {"model.head.units": [16, 32]}, "epochs": 1}
    (root / "search.yaml").write_text(yaml.safe_dump(raw))
    return {"root": root, "data": synthetic_dir, "model": model, "run": run}


def commands(w: dict[str, Path], out: Path) -> dict[str, list[str]]:
    sets = [a for o in outputs(out, w["data"]) for a in ("--set", o)]
    model, data = str(w["model"]), ["--data-dir", str(w["data"])]
    return {
        "train": ["train", str(SMOKE), *sets],
        "finetune": ["finetune", model, "--epochs", "1"],
        "resume": ["train", "--resume", str(w["run"])],
        "sweep": ["sweep", str(SMOKE), "--grid", "train.learning_rate=0.003,0.01", *sets],
        "tune": ["tune", str(w["root"] / "search.yaml"), "--trials", "2", *sets],
        "evaluate": ["evaluate", model, *data, "--output", str(out / "eval.json")],
        "predict": ["predict", model, str(w["root"] / "x.png")],
        "export": ["export", model, "--format", "savedmodel", "--output", str(out / "sm"), *data],
    }


def start(tmp: Path, args: list[str]) -> tuple[subprocess.Popen, Path, Path]:
    systmp, err = tmp / "systmp", tmp / "stderr.txt"
    systmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(systmp), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([*FMNIST, *args], cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                            stderr=err.open("w"))  # fmt: skip
    return proc, systmp, err


def handles(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for `sig` (fmnist's, installed first thing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (sig - 1) & 1)


def committed(root: Path) -> int:
    """Epochs the run under `root` has committed (state.json), -1 before it has one."""
    for state in root.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError):
            return int(json.loads(state.read_text())["epochs_done"])
    return -1


def stopped_cleanly(proc: subprocess.Popen, systmp: Path, err: Path, sig: signal.Signals) -> str:
    """Exit 130 with one line naming the signal, no traceback, no TensorFlow line, TMPDIR empty."""
    try:
        code = proc.wait(timeout=LIMIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 130, text
    assert "Traceback" not in text and "I0000" not in text and "oneDNN" not in text, text
    assert len(lines) == 1 and lines[0].startswith(f"{sig.name}: stop"), text
    assert not list(systmp.rglob("*")), f"left in the temp folder: {list(systmp.rglob('*'))}"
    return lines[0]


COMMANDS = ["train", "finetune", "resume", "sweep", "tune", "evaluate", "predict", "export"]


@pytest.mark.parametrize(
    ("command", "sig"), [(c, SIGNALS[i % 3]) for i, c in enumerate(COMMANDS)], ids=COMMANDS
)
def test_a_signal_at_start_up_is_the_same_clean_stop(world, tmp_path, command, sig):
    """Sent once the handler is in place, while modules and TensorFlow load: the one line."""
    proc, systmp, err = start(tmp_path, commands(world, tmp_path)[command])
    deadline = time.monotonic() + LIMIT_S
    while not handles(proc.pid, signal.SIGTERM):
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(sig)
    stopped_cleanly(proc, systmp, err, sig)
    assert not (tmp_path / "sm").exists() and not (tmp_path / "eval.json").exists()


def test_a_stop_mid_export_leaves_nothing_and_a_second_signal_is_ignored(world, tmp_path):
    """SIGTERM while the export is written (its hidden staging folder exists), SIGTERM again:
    no staging folder, no target, no autograph file, TensorFlow's start-up lines not replayed."""
    proc, systmp, err = start(tmp_path, commands(world, tmp_path)["export"])
    deadline = time.monotonic() + LIMIT_S
    while not list(tmp_path.glob(".sm.*.partial")):
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    line = stopped_cleanly(proc, systmp, err, signal.SIGTERM)
    assert "nothing was left half-written" in line
    assert not list(tmp_path.glob(".sm.*")) and not (tmp_path / "sm").exists()


def test_sighup_mid_fit_stops_at_a_batch_and_a_second_one_stops_at_once(world, tmp_path):
    args = commands(world, tmp_path)["train"] + ["--set", "train.epochs=100", "--set",
                                                  "train.patience=null"]  # fmt: skip
    proc, systmp, err = start(tmp_path, args)
    deadline = time.monotonic() + LIMIT_S
    while committed(tmp_path / "saved_models") < 1:
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.02)
    proc.send_signal(signal.SIGHUP)
    code = proc.wait(timeout=LIMIT_S)
    text = err.read_text()
    assert code == 130 and "Traceback" not in text, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("SIGHUP: stopped after epoch") and "resume with:" in last, text
    assert not list(systmp.rglob("*"))
    (run,) = (tmp_path / "saved_models").glob("smoke-*")
    assert not (run / ".tmp").exists() and not list(run.glob(".*"))


ESCAPED = """
import sys
import fmnist_tl.cli as cli
from fmnist_tl import lifecycle, tfenv

def run():
    tfenv.quiet_process()  # libraries' stderr held back, as in every command
    if sys.argv[1] == "stop":
        lifecycle.begin("SIGHUP")  # what the handler does before its KeyboardInterrupt
    raise RuntimeError("a library's own error\\nwith a second line")

cli._run = run
cli.main()
"""


@pytest.mark.parametrize(
    ("case", "code", "start"),
    [("stop", 130, "SIGHUP: stopped"), ("bug", 1, "unexpected error: RuntimeError")],
)
def test_an_error_past_every_handler_is_said_in_one_line(tmp_path, case, code, start):
    """An exception that escaped Click and the commands' handlers (a library that turned a
    stop's KeyboardInterrupt into its own error) is the stop while one is under way, else a
    bug: one line where the user sees it, never a traceback into the held-back stderr."""
    done = subprocess.run([sys.executable, "-c", ESCAPED, case], cwd=tmp_path, capture_output=True,
                          text=True, timeout=LIMIT_S)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith(start), done.stderr
