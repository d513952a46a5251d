"""Transfer learning with the real ImageNet MobileNetV2 weights (../shared/weights), on 2,000
real Fashion-MNIST training images at 96x96 (the smallest size Keras ships ImageNet weights
for; at 32x32 the 224-trained filters see too little): features worth training a head on, a
stage 2 that improves on them, and a record of exactly which weights a result came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import NO_DOWNLOAD, SHARED_WEIGHTS, SMOKE, keras_cache, outputs

from fmnist_tl import atomic
from fmnist_tl.config import load_config
from fmnist_tl.training.trainer import train

WEIGHTS = SHARED_WEIGHTS
SMALL = [
    "model.backbone=mobilenet_v2",
    "model.input_size=96",
    "data.train_limit=2000",
    "data.test_limit=1000",
    "train.epochs=8",
    "runtime.verbose=silent",
]


@pytest.fixture(scope="module")
def weights() -> str:
    # A missing file is a failure that says so, never a silent skip: CI has ../shared.
    assert WEIGHTS.is_file(), f"{WEIGHTS} is missing: the shared ImageNet weights are needed"
    return str(WEIGHTS)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory, weights):
    tmp = tmp_path_factory.mktemp("frozen")
    return train(load_config(None, [*SMALL, *outputs(tmp), f"model.weights={weights}"]))


def test_imagenet_features_train_a_head_far_above_a_random_backbone(tmp_path, frozen):
    # Fewer images and epochs: a head on a random backbone's near-constant features stays
    # near chance however long it trains.
    less = ["data.train_limit=500", "data.test_limit=500", "train.epochs=2"]
    random = train(
        load_config(
            None,
            [*SMALL, *less, *outputs(tmp_path), "model.weights=none", "model.freeze_backbone=true"],
        )
    )
    assert frozen.metrics.stages[0].feature_cache == "miss"  # the head trained on features
    assert random.metrics.test.accuracy < 0.3  # a frozen random MobileNetV2: near chance
    assert frozen.metrics.test.accuracy > 0.7
    assert frozen.metrics.test.accuracy > random.metrics.test.accuracy + 0.4


def test_a_short_stage2_improves_on_stage1(tmp_path, weights, frozen):
    both = train(
        load_config(
            None,
            [
                *SMALL,
                *outputs(tmp_path),
                f"model.weights={weights}",
                "finetune.epochs=3",
                "finetune.learning_rate=0.0001",
            ],
        )
    )
    assert [s.name for s in both.metrics.stages] == ["head", "finetune"]
    assert both.metrics.stages[1].activation_cache == "miss"  # stage 2 on cached activations
    assert both.metrics.test.accuracy > frozen.metrics.test.accuracy + 0.01


def test_metrics_name_the_exact_weights_file(frozen, weights):
    m = frozen.metrics
    assert m.weights_used == f"file {WEIGHTS.resolve()}"
    assert m.weights_sha256 == atomic.sha256_file(weights)
    assert m.to_dict()["weights_sha256"] == m.weights_sha256


def test_a_head_only_run_is_tested_on_features_as_the_model_on_images(tmp_path, frozen):
    """The run's test figures come from the head on the test images' cached features; they
    are what `fmnist evaluate` gets running the saved model on the images."""
    from fmnist_tl.evaluation.report import evaluate

    def streamed(test_flip: bool) -> dict:
        out = tmp_path / f"flip-{test_flip}.json"
        return evaluate(frozen.model_path, test_limit=1000, output=out, test_flip=test_flip)

    m = frozen.metrics
    assert m.timings["test_features_s"] > 0 and m.timings["test_s"] < m.timings["test_features_s"]
    plain = streamed(False)
    assert m.test.accuracy == pytest.approx(plain["accuracy"], abs=1e-3)  # one image at most
    assert m.test.loss == pytest.approx(plain["loss"], abs=1e-4)

    # Another seed with the test-time flip, on the same cache: the pool's and the test images'
    # features are read back; only the mirror test images' are new.
    cache = frozen.run_dir.parent.parent / "cache"
    before = set(cache.glob("*.npy"))
    flip_args = [*SMALL, "seed=7", "augment.test_flip=true", f"model.weights={WEIGHTS}"]
    root = frozen.run_dir.parent.parent
    flip_args += [f"output.dir={root / 'saved_models'}", f"output.log_dir={root / 'logs'}"]
    flip = train(load_config(None, [*flip_args, f"output.cache_dir={cache}"]))
    assert flip.metrics.stages[0].feature_cache == "hit"
    assert len(set(cache.glob("*.npy")) - before) == 1
    both = evaluate(flip.model_path, test_limit=1000, output=tmp_path / "f.json", test_flip=True)
    assert flip.metrics.test.test_flip is True
    assert flip.metrics.test.accuracy == pytest.approx(both["accuracy"], abs=1e-3)
    assert flip.metrics.test.loss == pytest.approx(both["loss"], abs=1e-4)
    assert flip.metrics.test.accuracy_without_flip == pytest.approx(
        both["accuracy_without_flip"], abs=1e-3
    )


def test_keras_imagenet_path_loads_offline_and_matches_the_file(tmp_path, synthetic_dir):
    """`weights: imagenet` through Keras's own loading, from a cache holding the shared weights
    in Keras's layout (as a user with internet gets them): it records imagenet and the cached
    file's SHA-256, and its features are those of the same weights passed by path."""
    home = keras_cache(tmp_path / "keras_home")
    env = {**os.environ, "KERAS_HOME": str(home), **NO_DOWNLOAD}  # no download could succeed
    runs = {}
    for name, weights in (("keras", "imagenet"), ("file", str(WEIGHTS))):
        sets = [*outputs(tmp_path / name, synthetic_dir), "model.backbone=mobilenet_v2"]
        sets += ["model.input_size=96", f"model.weights={weights}", "train.epochs=2"]
        args = [a for s in sets for a in ("--set", s)]
        done = subprocess.run(
            [sys.executable, "-m", "fmnist_tl.cli", "train", str(SMOKE), *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (metrics,) = (tmp_path / name / "saved_models").glob("*/metrics.json")
        runs[name] = json.loads(metrics.read_text())
    keras_run, file_run = runs["keras"], runs["file"]
    assert keras_run["weights_requested"] == keras_run["weights_used"] == "imagenet"
    cached = home / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert keras_run["weights_sha256"] == atomic.sha256_file(cached)
    assert keras_run["stages"][0]["feature_cache"] == "miss"  # features of its own pass
    features = {
        name: sorted((np.load(p) for p in (tmp_path / name / "cache").glob("*.npy")), key=len)
        for name in runs
    }
    assert len(features["keras"]) == len(features["file"]) >= 2  # pool and test images
    for a, b in zip(features["keras"], features["file"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert keras_run["test"] == file_run["test"]
