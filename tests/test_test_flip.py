"""augment.test_flip: evaluation and prediction average each image with its mirror image."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import SMOKE
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.data.images import save_png
from fmnist_tl.data.sources import load_fashion_mnist
from fmnist_tl.evaluation.loading import saved_test_flip

runner = CliRunner()


def test_test_flip_averages_each_image_with_its_mirror_image(tmp_path, isolated, synthetic_dir):
    sets = [a for item in [*isolated, "augment.test_flip=true"] for a in ("--set", item)]
    done = runner.invoke(app, ["train", str(SMOKE), *sets])
    assert done.exit_code == 0, done.output
    (run_dir,) = [p for p in (tmp_path / "saved_models").iterdir() if p.is_dir()]
    model_path = run_dir / "best.keras"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = keras.models.load_model(model_path, compile=False)
    test = load_fashion_mnist(synthetic_dir)
    x, y = test.x_test, test.y_test
    plain = np.asarray(model(x.astype("float32"), training=False))
    mirror = np.asarray(model(x[:, :, ::-1].astype("float32"), training=False))
    assert not np.allclose(plain, mirror, atol=1e-3), "the mirror image must change the output"
    both = (plain + mirror) / 2
    loss = float(-np.mean(np.log(np.clip(both[np.arange(len(y)), y], 1e-7, 1.0))))

    # The run's own test evaluation: figures for the averaged probabilities, plus the
    # single-view accuracy beside them.
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert report["test_flip"] is True
    assert report["accuracy"] == pytest.approx(np.mean(both.argmax(1) == y))
    assert report["loss"] == pytest.approx(loss, abs=1e-5)
    assert report["accuracy_without_flip"] == pytest.approx(np.mean(plain.argmax(1) == y))
    assert metrics["test"]["test_flip"] is True
    assert metrics["test"]["loss"] == pytest.approx(loss, abs=1e-5)
    alone = f"{report['accuracy_without_flip']:.4f}"
    assert f"with the test-time flip; alone {alone}" in " ".join(done.output.split())

    # `fmnist evaluate` follows the config saved beside the model unless told otherwise.
    data = ["--data-dir", str(synthetic_dir)]
    same = tmp_path / "same.json"
    done = runner.invoke(app, ["evaluate", str(model_path), *data, "--output", str(same)])
    assert done.exit_code == 0, done.output
    assert json.loads(same.read_text())["loss"] == pytest.approx(loss, abs=1e-5)
    assert f"with the test-time flip; alone {alone}" in " ".join(done.output.split())
    single = tmp_path / "single.json"
    done = runner.invoke(
        app,
        ["evaluate", str(model_path), *data, "--output", str(single), "--no-test-flip"],
    )
    assert done.exit_code == 0, done.output
    one_view = json.loads(single.read_text())
    assert one_view["test_flip"] is False and "accuracy_without_flip" not in one_view
    assert one_view["accuracy"] == pytest.approx(report["accuracy_without_flip"])

    # `fmnist predict` likewise: its top class and probability are the averaged ones, on the
    # image whose two views disagree most (the synthetic bars are nearly mirror-symmetric).
    i = int(np.argmax(np.abs(both.max(axis=1) - plain.max(axis=1))))
    assert abs(both[i].max() - plain[i].max()) > 1e-3
    save_png(x[i], tmp_path / "img.png")
    for flag, expected in (([], both[i]), (["--no-test-flip"], plain[i])):
        done = runner.invoke(
            app, ["predict", str(model_path), str(tmp_path / "img.png"), "--json", *flag]
        )
        assert done.exit_code == 0, done.output
        top = json.loads(done.stdout)[0]["top3"][0]
        assert top["class"] == int(expected.argmax())
        assert top["probability"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_test_flip_follows_the_config_saved_beside_the_model(tmp_path, capsys):
    """<stem>.config.yaml first, then config.yaml; none or an unreadable one: no flip."""
    model = tmp_path / "m.keras"
    model.write_bytes(b"")  # only the folder's configs are read
    assert saved_test_flip(model) is False
    (tmp_path / "config.yaml").write_text("augment:\n  test_flip: true\n")
    assert saved_test_flip(model) is True
    (tmp_path / "m.config.yaml").write_text("augment:\n  test_flip: false\n")
    assert saved_test_flip(model) is False
    (tmp_path / "m.config.yaml").write_text("augment: [1, 2\n")
    assert saved_test_flip(model) is False
    note = capsys.readouterr().err
    assert "m.config.yaml" in note and "--no-test-flip" in note and len(note.splitlines()) == 1
