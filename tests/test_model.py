"""The model: in-graph preprocessing matches keras.applications, saving is exact and safe."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from fmnist_tl.config import load_config
from fmnist_tl.config.backbones import BACKBONES
from fmnist_tl.models.assembly import build_model
from fmnist_tl.models.inference import INFER_BATCH, infer
from fmnist_tl.models.preprocessing import Preprocessing
from fmnist_tl.training.freezing import unfreeze_from

APPS = {
    "mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input,
    "resnet50": keras.applications.resnet50.preprocess_input,
    "vgg16": keras.applications.vgg16.preprocess_input,
}
METHODS = ["nearest", "bilinear", "bicubic", "area", "lanczos3"]


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")


@pytest.mark.parametrize("backbone", sorted(APPS))
@pytest.mark.parametrize("method", METHODS)
def test_preprocessing_matches_preprocess_input(pixels, backbone, method):
    """Resize with the configured interpolation, gray->RGB, then the backbone's own scaling."""
    got = Preprocessing.for_backbone(BACKBONES[backbone], 40, method).model()(pixels).numpy()
    rgb = tf.image.resize(np.repeat(pixels, 3, axis=-1), (40, 40), method=method).numpy()
    want = APPS[backbone](rgb.copy())
    assert got.shape == (4, 40, 40, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_interpolation_is_honoured(pixels):
    mobilenet = BACKBONES["mobilenet_v2"]
    out = {m: Preprocessing.for_backbone(mobilenet, 40, m).model()(pixels).numpy() for m in METHODS}
    for a in METHODS:
        for b in METHODS:
            if a < b:
                assert not np.allclose(out[a], out[b]), (a, b)


def test_from_scratch_models_see_unit_range(pixels):
    got = Preprocessing.for_backbone(BACKBONES["cnn"], 28, "bilinear").model()(pixels).numpy()
    np.testing.assert_allclose(got, pixels / 255.0, rtol=1e-6)


def build(*overrides: str):
    return build_model(load_config(None, ["model.weights=none", *overrides]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.input_size=32", "augment.flip=true", "augment.translate=0.1", "augment.erase=0.5"],
        ["model.backbone=resnet50", "model.input_size=32", "model.resize_method=nearest"],
        ["model.backbone=cnn", "model.cnn.l2=0.001", "model.head.pooling=max"],
        ["model.backbone=dense", "model.dense.units=[64]", "model.head.units=0"],
    ],
    ids=["mobilenet_v2+augment", "resnet50", "cnn", "dense"],
)
def test_saved_model_reloads_in_a_fresh_process_with_identical_predictions(
    tmp_path, pixels, overrides
):
    built = build(*overrides)
    path = tmp_path / "m.keras"
    built.model.save(path)
    want = built.model.predict(pixels, verbose=0)
    np.save(tmp_path / "x.npy", pixels)
    script = (
        "import sys, numpy as np, keras\n"
        "m = keras.models.load_model(sys.argv[1])\n"  # plain load: no custom objects
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        capture_output=True,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    # Stock layers only: nothing that needs safe_mode=False.
    with zipfile.ZipFile(path) as zf:
        spec = json.loads(zf.read("config.json"))
    assert '"Lambda"' not in json.dumps(spec)


def test_augmentation_is_inactive_at_inference(pixels):
    built = build("model.backbone=cnn", "augment.flip=true", "augment.erase=1.0")
    a = built.model(pixels, training=False).numpy()
    b = built.model(pixels, training=False).numpy()
    np.testing.assert_array_equal(a, b)
    assert built.feature_extractor is None  # augmenting models never use cached features


@pytest.mark.parametrize("n", [1, 3, INFER_BATCH + 1, 2 * INFER_BATCH + 3])
def test_batched_inference_equals_one_call_in_order(n):
    """infer splits each batch into parallel halves; rows must come back whole and in order."""
    model = build("model.backbone=cnn").model
    x = np.random.default_rng(n).integers(0, 256, (n, 28, 28, 1)).astype("uint8")
    got = infer(model, x)
    want = model(x.astype("float32"), training=False).numpy()
    assert got.shape == (n, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_output_layer_is_float32_softmax():
    built = build("model.backbone=cnn")
    layer = built.model.get_layer("predictions")
    assert layer.dtype_policy.compute_dtype == "float32"
    assert built.model.output_shape == (None, 10)
    assert built.model.input_shape == (None, 28, 28, 1)


def test_unfreeze_from_keeps_batchnorm_frozen():
    built = build("model.input_size=32")
    start = unfreeze_from(built.backbone, "block_16")
    for i, layer in enumerate(built.backbone.layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        else:
            assert layer.trainable == (i >= start), layer.name
    assert built.backbone.layers[start].name.startswith("block_16")


def test_from_scratch_batchnorm_settles_fast_and_pretrained_keeps_its_own(tmp_path):
    """MobileNetV2's BN momentum 0.999 leaves short from-scratch runs at chance in inference."""
    scratch = build("model.input_size=32")
    momenta = {
        layer.momentum
        for layer in scratch.backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {0.9}
    path = tmp_path / "b.weights.h5"
    scratch.backbone.save_weights(path)
    pretrained = build_model(load_config(None, ["model.input_size=32", f"model.weights={path}"]))
    assert pretrained.pretrained
    bn = [x for x in pretrained.backbone.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert {layer.momentum for layer in bn} == {0.999}


def test_cnn_convs_per_block_may_differ_per_block():
    """convs_per_block [1, 2]: one conv at full resolution, two after the first pool."""
    config = load_config(
        None,
        [
            "model.backbone=cnn",
            "model.weights=none",
            "model.cnn.filters=[8,16]",
            "model.cnn.convs_per_block=[1,2]",
        ],
    )
    backbone = build_model(config).backbone
    convs = [
        (layer.name, layer.filters)
        for layer in backbone.layers
        if "conv" in type(layer).__name__.lower()
    ]
    assert convs == [("block1_conv1", 8), ("block2_conv1", 16), ("block2_conv2", 16)]
    same = load_config(
        None, ["model.backbone=cnn", "model.weights=none", "model.cnn.convs_per_block=2"]
    )
    assert same.model.cnn.block_convs() == [2, 2, 2]


@pytest.mark.parametrize(("pool", "side"), [("true", 3), ("[true,true,false]", 7)])
def test_cnn_pool_flags_decide_the_feature_map_side(pool, side):
    """pool [true, true, false]: the last block keeps 7x7 for a flatten head to see."""
    config = load_config(
        None,
        [
            "model.backbone=cnn",
            "model.weights=none",
            "model.cnn.filters=[8,16,32]",
            f"model.cnn.pool={pool}",
        ],
    )
    assert build_model(config).backbone.output.shape[1:] == (side, side, 32)
