"""Config loading and validation through the real CLI: every bad case exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def assert_config_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # one line, no traceback
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("model:\n  bakbone: cnn\n", ["model.bakbone", "unknown key", "backbone"]),
        ("train:\n  epochs: ten\n", ["train.epochs", "valid integer", "'ten'"]),
        ("train:\n  learning_rate: -0.1\n", ["train.learning_rate", "greater than 0", "-0.1"]),
        ("data:\n  val_split: 1.5\n", ["data.val_split", "less than 1", "1.5"]),
        ("model:\n  backbone: alexnet\n", ["model.backbone", "'alexnet'", "mobilenet_v2"]),
        ("model:\n  input_size: 16\n", ["model.input_size", "16", "minimum 32", "mobilenet_v2"]),
        ("model:\n  resize_method: cubic\n", ["model.resize_method", "'cubic'", "bicubic"]),
        ("model:\n  backbone: cnn\n  weights: imagenet\n", ["model.weights", "'cnn'", "none"]),
        (
            "train:\n  schedule: plateau\n  warmup_epochs: 1\n",
            ["train.warmup_epochs", "not plateau"],
        ),
        ("train:\n  epochs: 3\n  warmup_epochs: 3\n", ["train.warmup_epochs", "shorter"]),
        (
            "finetune:\n  schedule: cosine\n  min_learning_rate: 0.1\n",
            ["finetune.min_learning_rate", "below learning_rate"],
        ),
        ("train:\n  schedule: linear\n", ["train.schedule", "'linear'", "cosine"]),
        (
            "model:\n  cnn:\n    filters: [8, 16]\n    convs_per_block: [1, 2, 2]\n",
            ["model.cnn.convs_per_block", "3 entries", "2 blocks"],
        ),
        (
            "model:\n  cnn:\n    convs_per_block: [1, 5, 2]\n",
            ["model.cnn.convs_per_block", "between 1 and 4", "[1, 5, 2]"],
        ),
        ("model:\n  cnn:\n    convs_per_block: two\n", ["convs_per_block", "[1, 2, 2]", "'two'"]),
        (
            "model:\n  cnn:\n    filters: [8, 16, 32]\n    pool: [true, false]\n",
            ["model.cnn.pool", "2 entries", "3 blocks"],
        ),
        ("train: [1, 2\n", ["YAML syntax error", "line 2"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("extra_section: 1\n", ["extra_section", "unknown key", "finetune"]),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path, text, needles):
    path = write(tmp_path, text)
    for command in (["config", "show"], ["train"]):
        assert_config_error(run(*command, str(path)), str(path), *needles)


def test_missing_config_file(tmp_path):
    assert_config_error(run("train", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train.epoch=3", ["unknown key 'train.epoch'", "epochs"]),
        ("nosuch.key=1", ["unknown key 'nosuch'", "model"]),
        ("train.epochs", ["expected key.path=value"]),
        ("train.epochs=0", ["train.epochs", "greater than or equal to 1", "0"]),
        ("train.epochs.deep=1", ["'train.epochs' is a value, not a section"]),
        ("model.head.units=many", ["model.head.units", "'many'"]),
    ],
)
def test_bad_override_exits_2(tmp_path, override, needles):
    path = write(tmp_path, "seed: 1\n")
    assert_config_error(run("train", str(path), "--set", override), *needles)


def test_precedence_defaults_yaml_set(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 7\n  batch_size: 32\nmodel:\n  backbone: resnet50\n")
    result = run(
        "config", "show", str(path), "--set", "train.epochs=3", "--set", "model.weights=none"
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["train"]["epochs"] == 3  # --set beats YAML, typed as int
    assert shown["train"]["batch_size"] == 32  # YAML beats the default
    assert shown["train"]["learning_rate"] == 1e-3  # default
    assert shown["model"]["weights"] == "none"  # strings stay verbatim
    # Per-backbone defaults are resolved into the saved config.
    assert shown["model"]["input_size"] == 224
    assert shown["finetune"]["unfreeze_from"] == "conv5_block1"
    assert shown["output"]["name"] == "exp"


def test_resolved_config_round_trips(tmp_path):
    config = load_config(write(tmp_path, "model:\n  backbone: vgg16\n"), ["seed=3"])
    again = write(tmp_path, config.to_yaml())
    assert load_config(again).to_dict() == config.to_dict()


CONFIGS = REPO / "configs"


@pytest.mark.parametrize(
    "path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    assert config.output.name == path.stem


def test_version_and_help():
    result = run("--version")
    assert result.exit_code == 0 and "fmnist-tl" in result.output
    for command in ("train", "finetune", "evaluate", "config", "data"):
        result = run(command, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_unknown_command_is_usage_error():
    assert run("trian").exit_code == 2


def test_yaml_off_means_off(tmp_path):
    """YAML 1.1 reads a bare `off` as False: both the file and --set mean the string."""
    assert (
        load_config(write(tmp_path, "train:\n  feature_cache: off\n")).train.feature_cache == "off"
    )
    assert load_config(None, ["train.feature_cache=off"]).train.feature_cache == "off"


@pytest.mark.parametrize(("env", "expected"), [(None, "1 True"), ("0", "0 False")])
def test_onednn_is_on_unless_the_environment_turns_it_off(env, expected):
    """Importing fmnist_tl turns TensorFlow's oneDNN kernels on; TF_ENABLE_ONEDNN_OPTS=0 wins."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env is not None:
        environ["TF_ENABLE_ONEDNN_OPTS"] = env
    code = (
        "import os, fmnist_tl; from fmnist_tl.tfenv import onednn; "
        "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[0] == expected
