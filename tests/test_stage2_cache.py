"""Stage 2 on cached activations of the frozen bottom: the same training as streaming images.

The cached and the streaming path train with the same seed, the same batches (one batch per
epoch, no dropout) and float32 activations, so they must end with the same weights. MobileNetV2
uses the real ImageNet weights from ../shared (a random MobileNetV2's activations vanish);
ResNet50 a random backbone saved as a weights file (no ImageNet ResNet50 weights offline).
"""

from __future__ import annotations

import shutil
from functools import partial

import keras
import numpy as np
import pytest
from conftest import REPO, SMOKE
from test_resume import EXACT, assert_same_run, interrupted
from test_training import backbone_weights, saved_backbone

from fmnist_tl.config import load_config
from fmnist_tl.models.assembly import build_model
from fmnist_tl.training import runtime
from fmnist_tl.training.activations import cache_key, find_cut, split_model
from fmnist_tl.training.trainer import finetune, resume_run, train

WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_imagenet_no_top.weights.h5"
MOBILENET = ["model.backbone=mobilenet_v2", "model.input_size=32", "model.head.units=16"]
RESNET = ["model.backbone=resnet50", "model.input_size=32", "model.head.units=16"]
DEFAULT_UNFREEZE = {"mobilenet_v2": "block_13", "resnet50": "conv5_block1"}
# Stage 1 barely moves (its rate is tiny), so a stage-2 epoch is the best one: best.keras then
# holds weights stage 2 trained, on both paths. Batches of 64: several steps per epoch, in the
# same seeded order on both paths.
STAGE2 = [
    "train.learning_rate=0.000001",
    "train.batch_size=64",
    "finetune.epochs=3",
    "finetune.patience=null",
    "finetune.learning_rate=0.001",
]


def imagenet_weights() -> str:
    assert WEIGHTS.is_file(), f"{WEIGHTS} is missing: the shared ImageNet weights are needed"
    return str(WEIGHTS)


@pytest.mark.parametrize(
    "backbone, named, layer, producer",
    [
        ("mobilenet_v2", "block_13", "block_13_expand", "block_12_add"),
        ("mobilenet_v2", "block_14_depthwise", "block_14_expand", "block_13_project_BN"),
        ("resnet50", "conv5_block1", "conv5_block1_1_conv", "conv4_block6_out"),
        ("resnet50", "conv4_block3_2", "conv4_block3_1_conv", "conv4_block2_out"),
        ("vgg16", "block5_conv1", "block5_conv1", "block4_pool"),
    ],
)
def test_cut_points_pass_one_tensor_and_split_the_model_exactly(backbone, named, layer, producer):
    overrides = [f"model.backbone={backbone}", "model.weights=none", "model.input_size=32"]
    config = load_config(None, overrides)
    built = build_model(config)
    cut = find_cut(built.backbone, named)
    assert (cut.layer, cut.producer) == (layer, producer)
    assert cut.moved == (layer != cut.requested)
    parts = split_model(built.model, cut)
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1)).astype("float32")
    acts = parts.bottom(x, training=False)
    np.testing.assert_allclose(
        np.asarray(parts.top(acts, training=False)), np.asarray(built.model(x, training=False))
    )
    np.testing.assert_allclose(
        np.asarray(parts.features(acts, training=False)),
        np.asarray(built.feature_extractor(x, training=False)),
    )


def two_stage(tmp_path, isolated, backbone: list[str], weights: str, cache: str, *extra: str):
    config = load_config(
        SMOKE,
        [
            *isolated,
            *EXACT,
            *backbone,
            *STAGE2,
            f"model.weights={weights}",
            "train.epochs=1",
            f"finetune.activation_cache={cache}",
            "finetune.activation_dtype=float32",
            f"output.dir={tmp_path / cache}",
            *extra,
        ],
    )
    return train(config)


