"""Knowledge distillation (`train.teacher`): the loss mixes as documented, the teacher's outputs
are computed once per image (and mirror image) and reused, and a student trains on them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SMOKE, expect_error, outputs
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.data.sources import split_train_val
from fmnist_tl.evaluation.loading import load_classifier
from fmnist_tl.evaluation.scores import predict_proba
from fmnist_tl.models.frozen import FrozenPass
from fmnist_tl.training import distill
from fmnist_tl.training.splits import prepare_data
from fmnist_tl.training.trainer import train


def softened(p: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.clip(p, 1e-7, 1)) / t
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(labels, teacher, student, alpha, t, smoothing=0.0) -> np.ndarray:
    onehot = np.eye(10)[labels] * (1 - smoothing) + smoothing / 10
    hard = -(onehot * np.log(np.clip(student, 1e-7, 1))).sum(-1)
    q_t, q_s = softened(teacher, t), softened(student, t)
    kl = (q_t * (np.log(np.clip(q_t, 1e-7, 1)) - np.log(q_s + 1e-7))).sum(-1)
    return ((1 - alpha) * hard + alpha * t**2 * kl).mean()


@pytest.mark.parametrize("alpha, t, smoothing", [(0.0, 4.0, 0.0), (1.0, 2.0, 0.0), (0.3, 4.0, 0.1)])
def test_the_loss_mixes_labels_and_the_softened_teacher(alpha, t, smoothing):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 32)
    teacher, student = (rng.dirichlet(np.ones(10), 32).astype("float32") for _ in range(2))
    loss = distill.DistillationLoss(alpha, t, smoothing)
    got = float(loss(distill.with_targets(labels, teacher), student))
    assert got == pytest.approx(reference(labels, teacher, student, alpha, t, smoothing), rel=1e-4)
    if alpha == 0.0 and smoothing == 0.0:
        plain = keras.losses.SparseCategoricalCrossentropy()(labels, student)
        assert got == pytest.approx(float(plain), rel=1e-5)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, synthetic_dir):
    root = tmp_path_factory.mktemp("teacher")
    return train(load_config(SMOKE, outputs(root, synthetic_dir))).model_path


def test_the_teachers_outputs_are_computed_once_and_reused(teacher, isolated, monkeypatch):
    calls = []  # the pass that ran, per call of the teacher's pass
    real = FrozenPass.__call__

    def counted(self: FrozenPass, *a, **k):
        out = real(self, *a, **k)
        if self.what == "the teacher's pass":
            calls.append(self.name)
        return out

    monkeypatch.setattr(FrozenPass, "__call__", counted)
    keys = [f"train.teacher={teacher}", "augment.flip=true"]
    first = prepare_data(load_config(SMOKE, [*isolated, *keys]))
    assert calls == ["keras", "keras"]  # the images and their mirror images, once (auto: few)
    again = prepare_data(load_config(SMOKE, [*isolated, *keys, "seed=7"]))  # another seed
    assert len(calls) == 2  # read back from the cache
    model = load_classifier(teacher)
    expected = predict_proba(model, first.x_pool, test_flip=True)  # the flip-averaged output
    config = load_config(SMOKE, [*isolated, *keys])
    (train_part, _), (val_part, _) = split_train_val(
        expected, first.y_pool, config.data.val_split, config.seed
    )
    np.testing.assert_allclose(first.teacher[0], train_part, atol=1e-5)
    np.testing.assert_allclose(first.teacher[1], val_part, atol=1e-5)
    assert again.teacher is not None
    # Through XNNPACK: the same probabilities, cached under a key of its own.
    xnnpack = prepare_data(load_config(SMOKE, [*isolated, *keys, "runtime.frozen_pass=xnnpack"]))
    assert calls[2:] == ["xnnpack", "xnnpack"]
    np.testing.assert_allclose(xnnpack.teacher[0], train_part, atol=1e-5)
    assert len(list((Path(config.output.cache_dir)).glob("teacher-*.npy"))) == 2
    y_train, _ = first.targets
    assert y_train.shape == (len(first.y_train), 11)  # [label, the teacher's 10 probabilities]
    np.testing.assert_array_equal(y_train[:, 0], first.y_train)


def test_a_student_trains_on_its_teacher(teacher, isolated):
    keys = [f"train.teacher={teacher}", "train.distill_alpha=0.7", "train.epochs=3"]
    run = train(load_config(SMOKE, [*isolated, *keys]))
    assert run.metrics.test.accuracy > 0.5
    assert {"loss", "accuracy", "val_accuracy"} <= run.history[0].keys()


def test_a_missing_teacher_is_one_line_before_tensorflow(isolated, tmp_path, no_tf):
    args = [a for s in [*isolated, f"train.teacher={tmp_path / 'no.keras'}"] for a in ("--set", s)]
    done = subprocess.run(
        [sys.executable, "-m", "fmnist_tl.cli", "train", str(SMOKE), *args],
        capture_output=True, text=True, env=no_tf, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
    assert "train.teacher:" in done.stderr and "model file not found" in done.stderr
    expect_error(CliRunner().invoke(app, ["train", str(SMOKE), *args]), 3, "train.teacher:")
