"""Every model family exports to SavedModel, TFLite and ONNX, in inference mode.

Tiny untrained models of each backbone (random weights are enough: the export must compute
what the Keras model computes), saved as .keras and exported through the API, which checks
every export against the Keras model on the synthetic test images. A scratch CNN with dropout
and BatchNorm behind a resize is the case that once exported training-time ops: each export
here is also read back, and none may hold a random op or a batch-statistics BatchNorm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE

from fmnist_tl.config import load_config
from fmnist_tl.evaluation.export import export_model
from fmnist_tl.models.assembly import build_model

FAMILIES = {
    "mobilenet_v2": ["model.backbone=mobilenet_v2", "model.input_size=32"],
    "resnet50": ["model.backbone=resnet50", "model.input_size=32"],
    "vgg16": ["model.backbone=vgg16", "model.input_size=32"],
    "cnn28": ["model.backbone=cnn", "model.input_size=28"],
    "cnn-resized": ["model.backbone=cnn", "model.input_size=32"],
    "dense": ["model.backbone=dense", "model.dense.units=[16]", "model.dense.dropout=0.3"],
}
# Dropout and BatchNorm everywhere they can be: what a trace in training mode would show.
TRAINING_SENSITIVE = ["model.weights=none", "model.cnn.dropout=0.3", "model.cnn.batch_norm=true"]


def tiny_model(tmp_path: Path, family: str) -> Path:
    config = load_config(SMOKE, [*FAMILIES[family], *TRAINING_SENSITIVE, "model.head.dropout=0.3"])
    path = tmp_path / f"{family}.keras"
    build_model(config).model.save(path)
    return path


def training_ops_savedmodel(folder: Path) -> set[str]:
    """Ops of the serving graph (and the functions it calls) that only a training trace has."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    graph = serve.graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    found = {n.op for n in nodes if "Random" in n.op}
    for n in nodes:
        if n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b:
            found.add(f"{n.op}(is_training)")
    return found


def onnx_op_types(path: Path) -> set[str]:
    import onnx

    model = onnx.load(str(path))
    return {node.op_type for node in model.graph.node}


# ResNet50 (83 s of the suite on 2 cores: three exports of 25M weights) runs with -m slow;
# MobileNetV2 covers a BatchNorm backbone behind a resize in the default suite.
@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f == "resnet50" else f for f in FAMILIES]
)
def test_every_family_exports_in_inference_mode(family, tmp_path, synthetic_dir):
    model = tiny_model(tmp_path, family)
    for fmt in ("savedmodel", "tflite", "onnx"):
        result = export_model(model, fmt, data_dir=str(synthetic_dir))
        check = result.check
        assert check.passed and check.top1_agree == check.images == 100, (fmt, check)
        assert check.max_abs_diff <= 1e-4, (fmt, check)
        if fmt == "savedmodel":
            assert not training_ops_savedmodel(result.output), fmt
        if fmt == "onnx":
            assert not {t for t in onnx_op_types(result.output) if "Random" in t}, fmt
        assert not list(tmp_path.glob(".*.partial"))


def test_the_resized_cnn_export_agrees_on_every_test_image(tmp_path, synthetic_dir):
    """The case behind the fix: the exports equal the Keras model in inference mode, image by
    image (before it, 22-79 of 500 top-1s agreed and TFLite refused the random ops)."""
    import keras
    import tensorflow as tf

    from fmnist_tl.data.sources import load_fashion_mnist

    path = tiny_model(tmp_path, "cnn-resized")
    x = load_fashion_mnist(synthetic_dir).x_test.astype(np.float32)
    reference = keras.models.load_model(path, compile=False)(x, training=False).numpy()
    saved = export_model(path, "savedmodel", data_dir=str(synthetic_dir)).output
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    got = next(iter(serve(pixels=tf.constant(x)).values())).numpy()
    np.testing.assert_allclose(got, reference, atol=1e-5)
    tflite = export_model(path, "tflite", data_dir=str(synthetic_dir)).output
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(lite, reference, atol=1e-5)
    assert (lite.argmax(1) == reference.argmax(1)).all()