# ResNet50 (89 s of the suite on 2 cores) runs with -m slow; its cut points split the model
# exactly in the default suite (test_cut_points_pass_one_tensor_and_split_the_model_exactly).
@pytest.mark.parametrize(
    "backbone", ["mobilenet_v2", pytest.param("resnet50", marks=pytest.mark.slow)]
)
def test_cached_and_streaming_stage2_end_with_the_same_weights(tmp_path, isolated, backbone):
    if backbone == "mobilenet_v2":
        setup, weights = MOBILENET, imagenet_weights()
        config = load_config(None, [*setup, f"model.weights={weights}"])
        before = backbone_weights(build_model(config).model)
    else:
        path, before = saved_backbone(tmp_path, *RESNET)
        setup, weights = RESNET, str(path)
    cached = two_stage(tmp_path, isolated, setup, weights, "auto")
    streamed = two_stage(tmp_path, isolated, setup, weights, "off")
    assert [s.name for s in cached.metrics.stages] == ["head", "finetune"]
    assert cached.metrics.stages[1].activation_cache == "miss"
    assert streamed.metrics.stages[1].activation_cache is None
    a = backbone_weights(keras.models.load_model(cached.model_path))
    b = backbone_weights(keras.models.load_model(streamed.model_path))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # Stage 2 trained the layers from the cut on, and nothing before it.
    built = build_model(load_config(None, [*setup, "model.weights=none"]))
    names = [layer.name for layer in built.backbone.layers]
    cut = find_cut(built.backbone, DEFAULT_UNFREEZE[backbone])
    top = set(names[names.index(cut.layer) :])
    moved = {k.split("/")[-2] for k in a if not np.array_equal(a[k], before[k])}
    assert moved and moved <= top, moved - top
    np.testing.assert_allclose(
        [r["loss"] for r in cached.history], [r["loss"] for r in streamed.history], rtol=1e-4
    )


def test_resume_mid_stage2_on_the_cache_matches_an_uninterrupted_run(tmp_path, isolated):
    config = load_config(
        SMOKE,
        [
            *isolated,
            *EXACT,
            *MOBILENET,
            f"model.weights={imagenet_weights()}",
            "train.epochs=1",
            "finetune.epochs=3",
            "finetune.patience=null",
            "finetune.learning_rate=0.001",
            "finetune.activation_dtype=float32",
        ],
    )
    reference = train(config)
    run = interrupted(lambda: train(config), 2)  # epoch 2 is stage 2's first
    resumed = resume_run(run)
    assert resumed.metrics.stages[1].activation_cache == "hit"
    assert_same_run(resumed, reference)


def test_finetune_of_a_saved_model_reuses_the_runs_activations(tmp_path, isolated):
    first = two_stage(
        tmp_path, isolated, MOBILENET, imagenet_weights(), "auto", "finetune.epochs=1"
    )
    second = finetune(first.model_path, unfreeze_from="block_14", epochs=1)
    assert second.metrics.stages[0].activation_cache == "miss"  # another cut: another key
    third = finetune(first.model_path, unfreeze_from="block_14", epochs=1)
    assert third.metrics.stages[0].activation_cache == "hit"


def test_the_cache_key_follows_cut_weights_size_resize_and_data():
    def key(*overrides: str, prefix: str = "block_13", n: int = 50) -> str:
        config = load_config(None, [*MOBILENET, "model.weights=none", *overrides])
        runtime.apply(config)  # seeds: the random initial weights follow `seed`, as in a run
        built = build_model(config)
        cut = find_cut(built.backbone, prefix)
        x = np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1)).astype("uint8")
        return cache_key(split_model(built.model, cut).bottom, x, cut, "float16", mirror=False)

    base = key()
    assert key() == base  # same seed, same weights, same data
    for changed in (
        key(prefix="block_14"),
        key("seed=1"),  # other random weights
        key("model.input_size=48"),
        key("model.resize_method=nearest"),
        key(n=49),
    ):
        assert changed != base


