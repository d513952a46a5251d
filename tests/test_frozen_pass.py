"""Issue 29: every frozen forward pass through XNNPACK (LiteRT) when it checks out against Keras.

Everything here is real: real Fashion-MNIST images, the shared ImageNet MobileNetV2 weights,
the TFLite converter and LiteRT's interpreter, runs through `train`, `evaluate` and `predict`.
The converted pass matches Keras's within `frozen.TOLERANCE` for each backbone family and for a
cut inside MobileNetV2; a converted model that computes something else (a stale file under
this model's key) and a machine with no interpreter fall back to Keras with one line; without
LiteRT, TensorFlow's own interpreter runs the converted pass; the features and the converted
model are reused across seeds; `runtime.frozen_pass: keras` is today's pass under today's
cache keys; and a head-only run scores the same test accuracy within 0.1 points both ways, as
do `evaluate` and `predict` of its model on XNNPACK.

Sizes are the smallest that show each point (32 px, a linear head, 3,000 + 2,000 images).
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS, SMOKE, outputs
from PIL import Image

from fmnist_tl.cache import save_bytes
from fmnist_tl.config import load_config
from fmnist_tl.data.sources import load_fashion_mnist
from fmnist_tl.evaluation.predict import predict_images
from fmnist_tl.evaluation.report import evaluate
from fmnist_tl.models import frozen, litert
from fmnist_tl.models.assembly import build_model
from fmnist_tl.models.frozen import TOLERANCE, Check, FrozenPass, PassSetup
from fmnist_tl.models.inference import infer
from fmnist_tl.training import features, runtime, stage2
from fmnist_tl.training.splits import prepare_data
from fmnist_tl.training.trainer import train

MOBILENET = [
    "model.backbone=mobilenet_v2",
    "model.input_size=32",
    f"model.weights={SHARED_WEIGHTS}",
]
# MobileNetV2 with the ImageNet weights: its features in the head-only runs below (3,000
# real images, file against file) and a cut inside it. No ImageNet weights for these here: a
# frozen random backbone still computes a function.
FAMILIES = {
    "resnet50": ["model.backbone=resnet50", "model.input_size=32", "model.weights=none"],
    "vgg16": ["model.backbone=vgg16", "model.input_size=32", "model.weights=none"],
}
FROZEN = ["model.freeze_backbone=true"]


@pytest.fixture(scope="module")
def real_images() -> np.ndarray:
    """64 Fashion-MNIST test images (the installed data set; never a download)."""
    return load_fashion_mnist(allow_download=False).x_test[:64]


def within_tolerance(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= TOLERANCE * np.max(np.abs(ref))


# ResNet50's 25M weights cost 12-16 CPU s to convert and trace (VGG16's 15M, 5): worth it, as
# the one residual family; MobileNetV2's features are checked by the runs below.
@pytest.mark.parametrize("family", ["resnet50", "vgg16"])
def test_xnnpack_features_equal_keras_within_the_tolerance(family, real_images):
    built = build_model(load_config(None, [*FAMILIES[family], *FROZEN]))
    extractor = built.feature_extractor
    got = litert.Compiled(litert.convert(extractor))(real_images)
    ref = infer(extractor, real_images)
    within_tolerance(got, ref)
    heads = [np.asarray(built.head(f, training=False)).argmax(-1) for f in (got, ref)]
    np.testing.assert_array_equal(*heads)  # the head's top-1 unchanged


def test_stage2_activations_below_a_cut_inside_mobilenet_v2_match_keras(tmp_path, real_images):
    sets = ["finetune.unfreeze_from=block_5_depthwise", "finetune.activation_dtype=float32"]
    sets += [f"output.cache_dir={tmp_path}", "runtime.frozen_pass=xnnpack"]
    config = load_config(None, [*MOBILENET, *sets])
    model = build_model(config).model
    plan = stage2.plan_stage2(config, model, len(real_images), None, real_images)
    assert plan.cached and plan.parts is not None and plan.frozen is not None
    assert plan.cut.moved and plan.cut.producer == "block_4_add"  # inside block 5: its input
    acts, info = stage2.pool_activations(plan, real_images, tmp_path)
    assert (info["cache"], info["pass"]) == ("miss", "xnnpack")
    check = plan.frozen.check
    assert check is not None and check.passed and check.images == len(real_images)
    within_tolerance(np.asarray(acts), infer(plan.parts.bottom, real_images))
    assert len(list(tmp_path.glob("xnnpack-*.tflite"))) == 1  # kept for the next run

    # The next plan (another seed, a resumed run) reads XNNPACK's activations back, unbuilt.
    again = stage2.plan_stage2(config, model, len(real_images), None, real_images)
    cached, info = stage2.pool_activations(again, real_images, tmp_path)
    assert (info["cache"], info["pass"]) == ("hit", "xnnpack") and again.frozen.check is None
    np.testing.assert_array_equal(cached, acts)


def smoke_extractor(seed: int):
    keras.utils.set_random_seed(seed)
    return build_model(load_config(SMOKE, FROZEN))


def test_a_converted_model_that_does_not_match_falls_back_to_keras_with_one_line(
    tmp_path, capsys, real_images
):
    """A verified file under this model's key that holds another model's conversion (the same
    layers, other weights): the real interpreter runs it, the check sees it, Keras runs."""
    built, other = smoke_extractor(1), smoke_extractor(2)
    key = frozen.model_key(built.feature_extractor)
    assert frozen.model_key(other.feature_extractor) != key
    stale = litert.convert(other.feature_extractor)
    save_bytes(tmp_path / f"xnnpack-{key}.tflite", stale, what=frozen.WHAT)
    setup = PassSetup("xnnpack", tmp_path)
    run = FrozenPass(built.feature_extractor, setup, 64, head=built.head, what="the features")
    got = run(real_images)
    assert run.name == "keras" and run.check is not None and not run.check.passed
    assert run.check.max_abs_diff > TOLERANCE * run.check.scale
    np.testing.assert_array_equal(got, infer(built.feature_extractor, real_images))
    lines = [line for line in capsys.readouterr().err.splitlines() if "XNNPACK" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("note: XNNPACK is off for the features: it differs from Keras")
    assert "(allowed 0.001 x their scale" in lines[0] and lines[0].endswith("; Keras runs it")


def test_without_litert_tensorflows_interpreter_runs_it_and_without_both_keras(
    tmp_path, capsys, monkeypatch, real_images
):
    import tensorflow as tf

    built = smoke_extractor(1)
    x = real_images[:16]
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # an ImportError
    assert litert.runtime().startswith("tf.lite.Interpreter")
    run = FrozenPass(built.feature_extractor, PassSetup("xnnpack", tmp_path), len(x))
    within_tolerance(run(x), infer(built.feature_extractor, x))
    assert run.name == "xnnpack" and run.check is not None and run.check.passed
    assert not [line for line in capsys.readouterr().err.splitlines() if "XNNPACK" in line]

    monkeypatch.delattr(tf.lite, "Interpreter")  # a TensorFlow without it, and no LiteRT
    assert litert.runtime() == "none"
    run = FrozenPass(built.feature_extractor, PassSetup("xnnpack", tmp_path), len(x), what="it")
    assert run.build(x) == "keras"
    err = [line for line in capsys.readouterr().err.splitlines() if "XNNPACK" in line]
    assert err == [
        "note: XNNPACK is off for it: it cannot be converted or run (neither ai-edge-litert "
        "nor tf.lite.Interpreter is installed); Keras runs it"
    ]


def test_auto_keeps_keras_where_xnnpack_is_slower_and_xnnpack_asks_for_it_anyway(
    tmp_path, capsys, monkeypatch, real_images
):
    """The check times both passes on its images: `auto` leaves an exact XNNPACK pass that
    ran below `MIN_SPEED` of Keras's speed (a real interpreter, slowed by a sleep per batch,
    stands in for a backbone XNNPACK runs slowly), with one line; `xnnpack` keeps it."""
    import time

    monkeypatch.setattr(frozen, "_has_gpu", lambda: False)
    built = smoke_extractor(1)
    real_call = litert.Compiled.__call__
    monkeypatch.setattr(
        litert.Compiled,
        "__call__",
        lambda self, x, *a, **k: time.sleep(0.3) or real_call(self, x, *a, **k),
    )
    n = frozen.MIN_IMAGES  # enough for `auto` to ask for XNNPACK
    slow = FrozenPass(built.feature_extractor, PassSetup("auto", tmp_path), n, what="the features")
    assert slow.intended == "xnnpack"
    assert slow.build(real_images) == "keras"
    assert slow.check is not None and slow.check.passed and slow.check.speed < frozen.MIN_SPEED
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "XNNPACK" in line]
    assert line.startswith("note: XNNPACK is off for the features: it ran at 0.")
    assert line.endswith(
        "x Keras's speed on 64 images (runtime.frozen_pass=xnnpack uses it anyway); Keras runs it"
    )
    asked = FrozenPass(built.feature_extractor, PassSetup("xnnpack", tmp_path), n)
    assert asked.build(real_images) == "xnnpack"
    assert not [line for line in capsys.readouterr().err.splitlines() if "XNNPACK" in line]
    monkeypatch.setattr(litert.Compiled, "__call__", real_call)  # at its own speed: kept
    fast = FrozenPass(built.feature_extractor, PassSetup("auto", tmp_path), n)
    x = np.concatenate([real_images] * 4)  # 4 batches: the first of each pass is not timed
    assert fast.build(x) == "xnnpack" and fast.check.speed >= frozen.MIN_SPEED


def test_the_check_needs_the_same_top1_and_the_pass_follows_the_setup(monkeypatch):
    from fmnist_tl.config import key_table

    (row,) = [r for r in key_table() if r.key == "runtime.frozen_pass"]  # `fmnist config keys`
    assert row.default == "auto" and all(m in row.type for m in frozen.MODES)
    assert Check(256, 1e-5, 1.0, 0).passed
    assert not Check(256, 1e-5, 1.0, 1).passed  # a top-1 changed, however small the difference
    assert Check(256, 1e-5, 1.0, 1).why().endswith("changes the top-1 class of 1 of them")
    assert not Check(256, 2e-3, 1.0, 0).passed
    assert "top-1" not in Check(256, 2e-3, 1.0, 0).why()
    assert not Check(256, float("nan"), 1.0, 0).passed
    monkeypatch.setattr(frozen, "_has_gpu", lambda: False)
    assert PassSetup().intended(frozen.MIN_IMAGES - 1) == "keras"  # auto: too few to convert
    assert PassSetup().intended(frozen.MIN_IMAGES) == "xnnpack"
    assert PassSetup("xnnpack").intended(1) == "xnnpack"
    assert PassSetup("keras").intended(10**6) == "keras"
    assert PassSetup("xnnpack", distributed=True).intended(10**6) == "keras"
    monkeypatch.setattr(frozen, "_has_gpu", lambda: True)
    assert PassSetup("xnnpack").intended(10**6) == "keras"


# A linear head (softmax regression): its loss is convex, so training ends near the one optimum
# and a 1e-5 change in the features moves the test accuracy only as far as the pass itself
# does. The default head (Dense 256 + dropout) follows a trajectory that amplifies any such
# change: measured (3,000 + 2,000 real images, 96 px), 5 epochs ended 1.15 points apart and 10
# cosine epochs 0.2 points apart, while each pass repeated its own run exactly.
REAL = [
    *MOBILENET,
    "model.head.units=0",
    "model.head.dropout=0",
    "data.train_limit=3000",
    "data.test_limit=2000",
    "train.epochs=3",
    "finetune.epochs=0",
]


def test_head_only_runs_agree_reuse_their_pass_and_keras_gives_todays_numbers(
    tmp_path, monkeypatch
):
    conversions = []
    convert = litert.convert
    monkeypatch.setattr(litert, "convert", lambda m: conversions.append(m) or convert(m))

    def run(mode: str, *sets: str):
        return train(load_config(None, [*REAL, *outputs(tmp_path / mode), *sets, mode]))

    keras_run = run("runtime.frozen_pass=keras")
    xnnpack_run = run("runtime.frozen_pass=xnnpack")
    assert keras_run.metrics.stages[0].feature_pass == keras_run.metrics.test_pass == "keras"
    assert xnnpack_run.metrics.stages[0].feature_pass == xnnpack_run.metrics.test_pass == "xnnpack"
    assert len(conversions) == 1  # one conversion for the pool and the test images
    gap = abs(xnnpack_run.metrics.test.accuracy - keras_run.metrics.test.accuracy)
    assert gap <= 0.001, (keras_run.metrics.test.accuracy, xnnpack_run.metrics.test.accuracy)
    x_test = keras_features_are_todays(keras_run, tmp_path)

    # Another seed with fewer test images: the pool's features are read back, the test images'
    # are new, made by the converted model read back from the cache folder.
    again = run("runtime.frozen_pass=xnnpack", "seed=2", "data.test_limit=500")
    assert again.metrics.stages[0].feature_cache == "hit"
    assert again.metrics.stages[0].feature_pass == again.metrics.test_pass == "xnnpack"
    assert again.metrics.runtime is not None and again.metrics.runtime.frozen_pass == "xnnpack"
    assert again.metrics.runtime.xnnpack.startswith("ai-edge-litert ")
    assert len(conversions) == 1

    # `evaluate` and `predict` run the whole saved model through XNNPACK (its saved config
    # asks for it): one more conversion, of that model, which predict reads back.
    report = evaluate(xnnpack_run.model_path, test_limit=2000, output=tmp_path / "eval.json")
    assert report["frozen_pass"] == "xnnpack" and len(conversions) == 2
    assert abs(report["accuracy"] - xnnpack_run.metrics.test.accuracy) <= 0.001
    predict_on_xnnpack(xnnpack_run.model_path, x_test[:3], tmp_path, monkeypatch)
    assert len(conversions) == 2
    keys = [frozen.model_key(m) for m in conversions]
    assert len(set(keys)) == len(keys)  # no model converted twice
    xnnpack_cache = tmp_path / "runtime.frozen_pass=xnnpack" / "cache"
    assert sorted(p.stem for p in xnnpack_cache.glob("*.tflite")) == sorted(
        f"xnnpack-{k}" for k in keys
    )


def keras_features_are_todays(keras_run, tmp_path) -> np.ndarray:
    """The Keras run converted nothing and keeps the key it had before there was a choice, with
    inference.infer's features in it; XNNPACK's features of the same 3,000 images are within
    the tolerance of those, file against file. Returns the test images."""
    cache = tmp_path / "runtime.frozen_pass=keras" / "cache"
    assert not list(cache.glob("xnnpack-*"))
    config = load_config(keras_run.run_dir / "config.yaml")
    runtime.apply(config)
    built, splits = build_model(config), prepare_data(config)
    key = features.cache_key(config, built.weights_used, splits.x_pool)
    keras_features = np.load(cache / f"{key}.npy")
    np.testing.assert_array_equal(keras_features, infer(built.feature_extractor, splits.x_pool))
    made_by = features.cache_key(config, built.weights_used, splits.x_pool, made_by="xnnpack")
    xnnpack_cache = tmp_path / "runtime.frozen_pass=xnnpack" / "cache"
    within_tolerance(np.load(xnnpack_cache / f"{made_by}.npy"), keras_features)
    return splits.x_test


def predict_on_xnnpack(model_path, images: np.ndarray, tmp_path, monkeypatch) -> None:
    """`fmnist predict` of these images as PNG files runs the converted model (its check, then
    the images) and agrees with Keras on each top-1 class and its probability."""
    pictures = []
    for i, image in enumerate(images):
        pictures.append(tmp_path / f"{i}.png")
        Image.fromarray(image[..., 0]).save(pictures[-1])
    ran = []
    call = litert.Compiled.__call__
    monkeypatch.setattr(litert.Compiled, "__call__", lambda *a, **k: ran.append(1) or call(*a, **k))
    predicted = predict_images(model_path, pictures, test_flip=False)
    assert len(ran) == 2  # the check's run, then the images'
    probs = infer(keras.models.load_model(model_path, compile=False), images)
    for p, ref in zip(predicted, probs, strict=True):
        assert p["top3"][0]["class"] == int(ref.argmax())
        assert abs(p["top3"][0]["probability"] - float(ref.max())) <= TOLERANCE
