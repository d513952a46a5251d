"""Ensembles: `fmnist evaluate A.keras B.keras` and `fmnist predict A.keras B.keras IMAGE` average
the members' probabilities and report each member beside the ensemble. Two tiny runs (two
seeds of the smoke config) are the members; a model that does not take raw 28x28x1 pixels is
refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SMOKE, cli_fails, outputs
from typer.testing import CliRunner

from fmnist_tl import metrics
from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.data.images import save_png
from fmnist_tl.data.sources import load_fashion_mnist
from fmnist_tl.evaluation.loading import load_classifier
from fmnist_tl.evaluation.report import evaluate
from fmnist_tl.evaluation.scores import predict_proba
from fmnist_tl.training.trainer import train

runner = CliRunner()


@pytest.fixture(scope="module")
def members(tmp_path_factory, synthetic_dir) -> list[Path]:
    root = tmp_path_factory.mktemp("ensemble")
    runs = []
    for seed, flip in ((42, "false"), (43, "true")):  # one member with the test-time flip
        overrides = [*outputs(root, synthetic_dir), f"seed={seed}", f"augment.test_flip={flip}"]
        runs.append(train(load_config(SMOKE, overrides)).model_path)
    return runs


def test_the_ensemble_is_the_mean_of_its_members(members, synthetic_dir):
    result = evaluate(members, data_dir=str(synthetic_dir))
    ds = load_fashion_mnist(synthetic_dir)
    probs = [
        predict_proba(load_classifier(path), ds.x_test, test_flip=flip)
        for path, flip in zip(members, (False, True), strict=True)
    ]
    expected = metrics.scores(np.mean(probs, axis=0), ds.y_test)
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    alone = [metrics.scores(p, ds.y_test) for p in probs]
    assert [m["accuracy"] for m in result["members"]] == pytest.approx(
        [a["accuracy"] for a in alone]
    )
    assert [m["test_flip"] for m in result["members"]] == [False, True]
    report = Path(result["json_path"])
    assert report.name.startswith("evaluation.ensemble-") and report.parent == members[0].parent
    assert json.loads(report.read_text())["models"] == [str(p) for p in members]
    assert json.loads((members[0].parent / "evaluation.json").read_text())["n"] == 100  # kept


def test_evaluate_and_predict_take_several_models(members, synthetic_dir, tmp_path):
    data = ["--data-dir", str(synthetic_dir)]
    result = runner.invoke(app, ["evaluate", *map(str, members), *data])
    assert result.exit_code == 0, result.output
    assert "members, each alone" in result.output and "ensemble (mean" in result.output
    image = tmp_path / "shirt.png"
    save_png(load_fashion_mnist(synthetic_dir).x_test[0], image)
    result = runner.invoke(app, ["predict", *map(str, members), str(image), "--json"])
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.output)
    assert len(answer["members"]) == 2 and len(answer["top3"]) == 3


def test_a_member_that_takes_other_input_is_one_line_exit_2(members, tmp_path):
    other = tmp_path / "other.keras"
    inputs = keras.Input((32, 32, 1))
    outputs_ = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs_).save(other)
    cli_fails(["evaluate", str(members[0]), str(other)], 2, "(None, 32, 32, 1)", "28, 28, 1")


def test_the_same_member_twice_and_predict_without_images_are_exit_2(members):
    cli_fails(["evaluate", str(members[0]), str(members[0])], 2, "same model twice")
    cli_fails(["predict", str(members[0])], 2, "predict needs an image")
