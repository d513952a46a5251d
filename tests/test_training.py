"""Two-stage training on synthetic data: what stays frozen, what moves, what gets written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import NO_DOWNLOAD, SMOKE

from fmnist_tl.config import load_config
from fmnist_tl.models.assembly import build_model
from fmnist_tl.training.trainer import finetune, train

BN_STATS = ("moving_mean", "moving_variance")


def backbone_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every variable of the nested backbone, trainable or not, by path."""
    return {v.path: np.array(v.numpy()) for v in model.get_layer("backbone").weights}


def saved_backbone(tmp_path: Path, *overrides: str) -> tuple[Path, dict[str, np.ndarray]]:
    """A 'pretrained' backbone weights file, as a user would pass with model.weights: PATH."""
    built = build_model(load_config(None, ["model.weights=none", *overrides]))
    path = tmp_path / "backbone.weights.h5"
    built.backbone.save_weights(path)
    return path, backbone_weights(built.model)


MOBILENET = ["model.backbone=mobilenet_v2", "model.input_size=32", "model.head.units=16"]
# No dropout inside the backbone: Keras 3 propagates fit's training=True into nested models,
# so a frozen backbone's Dropout would be active when streaming but not when extracting
# cached features. ImageNet backbones have none; this scratch CNN stands in for them.
CNN = [
    "model.backbone=cnn",
    "model.cnn.filters=[8,16]",
    "model.cnn.convs_per_block=1",
    "model.cnn.dropout=0",
]


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_stage1_leaves_every_backbone_weight_and_bn_statistic_unchanged(tmp_path, isolated, cache):
    weights, before = saved_backbone(tmp_path, *MOBILENET)
    config = load_config(
        None,
        [
            *isolated,
            *MOBILENET,
            f"model.weights={weights}",
            "train.epochs=2",
            f"train.feature_cache={cache}",
            "train.learning_rate=0.01",
        ],
    )
    result = train(config)
    stage = result.metrics.to_dict()["stages"][0]
    assert stage["name"] == "head" and stage["epochs_run"] >= 1
    assert ("feature_cache" in stage) == (cache == "auto")
    model = keras.models.load_model(result.model_path)
    after = backbone_weights(model)
    assert after.keys() == before.keys()
    assert any(any(s in k for s in BN_STATS) for k in after)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert result.metrics.to_dict()["weights_used"].startswith("file ")


def test_stage2_changes_only_layers_from_unfreeze_from_and_no_bn_statistic(tmp_path, isolated):
    weights, _ = saved_backbone(tmp_path, *MOBILENET)
    first = train(
        load_config(None, [*isolated, *MOBILENET, f"model.weights={weights}", "train.epochs=1"])
    )
    before = backbone_weights(keras.models.load_model(first.model_path))
    second = finetune(
        first.model_path,
        unfreeze_from="block_15",
        epochs=1,
        learning_rate=0.01,
        overrides=["train.patience=null"],
    )
    assert [s["name"] for s in second.metrics.to_dict()["stages"]] == ["finetune"]
    assert second.run_dir != first.run_dir
    model = keras.models.load_model(second.model_path)
    after = backbone_weights(model)
    names = [layer.name for layer in model.get_layer("backbone").layers]
    start = next(i for i, n in enumerate(names) if n.startswith("block_15"))
    unfrozen = set(names[start:])
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed, "fine-tuning moved nothing"
    for key in changed:
        layer = key.split("/")[-2]
        assert layer in unfrozen, f"{key} moved but is before block_15"
        assert not any(s in key for s in BN_STATS), f"BatchNorm statistic {key} moved"
    # Random MobileNetV2 activations nearly vanish (docs/design.md), so not every unfrozen kernel
    # gets a gradient; the last ones must.
    assert {"Conv_1/kernel", "block_16_project/kernel"} <= changed


