"""Mirror views: with a flip as the only augmentation, the feature and activation caches keep
each image's and its mirror image's views, and each epoch draws one per example by the seed.

The equivalence check uses left-right symmetric images: both views are then the same tensor,
so the cached path (views drawn) and the streaming path (RandomFlip on the images) must train
exactly the same weights; the draw itself is checked on its own, and the cached mirror views
against the bottom run on the mirror images.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import SMOKE, learnable, write_idx
from test_resume import EXACT
from test_stage2_cache import MOBILENET, STAGE2, imagenet_weights
from test_training import backbone_weights

from fmnist_tl.config import load_config
from fmnist_tl.data import pipeline
from fmnist_tl.data import sources as data
from fmnist_tl.models.assembly import build_model
from fmnist_tl.training import runtime
from fmnist_tl.training.features import FeatureStore
from fmnist_tl.training.splits import prepare_data
from fmnist_tl.training.stage1 import stage1_inputs
from fmnist_tl.training.stage2 import (
    BackbonePass,
    plan_stage2,
    pool_activations,
    stage2_inputs,
)
from fmnist_tl.training.trainer import train


def draws(seed: int, epochs: int = 2, n: int = 1000) -> list[np.ndarray]:
    """The view each example got in each epoch: view v of example i holds (v, i)."""
    x = np.zeros((n, 2, 2), np.float32)
    x[:, 1, 0] = 1  # the view's number
    x[:, :, 1] = np.arange(n)[:, None]  # the example's
    keras.utils.set_random_seed(seed)  # as runtime.apply does at the start of a run
    ds = pipeline.make_dataset(x, np.arange(n), batch_size=64, shuffle=True, seed=seed, views=True)
    out = []
    for _ in range(epochs):
        got = np.full(n, -1)
        for a, b in ds:
            a, b = a.numpy(), b.numpy()
            np.testing.assert_array_equal(a[:, 1], b)  # the example's own view, never another's
            got[b] = a[:, 0]
        assert set(np.unique(got)) == {0, 1}  # every example seen, as one of its two views
        out.append(got)
    return out


def test_mirror_views_are_drawn_by_the_seed():
    first, second = draws(0)
    assert 0.45 < first.mean() < 0.55 and 0.45 < second.mean() < 0.55  # a fair coin
    assert 0.4 < np.mean(first != second) < 0.6  # redrawn each epoch, independently
    again = draws(0)
    np.testing.assert_array_equal(again[0], first)  # the same seed draws the same views
    np.testing.assert_array_equal(again[1], second)
    assert 0.4 < np.mean(draws(1)[0] != first) < 0.6  # another seed, other draws


def flip_config(tmp_path, *extra: str):
    return load_config(
        SMOKE,
        [
            f"data.dir={tmp_path / 'data'}",
            f"output.dir={tmp_path / 'runs'}",
            f"output.log_dir={tmp_path / 'logs'}",
            f"output.cache_dir={tmp_path / 'cache'}",
            *MOBILENET,
            f"model.weights={imagenet_weights()}",
            "augment.flip=true",
            *extra,
        ],
    )


def test_the_caches_hold_each_image_and_its_mirror_image(tmp_path, synthetic_dir):
    config = flip_config(tmp_path, f"data.dir={synthetic_dir}", "finetune.epochs=1")
    runtime.apply(config)
    splits = prepare_data(config)
    built = build_model(config)
    plan = plan_stage2(config, built.model, len(splits.x_pool), None)
    assert plan.cached and plan.mirror
    note = plan.note(len(splits.x_pool))
    assert note is not None and "mirror image" in note and "MiB as float16" in note
    acts, info = pool_activations(plan, splits.x_pool, tmp_path / "cache")
    x = splits.x_pool.astype("float32")
    assert acts.shape[1] == 2 and info["bytes"] == acts.nbytes
    for view, images in ((0, x), (1, pipeline.mirror(x))):
        expected = np.asarray(plan.parts.bottom(images, training=False))
        np.testing.assert_allclose(acts[:, view], expected, rtol=2e-3, atol=2e-3)
    done = BackbonePass(plan, splits.x_pool, tmp_path / "cache", activations=(acts, info))
    fit_data = stage2_inputs(config, built.model, splits, plan, done).data
    assert fit_data.views and fit_data.x_train.shape[1] == 2
    assert fit_data.x_val.shape[1:] == acts.shape[2:]  # validation sees the images unflipped

    # Read back, the cache is memory-mapped, and stage 2 reads its rows batch by batch: the
    # same batches, in the same seeded order, as from the array in memory.
    mapped, again = pool_activations(plan, splits.x_pool, tmp_path / "cache")
    assert again["cache"] == "hit" and isinstance(mapped, np.memmap)
    lazy = stage2_inputs(config, built.model, splits, plan).data
    assert isinstance(lazy.x_train, pipeline.Rows) and isinstance(lazy.x_val, pipeline.Rows)
    assert lazy.x_train.shape == fit_data.x_train.shape
    for part, views in (("train", True), ("val", False)):
        a, b = (getattr(d, f"x_{part}") for d in (fit_data, lazy))
        y = getattr(fit_data, f"y_{part}")
        batches = []
        for source in (a, b):
            keras.utils.set_random_seed(0)
            ds = pipeline.make_dataset(source, y, batch_size=64, shuffle=True, seed=0, views=views)
            batches.append([(np.asarray(u), np.asarray(v)) for u, v in ds])
        for (ua, va), (ub, vb) in zip(*batches, strict=True):
            np.testing.assert_array_equal(ua, ub)
            np.testing.assert_array_equal(va, vb)

    stage1 = stage1_inputs(config, splits, FeatureStore(), built)
    assert stage1.on_features and stage1.data.views
    feats = np.asarray(built.feature_extractor(pipeline.mirror(x), training=False))
    (train_part, _), _ = data.split_train_val(feats, splits.y_pool, 0.2, config.seed)
    np.testing.assert_allclose(stage1.data.x_train[:, 1], train_part, rtol=1e-3, atol=1e-4)


def test_shifts_and_erasing_still_stream_and_say_why(tmp_path, synthetic_dir):
    for aug in ("augment.translate=0.1", "augment.erase=0.5"):
        config = flip_config(tmp_path, f"data.dir={synthetic_dir}", "finetune.epochs=1", aug)
        built = build_model(config)
        plan = plan_stage2(config, built.model, 400, None)
        assert not plan.cached and built.feature_extractor is None
        note = plan.note(400)
        assert note is not None and "random shifts or erasing" in note


def test_a_flip_with_dropout_before_the_cut_still_streams(tmp_path, synthetic_dir):
    """Mirror views stand in for the flip only: a dropout in the frozen bottom still makes
    every epoch's activations differ."""
    overrides = [f"data.dir={synthetic_dir}", "model.cnn.dropout=0.2", "augment.flip=true"]
    overrides += ["model.weights=none", "finetune.epochs=1", "finetune.unfreeze_from=block2_conv1"]
    config = load_config(SMOKE, overrides)
    plan = plan_stage2(config, build_model(config).model, 400, None)
    assert not plan.cached
    assert plan.note(400) == (
        "stage 2 streams images: the random layer block1_dropout runs before block2_conv1, "
        "so its activations differ every epoch"
    )


