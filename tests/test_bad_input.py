"""Bad input through the CLI: one line, the documented exit code, no traceback, nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SMOKE, cli_fails, snapshot
from typer.testing import CliRunner

from fmnist_tl.config import load_config
from fmnist_tl.data.images import save_png
from fmnist_tl.models.assembly import build_model
from fmnist_tl.training.trainer import train

runner = CliRunner()


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
    save_png(np.zeros((28, 28), "uint8"), image)
    extra = {
        "evaluate": ["--data-dir", str(synthetic_dir)],
        "finetune": [],
        "predict": [str(image)],
    }
    before = snapshot(bad_models["text"].parent)
    cli_fails([command, str(bad_models["missing"]), *extra[command]], 3, "nope.keras", "not found")
    if command != "finetune":  # finetune first needs the config saved beside the model
        cli_fails(
            [command, str(bad_models["text"]), *extra[command]], 3, "notes.keras", "not a Keras"
        )
        cli_fails(
            [command, str(bad_models["wrong"]), *extra[command]],
            2,
            "wrong_shape.keras",
            "(None, 28, 28, 1)",
        )
    else:
        cli_fails([command, str(bad_models["wrong"])], 3, "no config.yaml beside the model")
    assert snapshot(bad_models["text"].parent) == before


def test_unwritable_output_folder(tmp_path, isolated):
    blocker = tmp_path / "afile"
    blocker.write_text("a file where a folder should be")
    args = ["train", str(SMOKE), *sum((["--set", o] for o in isolated), [])]
    cli_fails([*args, "--set", f"output.dir={blocker / 'sub'}"], 3, "output.dir", str(blocker))
    assert blocker.read_text() == "a file where a folder should be"


def test_diverging_loss_stops_with_stage_epoch_and_learning_rate(tmp_path, isolated):
    args = ["train", str(SMOKE), *sum((["--set", o] for o in isolated), [])]
    out = cli_fails(
        [*args, "--set", "train.learning_rate=1e8", "--set", "train.epochs=3"],
        4,
        "stage head",
        "epoch 1",
        "learning rate 1e+08",
    )
    assert "nan" in out or "inf" in out
    (run,) = (tmp_path / "saved_models").iterdir()
    assert not (run / "best.keras").exists() and not (run / "metrics.json").exists()
    before = snapshot(tmp_path)
    cli_fails(["train", "--resume", str(run)], 2, "diverged", "lower learning rate")
    assert snapshot(tmp_path) == before


def test_divergence_in_stage2_keeps_the_stage1_model(tmp_path, isolated):
    args = ["train", str(SMOKE), *sum((["--set", o] for o in isolated), [])]
    out = cli_fails(
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
    # The NaN epoch wrote its history row, but neither the checkpoint nor the resume state.
    assert (run / "best.keras").stat().st_mtime_ns < (run / "history.csv").stat().st_mtime_ns
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["checkpoint"]["best_epoch"] <= 2


def test_same_seed_same_numbers_on_cpu(tmp_path, isolated):
    results = [train(load_config(SMOKE, isolated)) for _ in range(2)]
    a, b = (json.loads((r.run_dir / "metrics.json").read_text()) for r in results)
    assert a["test"] == b["test"]
    losses = [
        [row.split(",")[2:5:2] for row in (r.run_dir / "history.csv").read_text().splitlines()]
        for r in results
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 3  # header + 2 epochs, loss/val_loss
    other = train(load_config(SMOKE, [*isolated, "seed=1"]))
    assert [r["loss"] for r in other.history] != [r["loss"] for r in results[0].history]
    metrics = json.loads((results[0].run_dir / "metrics.json").read_text())
    assert metrics["seed"] == 0


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, synthetic_dir) -> Path:
    """A folder as `fmnist train` leaves it: best.keras (untrained here) and config.yaml."""
    root = tmp_path_factory.mktemp("run")
    config = load_config(
        SMOKE,
        [
            f"data.dir={synthetic_dir}",
            f"output.dir={root / 'saved_models'}",
            f"output.log_dir={root / 'logs'}",
            f"output.cache_dir={root / 'cache'}",
        ],
    )
    build_model(config).model.save(root / "best.keras")
    (root / "config.yaml").write_text(config.to_yaml())
    return root


def test_finetune_a_bad_model_that_has_a_config_beside_it(tmp_path, saved_run, bad_models):
    (tmp_path / "config.yaml").write_text((saved_run / "config.yaml").read_text())
    for name in ("text", "wrong"):
        (tmp_path / bad_models[name].name).write_bytes(bad_models[name].read_bytes())
    before = snapshot(tmp_path)
    cli_fails(["finetune", str(tmp_path / "notes.keras")], 3, "notes.keras", "not a Keras model")
    cli_fails(["finetune", str(tmp_path / "wrong_shape.keras")], 2, "(None, 28, 28, 1)")
    assert snapshot(tmp_path) == before


def test_finetune_unknown_layer_lists_the_valid_ones(saved_run):
    before = snapshot(saved_run)
    cli_fails(
        ["finetune", str(saved_run / "best.keras"), "--unfreeze-from", "blokc2"],
        2,
        "'blokc2'",
        "block1_conv1",
    )
    assert snapshot(saved_run) == before  # no run folder started


def test_unwritable_places_for_evaluate_and_finetune(tmp_path, saved_run, synthetic_dir):
    blocker = tmp_path / "afile"  # a file where a folder should be: stops root as well
    blocker.write_text("not a folder")
    before, before_run = snapshot(tmp_path), snapshot(saved_run)
    model = str(saved_run / "best.keras")
    report = blocker / "sub" / "eval.json"
    args = ["evaluate", model, "--output", str(report), "--data-dir", str(synthetic_dir)]
    cli_fails(args, 3, "eval.json", "cannot write")
    cli_fails(["finetune", model, "--set", f"output.dir={blocker / 'sub'}"], 3, "output.dir")
    assert snapshot(tmp_path) == before and snapshot(saved_run) == before_run


def test_predict_files_that_are_not_images(tmp_path, saved_run):
    good = tmp_path / "shirt.png"
    save_png(np.full((28, 28), 200, "uint8"), good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:40])
    empty = tmp_path / "empty.jpg"
    empty.touch()
    folder = tmp_path / "folder.png"
    folder.mkdir()
    model = str(saved_run / "best.keras")
    before = snapshot(tmp_path)
    for bad, reason in (
        (truncated, "not a readable image"),
        (empty, "not a readable image"),
        (folder, "it is a directory"),
        (tmp_path / "missing.png", "no such file"),
    ):
        cli_fails(["predict", model, str(good), str(bad)], 3, bad.name, reason)
    assert snapshot(tmp_path) == before


def test_deterministic_ops_do_not_break_a_run(tmp_path, isolated):
    """runtime.deterministic turns on TF op determinism for the whole process: run it apart."""
    args = [a for o in [*isolated, "runtime.deterministic=true"] for a in ("--set", o)]
    done = subprocess.run(
        [sys.executable, "-m", "fmnist_tl.cli", "train", str(SMOKE), *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (metrics,) = (tmp_path / "saved_models").glob("*/metrics.json")
    assert json.loads(metrics.read_text())["test"]["accuracy"] > 0.5


@pytest.mark.parametrize(
    ("loss", "diverged"),
    [(2.3, False), (16.1, False), (5e29, True), (float("inf"), True), (float("nan"), True)],
)
def test_divergence_guard_catches_nan_inf_and_exploded_losses(loss, diverged):
    """A finite loss of 1e29 (oneDNN at a huge learning rate) is as diverged as NaN."""
    from fmnist_tl.training.callbacks import DivergenceGuard

    guard = DivergenceGuard()
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": loss})
    assert (guard.diverged_at is not None) == diverged
    assert getattr(guard.model, "stop_training", False) == diverged
    if diverged:
        assert guard.diverged_at[0] == 3  # 1-based epoch, for the message
