"""Transfer learning with the real ImageNet MobileNetV2 weights (../shared/weights), on 2,000
real Fashion-MNIST training images at 96x96 (the smallest size Keras ships ImageNet weights
for; at 32x32 the 224-trained filters see too little): features worth training a head on, a
stage 2 that improves on them, and a record of exactly which weights a result came from."""

from __future__ import annotations

import pytest
from conftest import REPO, outputs

from fmnist_tl import atomic
from fmnist_tl.config import load_config
from fmnist_tl.training.trainer import train

WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_imagenet_no_top.weights.h5"
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
    random = train(
        load_config(
            None, [*SMALL, *outputs(tmp_path), "model.weights=none", "model.freeze_backbone=true"]
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
