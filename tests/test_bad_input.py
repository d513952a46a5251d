"""Bad input through the CLI: one line, the documented exit code, no traceback, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from conftest import SMOKE
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.trainer import train

runner = CliRunner()


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def fails(args: list[str], code: int, *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    return result.output


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    text = root / "notes.keras"
    text.write_text("not a model")
    wrong = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    wrong.save(root / "wrong_shape.keras")
    return {"missing": root / "nope.keras", "text": text, "wrong": root / "wrong_shape.keras"}


@pytest.mark.parametrize("command", ["evaluate", "finetune", "predict"])
def test_bad_model_files(tmp_path, bad_models, command, synthetic_dir):
    image = tmp_path / "x.png"
    from fmnist_tl.images import save_png

    save_png(__import__("numpy").zeros((28, 28), "uint8"), image)
    extra = {
        "evaluate": ["--data-dir", str(synthetic_dir)],
        "finetune": [],
        "predict": [str(image)],
    }
    before = snapshot(bad_models["text"].parent)
    fails([command, str(bad_models["missing"]), *extra[command]], 3, "nope.keras", "not found")
    if command != "finetune":  # finetune first needs the config saved beside the model
        fails([command, str(bad_models["text"]), *extra[command]], 3, "notes.keras", "not a Keras")
        fails(
            [command, str(bad_models["wrong"]), *extra[command]],
            2,
            "wrong_shape.keras",
            "(None, 28, 28, 1)",
        )
    else:
        fails([command, str(bad_models["wrong"])], 3, "no config.yaml beside the model")
    assert snapshot(bad_models["text"].parent) == before


def test_unwritable_output_folder(tmp_path, isolated):
    blocker = tmp_path / "afile"
    blocker.write_text("a file where a folder should be")
    args = ["train", str(SMOKE), *sum((["--set", o] for o in isolated), [])]
    fails([*args, "--set", f"output.dir={blocker / 'sub'}"], 3, "output.dir", str(blocker))
    assert blocker.read_text() == "a file where a folder should be"


def test_diverging_loss_stops_with_stage_epoch_and_learning_rate(tmp_path, isolated):
    args = ["train", str(SMOKE), *sum((["--set", o] for o in isolated), [])]
    out = fails(
        [*args, "--set", "train.learning_rate=1e8", "--set", "train.epochs=3"],
        4,
        "stage head",
        "epoch 1",
        "learning rate 1e+08",
    )
    assert "nan" in out or "inf" in out
    (run,) = (tmp_path / "saved_models").iterdir()
    assert not (run / "best.keras").exists() and not (run / "metrics.json").exists()


def test_divergence_in_stage2_keeps_the_stage1_model(tmp_path, isolated):
    args = ["train", str(SMOKE), *sum((["--set", o] for o in isolated), [])]
    out = fails(
        [
            *args,
            "--set",
            "finetune.epochs=2",
            "--set",
            "finetune.unfreeze_from=block1",
            "--set",
            "finetune.learning_rate=1e9",
        ],
        4,
        "stage finetune",
        "is kept in",
    )
    (run,) = (tmp_path / "saved_models").iterdir()
    model = keras.models.load_model(run / "best.keras", compile=False)  # the stage-1 model
    assert model.output_shape == (None, 10)
    assert "epoch 3" in out  # stage 2 continues the epoch count after stage 1's two epochs


def test_same_seed_same_numbers_on_cpu(tmp_path, isolated):
    results = [train(load_config(SMOKE, isolated)) for _ in range(2)]
    a, b = (r.metrics for r in results)
    assert a["test"] == b["test"]
    assert [r["loss"] for r in results[0].history] == [r["loss"] for r in results[1].history]
    other = train(load_config(SMOKE, [*isolated, "seed=1"]))
    assert [r["loss"] for r in other.history] != [r["loss"] for r in results[0].history]
    metrics = json.loads((results[0].run_dir / "metrics.json").read_text())
    assert metrics["seed"] == 0
