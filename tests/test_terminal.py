"""What a user sees on the terminal: quiet by default, --verbose, progress on a TTY only, -h,
config show/keys, one meaning of --json, and evaluate never replacing a run's own report."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import NO_DOWNLOAD, SMOKE, learnable, write_idx
from typer.testing import CliRunner

import fmnist_tl
from fmnist_tl.cli import app
from fmnist_tl.config import Config

FMNIST = str(Path(sys.executable).parent / "fmnist")
# TensorFlow's C++ start-up lines and Python warnings ("...py:12: UserWarning: ...").
NOISE = re.compile(r"^(I0000|W0000|E0000|WARNING: All log messages)")
PY_WARNING = re.compile(r"\b\w*Warning: ")
runner = CliRunner()


def user_env() -> dict[str, str]:
    """The environment of a user who set nothing: no TF_CPP_MIN_LOG_LEVEL, no verbosity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "FMNIST_"))}
    env.pop("PYTHONWARNINGS", None)
    return env


def run_args(root: Path, synthetic_dir: Path) -> list[str]:
    sets = [
        f"data.dir={synthetic_dir}",
        f"output.dir={root / 'saved_models'}",
        f"output.log_dir={root / 'logs'}",
        f"output.cache_dir={root / 'cache'}",
        "runtime.verbose=epoch",
        "train.epochs=1",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if NOISE.match(line) or PY_WARNING.search(line)]


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory, synthetic_dir) -> tuple[subprocess.CompletedProcess, Path]:
    """A real `fmnist train` subprocess, as a user runs it; its run folder."""
    root = tmp_path_factory.mktemp("quiet")
    proc = subprocess.run(
        [FMNIST, "train", str(SMOKE), *run_args(root, synthetic_dir)],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=root,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = (root / "saved_models").glob("smoke-*")
    return proc, run


def test_train_prints_no_startup_lines_and_no_warnings(quiet_run):
    proc, run = quiet_run
    assert noise(proc.stdout + proc.stderr) == [], proc.stderr
    assert "stage 1/1 head: on images; 1 epoch, learning rate 0.003" in proc.stderr
    assert "━" not in proc.stderr  # no bar outside a terminal
    assert (run / "metrics.json").is_file()


def test_verbose_brings_the_startup_lines_back(tmp_path, synthetic_dir):
    proc = subprocess.run(
        [FMNIST, "--verbose", "train", str(SMOKE), *run_args(tmp_path, synthetic_dir)],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if NOISE.match(line)]
    assert lines, proc.stderr  # TensorFlow's own start-up lines, at its default log level


def test_an_error_is_the_one_line_printed(tmp_path, synthetic_dir):
    """A failure after TensorFlow loaded (no ImageNet weights offline) prints one line, alone:
    no start-up lines, no Keras warning, no "Downloading data from" line before it."""
    sets = ["model.backbone=mobilenet_v2", "model.input_size=32", "model.weights=imagenet"]
    args = run_args(tmp_path, synthetic_dir) + [a for s in sets for a in ("--set", s)]
    env = {**user_env(), "KERAS_HOME": str(tmp_path / "keras"), **NO_DOWNLOAD}  # never found
    proc = subprocess.run(
        [FMNIST, "train", str(SMOKE), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ImageNet weights for mobilenet_v2"), proc.stderr


def in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal; (exit code, what it showed)."""
    leader, follower = pty.openpty()
    env = {**user_env(), "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen(
        args, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd
    )
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal closed with the process
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return proc.returncode, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # without colours


def test_progress_shows_on_a_terminal_only(quiet_run, tmp_path):
    _, run = quiet_run
    args = [FMNIST, "evaluate", str(run / "best.keras"), "--limit", "50", "-o"]
    code, shown = in_terminal([*args, str(tmp_path / "tty.json")], tmp_path)
    assert code == 0, shown
    assert "testing" in shown and "50/50" in shown, shown  # a bar with its count
    assert re.search(r"\d[\d,]* img/s", shown), shown  # and its rate
    assert noise(shown) == [], shown
    piped = subprocess.run(
        [*args, str(tmp_path / "pipe.json")],
        capture_output=True,
        text=True,
        env=user_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert "50/50" not in piped.stderr and "━" not in piped.stderr, piped.stderr
    assert noise(piped.stdout + piped.stderr) == []


def test_evaluate_keeps_the_runs_own_report(quiet_run, synthetic_dir, tmp_path):
    _, run = quiet_run
    own = run / "evaluation.json"
    before = own.read_bytes()
    model = str(run / "best.keras")
    data = ["--data-dir", str(synthetic_dir)]  # the run's data (the default searches)
    result = runner.invoke(app, ["evaluate", model, "--limit", "50", *data])
    assert result.exit_code == 0, result.output
    assert own.read_bytes() == before  # the run's report is the run's
    assert "its evaluation.json is kept" in " ".join(result.output.split())  # and it says so
    other = json.loads((run / "evaluation.limit50.json").read_text())
    assert other["n"] == 50
    assert (run / "evaluation.limit50_confusion.png").is_file()
    result = runner.invoke(app, ["evaluate", model, "--test-flip", *data])
    assert result.exit_code == 0, result.output
    assert own.read_bytes() == before
    assert json.loads((run / "evaluation.flip.json").read_text())["test_flip"] is True
    # The run's own setup (its 100 synthetic test images, no flip) rewrites its own report.
    result = runner.invoke(app, ["evaluate", model, *data])
    assert result.exit_code == 0, result.output
    assert json.loads(own.read_text())["accuracy"] == json.loads(before)["accuracy"]
    # Other data is named after its source.
    other_dir = write_idx(tmp_path / "other", (*learnable(100, 3), *learnable(100, 4)), gz=False)
    result = runner.invoke(app, ["evaluate", model, "--limit", "30", "--data-dir", str(other_dir)])
    assert result.exit_code == 0, result.output
    (named,) = run.glob("evaluation.limit30.data-*.json")
    assert json.loads(named.read_text())["data_source"] != json.loads(before)["data_source"]


def test_json_means_the_result_on_stdout(quiet_run, tmp_path):
    _, run = quiet_run
    target = tmp_path / "elsewhere" / "report.json"
    args = ["evaluate", str(run / "best.keras"), "--limit", "20", "--output", str(target)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["n"] == 20 and printed["json_path"] == str(target)
    assert json.loads(target.read_text())["accuracy"] == printed["accuracy"]
    assert not (run / "evaluation.limit20.json").exists()  # --output says where
    from fmnist_tl.data.images import save_png

    image = tmp_path / "x.png"
    save_png(__import__("numpy").zeros((28, 28), "uint8"), image)
    result = runner.invoke(app, ["predict", str(run / "best.keras"), str(image), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["image"] == str(image)


@pytest.mark.parametrize(
    "args",
    [["-h"], ["train", "-h"], ["evaluate", "-h"], ["config", "-h"], ["config", "show", "-h"]],
)
def test_dash_h_is_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output
    assert "--show-completion" in result.output
    assert "--verbose" in result.output


def test_config_show_without_a_file_prints_the_defaults():
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    expected = Config().to_dict()
    expected["output"]["name"] = "default"
    assert shown == expected


def test_the_package_lists_its_api():
    names = dir(fmnist_tl)
    for name in ("train", "finetune", "evaluate", "tune", "predict_images", "load_config"):
        assert name in names and name in fmnist_tl.__all__
    assert callable(fmnist_tl.evaluate)


def test_config_keys_lists_every_key_from_the_schema():
    from fmnist_tl.config import key_table

    result = runner.invoke(app, ["config", "keys", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [r["key"] for r in listed] == [r.key for r in key_table()]
    verbose = next(r for r in listed if r["key"] == "runtime.verbose")
    assert verbose["default"] == "auto" and "debug" in verbose["type"] and verbose["meaning"]
    wide = CliRunner().invoke(app, ["config", "keys", "train"], env={"COLUMNS": "200"})
    assert wide.exit_code == 0, wide.output
    assert "train.batch_size" in wide.stdout and "model.backbone" not in wide.stdout
    assert "64" in wide.stdout  # its default


def test_the_python_api_is_quiet_too():
    """`import fmnist_tl` first: the start-up lines of TensorFlow's import and first op are
    held (tfenv.held()), not printed; asking for verbose output afterwards replays them."""
    code = (
        "import fmnist_tl, tensorflow as tf\n"
        "from fmnist_tl import tfenv\n"
        "print(float(tf.reduce_sum(tf.ones(3))), len(tfenv.held()) > 0)\n"
        "tfenv.set_verbose()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=user_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3.0", "True"]  # it held what TensorFlow printed
    assert any(NOISE.match(line) for line in proc.stderr.splitlines()), proc.stderr


def test_held_lines_come_out_when_the_load_fails(capfd):
    from fmnist_tl import tfenv

    with pytest.raises(RuntimeError), tfenv.hold_stderr():
        os.write(2, b"E0000 something TensorFlow said\n")
        raise RuntimeError("the load failed")
    assert "E0000 something TensorFlow said" in capfd.readouterr().err
    with tfenv.hold_stderr():
        os.write(2, b"I0000 fine\n")
    assert "I0000" not in capfd.readouterr().err  # held, since nothing failed
    assert "I0000 fine" in tfenv.held()


def test_the_keras_bar_never_counts_past_the_epoch(capsys):
    """32 steps per call into TensorFlow, 8 steps per epoch (a head on cached features)."""
    import keras
    import numpy as np

    from fmnist_tl.training.callbacks import StepProgbar

    def shown(callbacks: list) -> str:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
        model.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=32)
        x, y = np.zeros((128, 4), "float32"), np.zeros(128, "int64")
        model.fit(x, y, batch_size=16, epochs=1, verbose=1, callbacks=callbacks)
        return capsys.readouterr().out

    counts = [int(n) for n in re.findall(r"(\d+)/8\b", shown([StepProgbar()]))]
    assert counts and max(counts) == 8, counts
    assert "32/8" in shown([])  # what Keras's own bar draws: the bug this guards against