def test_the_activations_leave_room_on_the_disk_for_stage1s_features(
    tmp_path, isolated, monkeypatch
):
    """Stage 1 writes its feature cache to the same disk before stage 2's activations: a disk
    that holds the activations alone but not both makes stage 2 stream (said before any
    work), instead of a plan to cache that the features then leave no room for; features
    already on disk need no room."""
    from fmnist_tl.training import stage2
    from fmnist_tl.training.features import cache_key as feature_key
    from fmnist_tl.training.stage1 import feature_cache_bytes

    config = load_config(SMOKE, [*isolated, *MOBILENET, f"model.weights={imagenet_weights()}"])
    runtime.apply(config)
    built = build_model(config)
    x = np.random.default_rng(0).integers(0, 256, (400, 28, 28, 1)).astype("uint8")
    features = feature_cache_bytes(config, built, x)
    assert features == 400 * 1280 * 4  # the pooled features, float32
    cut = find_cut(built.backbone, "block_13")
    acts = stage2.cut_bytes(split_model(built.model, cut), 400, "float32", mirror=False)
    usage = shutil.disk_usage(tmp_path)

    def plan(free: int) -> stage2.Plan:
        monkeypatch.setattr(stage2.shutil, "disk_usage", lambda _: usage._replace(free=free))
        return stage2.plan_stage2(
            config, built.model, 400, None, x, partial(feature_cache_bytes, config, built, x)
        )

    tight = plan(acts + features - 1)
    assert tight.stream_reason == (
        f"its activation cache would take 0.6 MiB on disk beside stage 1's 2.0 MiB of "
        f"features, more than the 2.5 MiB free in {tmp_path / 'cache'} (output.cache_dir)"
    )
    assert plan(acts + features).cached
    # Features already cached (by either pass) take no more room.
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    (cache / f"{feature_key(config, built.weights_used, x, made_by='xnnpack')}.npy").touch()
    assert feature_cache_bytes(config, built, x) == 0
    assert plan(acts).cached
    # A stage 1 on images (a backbone that trains) writes no features.
    unfrozen = load_config(SMOKE, [*isolated, *MOBILENET, "model.weights=none"])
    assert feature_cache_bytes(unfrozen, build_model(unfrozen), x) == 0


@pytest.mark.parametrize("limit", ["memory", "disk"])
def test_stage2_streams_and_says_why_when_its_cache_would_not_fit(
    tmp_path, isolated, capsys, monkeypatch, limit
):
    """400 images at 32 px: a 0.6 MiB cache at block_13, above a tiny memory budget or the
    free disk (a full disk stood in for by shutil.disk_usage: a real one would need a mount)."""
    from fmnist_tl.training import stage2

    extra = ["runtime.cache_memory_gb=0.0001"] if limit == "memory" else []
    real_disk_usage = shutil.disk_usage  # stage2.shutil is this module: patched below
    if limit == "disk":
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(stage2.shutil, "disk_usage", lambda _: usage._replace(free=100 * 2**10))
    config = load_config(
        SMOKE,
        [*isolated, *MOBILENET, f"model.weights={imagenet_weights()}", "train.epochs=1"]
        + ["finetune.epochs=1", *extra],
    )
    capsys.readouterr()
    done = train(config)
    notes = [line for line in capsys.readouterr().err.splitlines() if "stage 2 streams" in line]
    expected = {
        "memory": "its activation cache would take 0.6 MiB, above runtime.cache_memory_gb (0.0001)",
        "disk": f"its activation cache would take 0.6 MiB on disk, more than the 0.1 MiB free in "
        f"{tmp_path / 'cache'} (output.cache_dir)",
    }[limit]
    assert notes == [f"note: stage 2 streams images: {expected}"]
    assert done.metrics.stages[1].activation_cache is None  # streamed, and finished
    assert not list((tmp_path / "cache").glob("activations-*"))
    if limit == "disk":  # a cache already on disk needs no room: a repeat still uses it
        monkeypatch.setattr(stage2.shutil, "disk_usage", real_disk_usage)
        assert train(config).metrics.stages[1].activation_cache == "miss"  # room: written
        small = real_disk_usage(tmp_path)._replace(free=100 * 2**10)
        monkeypatch.setattr(stage2.shutil, "disk_usage", lambda _: small)
        again = train(config)
        assert again.metrics.stages[1].activation_cache == "hit"