@pytest.fixture(scope="module")
def symmetric(tmp_path_factory):
    """A learnable set whose images are left-right symmetric: both views are the same."""
    folder = tmp_path_factory.mktemp("symmetric")
    sets = []
    for n, seed in ((400, 1), (100, 2)):
        x, y = learnable(n, seed)
        x = ((x.astype(np.uint16) + x[:, :, ::-1]) // 2).astype(np.uint8)
        sets += [x, y]
    return write_idx(folder / "data", sets, gz=True).parent


def test_flip_on_mirror_views_trains_as_streaming_flipped_images(symmetric):
    def run(cache: str):
        extra = [*EXACT, *STAGE2, "train.epochs=1", "finetune.activation_dtype=float32"]
        extra += [f"finetune.activation_cache={cache}", f"output.dir={symmetric / cache}"]
        return train(flip_config(symmetric, *extra))

    cached, streamed = run("auto"), run("off")
    head, tuned = cached.metrics.stages
    assert head.feature_cache == "miss" and tuned.activation_cache == "miss"
    assert streamed.metrics.stages[1].activation_cache is None  # RandomFlip on the images
    a = backbone_weights(keras.models.load_model(cached.model_path))
    b = backbone_weights(keras.models.load_model(streamed.model_path))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(
        [r["loss"] for r in cached.history], [r["loss"] for r in streamed.history], rtol=1e-4
    )
