"""Learning-rate schedules: the values each stage trains at, in the schedule and in a real run."""

from __future__ import annotations

import csv
import math

import keras
import numpy as np
import pytest
from conftest import SMOKE

from fmnist_tl.config import load_config
from fmnist_tl.training.callbacks import plateau_callback
from fmnist_tl.training.optim import learning_rate
from fmnist_tl.training.trainer import train


def lr_at(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cosine_with_warmup_rises_linearly_then_decays_to_the_floor():
    config = load_config(
        None,
        [
            "train.epochs=10",
            "train.learning_rate=0.01",
            "train.schedule=cosine",
            "train.warmup_epochs=2",
            "train.min_learning_rate=0.0001",
        ],
    )
    sched = learning_rate(config, "head", steps_per_epoch=100)
    assert lr_at(sched, 0) == 0.0
    assert lr_at(sched, 100) == pytest.approx(0.005)  # half-way through the warmup
    assert lr_at(sched, 200) == pytest.approx(0.01)  # the peak, at the end of warmup
    # Half-way through the decay: the mean of peak and floor.
    assert lr_at(sched, 600) == pytest.approx((0.01 + 0.0001) / 2, rel=1e-5)
    assert lr_at(sched, 1000) == pytest.approx(0.0001, rel=1e-5)


def test_each_stage_has_its_own_schedule():
    config = load_config(
        None,
        [
            "train.learning_rate=0.001",
            "finetune.epochs=4",
            "finetune.learning_rate=0.00002",
            "finetune.warmup_epochs=1",
        ],
    )
    assert learning_rate(config, "head", 50) == 0.001  # constant: a plain number
    finetune = learning_rate(config, "finetune", 50)  # constant after a linear warmup
    assert [lr_at(finetune, s) for s in (0, 25, 50, 120, 199)] == pytest.approx(
        [0.0, 0.00001, 0.00002, 0.00002, 0.00002]
    )


def test_plateau_halves_the_rate_and_its_counters_survive_a_resume():
    config = load_config(
        None, ["train.schedule=plateau", "train.plateau_patience=2", "train.plateau_factor=0.5"]
    )
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    plateau = plateau_callback(config, "head", "val_loss")
    plateau.set_model(model)
    plateau.on_train_begin()
    for epoch, val_loss in enumerate([1.0, 0.9, 0.95]):  # best 0.9, then one worse epoch
        plateau.on_epoch_end(epoch, {"val_loss": val_loss})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    saved = plateau.state()
    assert saved == {"wait": 1, "cooldown_counter": 0, "best": pytest.approx(0.9)}

    resumed = plateau_callback(config, "head", "val_loss", resume_from=saved)
    resumed.set_model(model)
    resumed.on_train_begin()  # Keras resets the counters here; the saved ones come back
    resumed.on_epoch_end(3, {"val_loss": 0.92})  # the second epoch without improvement
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)
    assert plateau_callback(load_config(None, []), "head", "val_loss") is None


def test_a_real_run_trains_at_the_cosine_rates(tmp_path, isolated):
    steps = 3  # 320 training images (400, less the validation split) at batch 128
    config = load_config(
        SMOKE,
        [
            *isolated,
            "train.epochs=4",
            "train.batch_size=128",
            "train.patience=null",
            "train.schedule=cosine",
            "train.warmup_epochs=1",
            "train.min_learning_rate=0.0003",
        ],
    )
    result = train(config)
    with (result.run_dir / "history.csv").open() as f:
        rates = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    # The rate after each epoch's last step: the warmup's peak, then down the cosine.
    peak, floor, decay = 0.003, 0.0003, 3 * steps
    expected = [
        floor + (peak - floor) * (1 + math.cos(math.pi * (e * steps - steps) / decay)) / 2
        for e in range(1, 5)
    ]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
