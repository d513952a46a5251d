"""Error messages that say what to do, many of them before TensorFlow loads, through the CLI.

Each case: the documented exit code, exactly one line that says what is wrong and what to do,
no traceback. The cases that must fail before TensorFlow loads run in a subprocess whose
`tensorflow` raises on import (as tests/test_bad_runtime.py does).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import SMOKE, cli_fails, one_line, run_counting_cpu
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.training.runfolder import RunFolder
from fmnist_tl.training.state import RunState

runner = CliRunner()
FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]


def before_tf(env: dict[str, str], args: list[str], code: int, *needles: str, cwd=None) -> str:
    done, cpu_s, wall_s = run_counting_cpu([*FMNIST, *args], env=env, timeout=60, cwd=cwd)
    assert done.returncode == code, done.stderr
    assert "TensorFlow loaded" not in done.stderr
    assert cpu_s < 3.0 and wall_s < 20.0, (args, cpu_s, wall_s)
    return one_line(done.stderr, *needles)


def fake_model(path: Path, config_json: bool = True) -> Path:
    """A zip that passes the file checks (a real model would need TensorFlow to build)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json" if config_json else "other.txt", "{}")
    return path


def run_folder(tmp_path: Path, config_text: str | None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    RunFolder(run).save_state(RunState("train", ["head"], "head"))
    if config_text is not None:
        (run / "config.yaml").write_text(config_text)
    return run


# -- a run's own damaged config is a damaged run folder (exit 3) ----------------------


def test_resume_with_damaged_config_is_exit_3_before_tensorflow(tmp_path, no_tf):
    run = run_folder(tmp_path, "train:\n  epochs: [\n")
    line = before_tf(no_tf, ["train", "--resume", str(run)], 3, "config.yaml: damaged (")
    assert "cannot be resumed" in line and "fmnist train CONFIG" in line


def test_resume_without_config_says_what_to_do_before_tensorflow(tmp_path, no_tf):
    run = run_folder(tmp_path, None)
    line = before_tf(no_tf, ["train", "--resume", str(run)], 3, "config.yaml is missing")
    assert "cannot be resumed" in line and "fmnist train CONFIG" in line


def test_compare_of_a_folder_without_runs_says_what_to_do(tmp_path, no_tf):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = before_tf(no_tf, ["compare", "--root", str(empty)], 3, "no runs found")
    assert "fmnist train CONFIG" in line and line.startswith(f"error: {empty}")


def test_finetune_with_damaged_saved_config_is_exit_3(tmp_path, no_tf):
    model = fake_model(tmp_path / "best.keras")
    (tmp_path / "config.yaml").write_text("train: [\n")
    line = before_tf(no_tf, ["finetune", str(model)], 3, "config.yaml: damaged (")
    assert "cannot be fine-tuned" in line


# -- a file format's --output that is a folder ----------------------------------------


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_export_file_format_to_a_folder_is_exit_3(tmp_path, no_tf, fmt):
    model = fake_model(tmp_path / "m.keras")
    folder = tmp_path / "out"
    folder.mkdir()
    args = ["export", str(model), "--format", fmt, "--output", str(folder)]
    done = subprocess.run([*FMNIST, *args], capture_output=True, text=True, env=no_tf, timeout=60)
    if "onnx extra" in done.stderr:  # the onnx extra is checked first; not installed here
        assert done.returncode == 3
        return
    assert done.returncode == 3, done.stderr
    line = one_line(done.stderr, f"is a folder where the {fmt} file should be", "a file path")
    assert "SavedModel" not in line


# -- a value typed on the command line names its origin ---------------------------


def test_set_error_names_the_override_not_the_file():
    line = cli_fails(
        ["config", "show", str(SMOKE), "--set", "finetune.epochs=5000"],
        2,
        "--set 'finetune.epochs=5000': finetune.epochs",
    )
    assert not line.startswith(f"error: {SMOKE}")


def test_file_error_keeps_the_file_prefix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 5000\n")
    cli_fails(
        ["config", "show", str(bad), "--set", "train.batch_size=8"], 2, f"{bad}: train.epochs"
    )


def test_section_given_a_scalar():
    cli_fails(
        ["config", "show", str(SMOKE), "--set", "train=3"],
        2,
        "train is a section; set a key inside it, e.g. --set train.epochs=3",
    )


def test_finetune_option_errors_name_the_option_before_tensorflow(tmp_path, no_tf):
    model = fake_model(tmp_path / "best.keras")
    shutil.copy(SMOKE, tmp_path / "config.yaml")
    before_tf(no_tf, ["finetune", str(model), "--learning-rate", "inf"], 2, "--learning-rate inf:")
    big = "99999999999999999999"
    before_tf(no_tf, ["finetune", str(model), "--epochs", big], 2, f"--epochs {big}:", "0..1000")


# -- nan and inf, and large bounds ----------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", ".nan"])
def test_non_finite_numbers(value):
    line = cli_fails(
        ["config", "show", str(SMOKE), "--set", f"train.learning_rate={value}"],
        2,
        "train.learning_rate: must be a finite number (got",
    )
    assert "less than" not in line


def test_large_bounds_print_short():
    line = cli_fails(
        ["config", "show", str(SMOKE), "--set", "train.learning_rate=1e39"],
        2,
        "less than or equal to 1e38 ",
    )
    assert "0" * 20 not in line


# -- OS failures in plain words ----------------------------------------------------


def test_atomic_write_under_a_file(tmp_path):
    """What compare --out and export --output meet: a parent of the output is a file."""
    from fmnist_tl import atomic
    from fmnist_tl.errors import MissingFileError

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(MissingFileError) as info:
        atomic.write_text(afile / "comparison.md", "# runs")
    message = str(info.value)
    assert message.startswith(f"{afile} is a file where a folder should be (on the way to ")
    assert "move it or choose another path" in message and "File exists" not in message


def test_new_folder_under_a_file_and_a_long_name(tmp_path):
    from fmnist_tl.errors import MissingFileError
    from fmnist_tl.paths import fresh_folder as new_folder

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(MissingFileError) as info:
        new_folder(afile, "run")
    assert str(info.value) == (
        f"output.dir: {afile} is a file where a folder should be; choose another output.dir"
    )
    with pytest.raises(MissingFileError) as info:
        new_folder(tmp_path / ("d" * 300), "run")
    assert "name too long; use a shorter output.dir" in str(info.value)


def test_predict_long_image_path_says_it_once(tmp_path, no_tf):
    model = fake_model(tmp_path / "m.keras")
    long_png = str(tmp_path / ("d" * 5000)) + ".png"
    result = runner.invoke(app, ["predict", str(model), long_png])
    assert result.exit_code == 3, result.output
    line = one_line(result.output, "name too long; use a shorter path")
    assert "Errno" not in line and line.count("...") == 1


# -- damaged files, with the next step ------------------------------------------------


@pytest.mark.parametrize("text", ["", '{"command": "train",\n'])
def test_unreadable_state_says_what_to_do(tmp_path, no_tf, text):
    run = run_folder(tmp_path, SMOKE.read_text())
    (run / "state.json").write_text(text)
    before_tf(
        no_tf,
        ["train", "--resume", str(run)],
        3,
        "state.json: unreadable run state",
        f"start it again with `fmnist train {run / 'config.yaml'}`",
    )


def test_zip_that_is_no_model(tmp_path, no_tf):
    model = fake_model(tmp_path / "junk.keras", config_json=False)
    before_tf(no_tf, ["evaluate", str(model)], 3, "not a Keras model file (no config.json")


def test_config_that_is_a_folder(tmp_path):
    folder = tmp_path / "cfg.yaml"
    folder.mkdir()
    cli_fails(["train", str(folder)], 2, "is a folder, not a config file")


def test_resume_of_a_file(tmp_path, no_tf):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = before_tf(no_tf, ["train", "--resume", str(afile)], 3, "is a file, not a run folder")
    assert line.count(str(afile)) == 1


# -- export and resume fail before TensorFlow -------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "folder", "notzip"])
def test_export_bad_model_fails_before_tensorflow(tmp_path, no_tf, kind):
    model = tmp_path / "m.keras"
    if kind == "folder":
        model.mkdir()
    elif kind == "notzip":
        model.write_text("not a zip")
    needle = {
        "missing": "model file not found",
        "folder": "is a folder, not a model file",
        "notzip": "not a Keras model file",
    }[kind]
    before_tf(no_tf, ["export", str(model), "--format", "tflite"], 3, needle)


def test_finetune_without_config_fails_before_tensorflow(tmp_path, no_tf):
    model = fake_model(tmp_path / "m.keras")
    before_tf(no_tf, ["finetune", str(model)], 3, "no config.yaml beside the model")


def test_resume_bad_path_fails_before_tensorflow(tmp_path, no_tf):
    before_tf(no_tf, ["train", "--resume", str(tmp_path / "nope")], 3, "no run folder")
