"""`fmnist export`: each format is written, checked against the Keras model and kept; failures
leave nothing behind.

One tiny real model (configs/smoke.yaml on the synthetic set) is trained once for the module;
every export runs through the real CLI and is checked on the synthetic test images.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, one_line
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.evaluation import export as ex
from fmnist_tl.evaluation import export_check as bounds

runner = CliRunner()
CHECK = re.compile(
    r"check: (\d+) test images through (.+?): max \|p - p_keras\| (\S+) \(allowed (\S+)\), "
    r"same top-1 on (\d+)/(\d+) \(required (\d+)%\)"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_dir) -> tuple[Path, Path]:
    """A smoke model trained through the Python API, and the synthetic data it was tested on."""
    from fmnist_tl.config import load_config
    from fmnist_tl.training.trainer import train

    work = tmp_path_factory.mktemp("export")
    overrides = [
        f"data.dir={synthetic_dir}",
        f"output.dir={work / 'saved_models'}",
        f"output.log_dir={work / 'logs'}",
        f"output.cache_dir={work / 'cache'}",
        "runtime.verbose=silent",
    ]
    result = train(load_config(SMOKE, overrides))
    return result.model_path, synthetic_dir


def export(model: Path, data_dir: Path, *args: str):
    return runner.invoke(app, ["export", str(model), "--data-dir", str(data_dir), *args])


def leftovers(folder: Path) -> list[Path]:
    return list(folder.glob(".*.partial"))


def run_export(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """The export run by its own runtime, independently of fmnist_tl.export."""
    x = x.astype(np.float32)
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return next(iter(serve(pixels=tf.constant(x)).values())).numpy()
    if fmt == "tflite":
        import tensorflow as tf

        with warnings.catch_warnings():  # deprecated in favour of ai_edge_litert, still works
            warnings.simplefilter("ignore", UserWarning)
            interp = tf.lite.Interpreter(model_path=str(path))
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        interp.resize_tensor_input(inp["index"], x.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    ("fmt", "quantize", "written"),
    [
        ("savedmodel", "none", "best_savedmodel/saved_model.pb"),
        ("tflite", "none", "best.tflite"),
        ("tflite", "float16", "best.float16.tflite"),
        ("tflite", "dynamic", "best.dynamic.tflite"),
        ("onnx", "none", "best.onnx"),
    ],
)
def test_each_format_is_checked_against_keras_and_kept(trained, fmt, quantize, written):
    from fmnist_tl.data.sources import load_fashion_mnist
    from fmnist_tl.evaluation.loading import load_classifier
    from fmnist_tl.models.inference import infer

    model, data_dir = trained
    result = export(model, data_dir, "--format", fmt, "--quantize", quantize)
    assert result.exit_code == 0, result.output
    match = CHECK.search(result.output)
    assert match, result.output
    images, _, diff, allowed, agree, total, required = match.groups()
    assert int(images) == int(total) == 100  # every synthetic test image
    assert float(allowed) == bounds.TOLERANCE[quantize]
    assert float(diff) <= float(allowed)
    assert int(required) == round(bounds.MIN_TOP1[quantize] * 100)
    assert int(agree) >= int(required)
    if quantize == "none":
        assert int(agree) == 100 and float(diff) <= 1e-5  # float32: rounding only
    assert (model.parent / written).is_file()
    assert not leftovers(model.parent)
    # The artifact works on its own: run it with its runtime, compare with Keras here too.
    x = load_fashion_mnist(data_dir).x_test
    keras_p = infer(load_classifier(model), x)
    path = model.parent / written.split("/")[0]
    got = run_export(path, fmt, x)
    assert got.shape == (100, 10)
    assert np.max(np.abs(got - keras_p)) <= bounds.TOLERANCE[quantize]


def test_existing_output_is_kept_without_force(trained, tmp_path):
    model, data_dir = trained
    target = tmp_path / "deploy" / "model.tflite"
    assert export(model, data_dir, "--format", "tflite", "--output", str(target)).exit_code == 0
    target.write_bytes(b"an older export")
    result = export(model, data_dir, "--format", "tflite", "--output", str(target))
    assert result.exit_code == 2
    assert "already exists; pass --force" in one_line(result.output)
    assert target.read_bytes() == b"an older export"
    forced = export(model, data_dir, "--format", "tflite", "--output", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes()[4:8] == b"TFL3"  # a TFLite flatbuffer replaced it
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.tflite"]


def test_force_replaces_only_an_earlier_savedmodel_folder(trained, tmp_path):
    model, data_dir = trained
    target = tmp_path / "sm"
    args = ["--format", "savedmodel", "--output", str(target), "--force"]
    assert export(model, data_dir, *args).exit_code == 0
    (target / "stale").write_text("from the earlier export")
    result = export(model, data_dir, *args)
    assert result.exit_code == 0, result.output
    assert (target / "saved_model.pb").is_file() and not (target / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
    # A folder that is not an export is never replaced, --force or not.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    args = ["--format", "savedmodel", "--output", str(tmp_path / "notes"), "--force"]
    result = export(model, data_dir, *args)
    assert result.exit_code == 2
    assert "holds no exported SavedModel" in one_line(result.output)
    # A file format given a folder: the OS-level "folder where a file should be" (exit 3).
    args = ["--format", "onnx", "--output", str(tmp_path / "notes"), "--force"]
    result = export(model, data_dir, *args)
    assert result.exit_code == 3
    assert "is a folder where the onnx file should be" in one_line(result.output)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_the_api_lists_export_model():
    import fmnist_tl

    assert "export_model" in dir(fmnist_tl)
    assert fmnist_tl.export_model is ex.export_model


def test_a_failed_check_leaves_nothing(trained, tmp_path, monkeypatch):
    model, data_dir = trained
    monkeypatch.setitem(bounds.TOLERANCE, "dynamic", 1e-12)  # int8 weights cannot match that
    target = tmp_path / "m.tflite"
    result = export(
        model, data_dir, "--format", "tflite", "--quantize", "dynamic", "--output", str(target)
    )
    assert result.exit_code == 1
    line = one_line(result.output)
    assert "failed its check on 100 test images" in line and "nothing was written" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_model_exits_3(tmp_path, synthetic_dir):
    result = export(tmp_path / "nope.keras", synthetic_dir, "--format", "savedmodel")
    assert result.exit_code == 3
    assert "model file not found" in one_line(result.output)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pickle"], "unknown export format 'pickle'; choose one of savedmodel"),
        (["--format", "onnx", "--quantize", "float16"], "applies to --format tflite only"),
        (["--format", "tflite", "--quantize", "int4"], "unknown quantization 'int4'"),
    ],
)
def test_bad_options_exit_2(trained, args, message):
    model, data_dir = trained
    result = export(model, data_dir, *args)
    assert result.exit_code == 2
    assert message in one_line(result.output)


def test_missing_onnx_extra_says_what_to_install(trained, tmp_path, monkeypatch):
    model, data_dir = trained
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed: import fails
    target = tmp_path / "m.onnx"
    result = export(model, data_dir, "--format", "onnx", "--output", str(target))
    assert result.exit_code == 3
    line = one_line(result.output)
    assert "needs the optional onnx extra (tf2onnx is not installed)" in line
    assert "pip install -e '.[onnx]'" in line
    assert list(tmp_path.iterdir()) == []
