"""The levers of issue 27 change training as documented, and nothing when left at their default.

- `train.ema` / `finetune.ema`: the optimizer keeps a moving average of the weights; validation,
  the checkpoint and the stage's result use it while the raw weights train. An average that
  barely moves (decay 1 - 1e-7) keeps the model where its first step put it (Keras starts the
  average there), scored at chance, while the raw weights train on and the loss falls.
- `finetune.layer_decay`: a block n blocks below the head learns at rate x decay**n; at a
  tiny decay the lower blocks stay where they were while the head and the top block move.
"""

from __future__ import annotations

import csv

import keras
import numpy as np
from conftest import SMOKE

from fmnist_tl.config import load_config
from fmnist_tl.models.assembly import build_model
from fmnist_tl.training.optim import compile_model, layer_rates
from fmnist_tl.training.splits import prepare_data
from fmnist_tl.training.trainer import train


def history(run) -> list[dict]:
    with (run.run_dir / "history.csv").open() as f:
        return list(csv.DictReader(f))


def test_an_average_that_barely_moves_keeps_the_initial_weights(isolated):
    keys = ["train.epochs=3", "train.patience=null", "train.ema=0.9999999"]
    config = load_config(SMOKE, [*isolated, *keys])
    initial = build_model(config).model.get_layer("predictions").get_weights()[0]
    run = train(config)
    rows = history(run)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # the raw weights trained
    assert all(float(r["val_accuracy"]) < 0.3 for r in rows)  # validation saw the average
    kept = keras.models.load_model(run.model_path, compile=False)
    moved = np.abs(kept.get_layer("predictions").get_weights()[0] - initial).max()
    assert moved <= 1.01 * config.train.learning_rate  # one Adam step at most: the first
    assert run.metrics.test.accuracy < 0.3


def test_a_working_average_trains(isolated):
    keys = ["train.epochs=4", "train.ema=0.5"]
    assert train(load_config(SMOKE, [*isolated, *keys])).metrics.test.accuracy > 0.6


def test_layer_decay_slows_each_block_below_the_head(isolated):
    keys = ["finetune.epochs=1", "finetune.layer_decay=1e-6", "finetune.learning_rate=0.003"]
    config = load_config(SMOKE, [*isolated, *keys])
    model = build_model(config).model
    rates = layer_rates(model, 1e-6)
    paths = {p.split("/")[0]: r for p, r in rates.items()}
    assert paths["predictions"] == paths["head_dense"] == 1.0
    assert paths["block2_conv1"] == 1e-6 and paths["block1_conv1"] == 1e-12
    before = {w.path: np.array(w.numpy()) for w in model.trainable_weights}
    compile_model(model, config, "finetune", steps_per_epoch=1)
    splits = prepare_data(config)
    model.fit(splits.x_train.astype("float32"), splits.y_train, epochs=1, verbose=0)
    moved = {w.path: float(np.abs(w.numpy() - before[w.path]).max()) for w in model.weights
             if w.path in before}  # fmt: skip
    assert moved["predictions/kernel"] > 1e-3 and moved["head_dense/kernel"] > 1e-3
    assert moved["block1_conv1/kernel"] < 1e-8 and moved["block2_conv1/kernel"] < 1e-5


def test_layer_decay_of_one_is_one_rate_and_plain_keras():
    config = load_config(SMOKE)
    model = build_model(config).model
    assert layer_rates(model, 1.0) == {}
    compile_model(model, config, "finetune", steps_per_epoch=1)
    assert type(model.optimizer) is keras.optimizers.Adam  # the default changes nothing