def test_cached_and_streaming_paths_train_the_same_head(tmp_path, isolated):
    weights, _ = saved_backbone(tmp_path, *CNN)
    heads = {}
    for cache in ("auto", "off"):
        config = load_config(
            None,
            [
                *isolated,
                *CNN,
                f"model.weights={weights}",
                "train.epochs=3",
                "train.patience=null",
                f"train.feature_cache={cache}",
                f"output.cache_dir={tmp_path / 'cache'}",
            ],
        )
        result = train(config)
        model = keras.models.load_model(result.model_path)
        heads[cache] = [
            w.numpy() for n in ("head_dense", "predictions") for w in model.get_layer(n).weights
        ]
        heads[cache + "_acc"] = result.metrics.to_dict()["test"]["accuracy"]
    for a, b in zip(heads["auto"], heads["off"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert heads["auto_acc"] == pytest.approx(heads["off_acc"], abs=0.011)


def test_feature_cache_is_reused_and_keyed(tmp_path, isolated):
    weights, _ = saved_backbone(tmp_path, *CNN)
    base = [*isolated, *CNN, f"model.weights={weights}", "train.epochs=1"]
    stages = [train(load_config(None, base)).metrics.to_dict()["stages"][0] for _ in range(2)]
    assert [s["feature_cache"] for s in stages] == ["miss", "hit"]
    # Anything the features depend on changes the key: no stale reuse.
    for change in ("model.resize_method=nearest", "data.train_limit=300", "model.input_size=32"):
        stage = train(load_config(None, [*base, change])).metrics.to_dict()["stages"][0]
        assert stage["feature_cache"] == "miss", change


def test_random_frozen_backbone_is_not_the_default(tmp_path, isolated):
    """weights: none trains the backbone from scratch (docs/design.md: frozen random is useless)."""
    config = load_config(None, [*isolated, *CNN, "model.weights=none", "train.epochs=1"])
    result = train(config)
    assert "feature_cache" not in result.metrics.to_dict()["stages"][0]
    built = build_model(config)
    before = backbone_weights(built.model)
    after = backbone_weights(keras.models.load_model(result.model_path))
    assert any(not np.array_equal(before[k], after[k]) for k in before if "kernel" in k)


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "fmnist_tl.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


RUN_FILES = (
    "best.keras",
    "config.yaml",
    "history.csv",
    "metrics.json",
    "evaluation.json",
    "history.png",
    "evaluation_confusion.png",
    "evaluation_misclassified.png",
)


def assert_run_artifacts(run: Path, log_root: Path) -> dict:
    """Every promised file of a two-stage run, its metrics and history, and its TensorBoard
    scalars read back with TF; returns metrics.json."""
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert [s["name"] for s in metrics["stages"]] == ["head", "finetune"]
    assert metrics["test"]["accuracy"] > 0.5  # the synthetic classes are learnable
    for key in ("best_epoch", "epochs_after_best", "wall_time_s", "images_per_s"):
        assert key in metrics["stages"][0]
    assert metrics["weights_used"] == "none (random init)"
    assert {"tensorflow", "keras", "numpy", "python"} <= metrics["versions"].keys()
    machine = metrics["machine"]  # what the numbers were measured on
    assert machine["cpu"] and machine["cores"] >= 1 and machine["tensorflow"].startswith("2.")
    assert metrics["timings"]["cpu_s"] > 0
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["stage"] for r in rows][-1] == "finetune"
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    import tensorflow as tf

    tags = set()
    for event_file in (log_root / run.name).rglob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert {"epoch_loss", "epoch_accuracy"} <= tags
    return metrics


def test_train_finetune_evaluate_through_the_cli(tmp_path, synthetic_dir):
    """Real subprocesses, the way a user runs them, writing every promised artifact."""
    config = tmp_path / "exp.yaml"
    config.write_text(SMOKE.read_text() + "\n# test overrides\n")
    overrides = [f"data.dir={synthetic_dir}", "data.train_limit=null", "data.test_limit=null"]
    overrides += ["output.update_best=true", "train.epochs=3", "finetune.epochs=1"]
    overrides += ["finetune.unfreeze_from=block2"]
    done = cli("train", str(config), *(a for o in overrides for a in ("--set", o)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "tensorboard --logdir logs/fit" in done.stdout
    (run,) = [p for p in (tmp_path / "saved_models").iterdir() if p.is_dir()]
    assert run.name.startswith("exp-")
    assert (tmp_path / "saved_models" / "best.keras").is_file()
    metrics = assert_run_artifacts(run, tmp_path / "logs" / "fit")

    # Evaluate: table on screen, JSON with the promised keys, identical accuracy.
    report = tmp_path / "eval.json"
    args = ["--output", str(report), "--data-dir", str(synthetic_dir)]
    done = cli("evaluate", str(run / "best.keras"), *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Ankle boot" in done.stdout
    evaluation = json.loads(report.read_text())
    assert {"accuracy", "loss", "per_class", "confusion_matrix"} <= evaluation.keys()
    assert evaluation["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert np.array(evaluation["confusion_matrix"]).sum() == 100

    # Fine-tune the published best model: a new run beside the first.
    done = cli("finetune", "--unfreeze-from", "block1", "--epochs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = sorted(p.name for p in (tmp_path / "saved_models").iterdir() if p.is_dir())
    assert len(runs) == 2 and any("finetune" in r for r in runs)


def test_offline_imagenet_weights_fail_clearly_or_fall_back_when_asked(tmp_path, synthetic_dir):
    env = {"KERAS_HOME": str(tmp_path / "keras_home"), **NO_DOWNLOAD}  # fails on any machine
    args = [
        "train",
        str(SMOKE),
        "--set",
        "model.backbone=mobilenet_v2",
        "--set",
        "model.weights=imagenet",
        "--set",
        "model.input_size=96",
        "--set",
        f"data.dir={synthetic_dir}",
        "--set",
        "train.epochs=1",
    ]
    done = cli(*args, env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
    assert str(tmp_path / "keras_home" / "models") in message
    assert "model.weights" in message and "allow_random_weights" in message
    assert not (tmp_path / "saved_models").exists()  # nothing half-written

    fallback = ["--set", "model.allow_random_weights=true", "--set", "model.fallback_input_size=32"]
    done = cli(*args, *fallback, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "RANDOM weights at 32 px" in done.stderr
    (metrics,) = (tmp_path / "saved_models").glob("*/metrics.json")
    recorded = json.loads(metrics.read_text())
    assert "random" in recorded["weights_used"]
    assert "ImageNet weights unavailable" in recorded["weights_used"]
    assert recorded["input_size"] == 32  # what was built, not the 96 asked for ImageNet
    (config,) = (tmp_path / "saved_models").glob("*/config.yaml")
    assert "input_size: 32" in config.read_text()


def test_unknown_unfreeze_layer_lists_valid_prefixes(tmp_path, isolated):
    done = cli(
        "train",
        str(SMOKE),
        *sum((["--set", o] for o in isolated), []),
        "--set",
        "finetune.epochs=1",
        "--set",
        "finetune.unfreeze_from=blokc2",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "'blokc2'" in done.stderr and "block1_conv1" in done.stderr
    assert not (tmp_path / "saved_models").exists()
