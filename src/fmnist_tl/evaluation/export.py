"""`fmnist export`: a saved .keras classifier as a TF SavedModel, a TFLite file or an ONNX file.

Every export is loaded back with its own runtime (`tf.saved_model.load`, `tf.lite.Interpreter`,
`onnxruntime`) and run on real Fashion-MNIST test images before it is moved into place; its
probabilities must match the Keras model's within `TOLERANCE`, with the same top-1 on every
image (float32) or on `MIN_TOP1` of them (quantized TFLite): export_check.py. It is written
into a hidden folder beside the target and renamed into place only after that check, so a
failed (or interrupted) export leaves nothing behind; a full disk is exit 3 naming the target.
TensorFlow, Keras and the ONNX tools are imported inside the functions: `fmnist --help` must
not load them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    ConfigError,
    FmnistError,
    MissingFileError,
    disk_failure,
    first_line,
    os_failure,
    short_path,
)
from ..paths import check_model_file
from ..tfenv import hold_stderr
from .export_check import ParityCheck, check_export, failure

if TYPE_CHECKING:
    import keras

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZE = ("none", "dynamic", "float16")  # TFLite only: weights as int8 or float16
CHECK_IMAGES = 500  # Fashion-MNIST test images each export is checked on
ONNX_EXTRA = "pip install -e '.[onnx]'"
ONNX_MODULES = ("tf2onnx", "onnx", "onnxruntime")
INPUT = "pixels: float32 (N, 28, 28, 1), raw 0..255"
OUTPUT = "float32 (N, 10): class probabilities"


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and how its check went."""

    model: Path
    output: Path
    format: str
    quantize: str
    size_bytes: int
    export_seconds: float
    runtime: str  # what the check loaded the export with
    check: ParityCheck
    input: str = INPUT
    output_spec: str = OUTPUT


def default_output(model: Path, fmt: str, quantize: str = "none") -> Path:
    """Beside the model: best_savedmodel/, best.tflite (best.float16.tflite), best.onnx."""
    if fmt == "savedmodel":
        return model.with_name(f"{model.stem}_savedmodel")
    tag = "" if quantize == "none" else f".{quantize}"
    return model.with_name(f"{model.stem}{tag}.{fmt}")


def export_model(
    model: str | os.PathLike[str],
    format: str,
    *,
    output: str | os.PathLike[str] | None = None,
    quantize: str = "none",
    force: bool = False,
    data_dir: str | None = None,
    check_images: int = CHECK_IMAGES,
) -> ExportResult:
    """Export MODEL to FORMAT, check it against the Keras model, then move it into place."""
    model_path = Path(model)
    _check_options(format, quantize, check_images)
    check_model_file(model_path)  # before TensorFlow loads: a bad path fails at once
    if format == "onnx":
        require_onnx()
    target = Path(output) if output is not None else default_output(model_path, format, quantize)
    _check_target(model_path, format, target, force)
    from ..data.sources import load_fashion_mnist
    from ..models.inference import infer
    from .loading import load_classifier

    classifier = load_classifier(model_path)
    ds = load_fashion_mnist(data_dir)
    images = ds.x_test[:check_images]
    reference = infer(classifier, images)
    with _staging(target) as tmp:
        staged = tmp / target.name
        start = time.perf_counter()
        _convert(classifier, format, quantize, staged, tmp)
        seconds = time.perf_counter() - start
        check, runtime = check_export(format, staged, images, reference, quantize, ds.source)
        if not check.passed:
            raise FmnistError(failure(format, quantize, check))
        size = _size(staged)
        _move_into_place(staged, target, tmp)
    return ExportResult(model_path, target, format, quantize, size, seconds, runtime, check)


def require_onnx() -> None:
    """Import the ONNX extra's packages, or say in one line how to install them (exit 3)."""
    for name in ONNX_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingFileError(
                f"ONNX export needs the optional onnx extra ({name} is not installed): "
                f"run {ONNX_EXTRA} (tf2onnx, onnx, onnxruntime)"
            ) from None


def _check_options(fmt: str, quantize: str, check_images: int) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE)}")
    if quantize != "none" and fmt != "tflite":
        raise ConfigError(f"--quantize {quantize} applies to --format tflite only, not {fmt}")
    if check_images < 1:
        raise ConfigError("the export check needs at least 1 test image")


def _check_target(model: Path, fmt: str, target: Path, force: bool) -> None:
    """Never write over the model, over a folder that is not an earlier SavedModel export (a
    mistyped `--output . --force` must not delete the working folder), or, without --force,
    over anything."""
    if target.resolve() == model.resolve():
        raise ConfigError(f"{target}: the export would replace the model itself; choose --output")
    if target.is_dir() and fmt != "savedmodel":
        raise MissingFileError(
            f"{short_path(target)}: is a folder where the {fmt} file should be; give --output "
            f"a file path, e.g. {short_path(target / ('model.' + fmt))}"
        )
    if target.is_dir() and not (target / "saved_model.pb").is_file():
        kind = "a new folder or an earlier SavedModel"
        raise ConfigError(
            f"{target} is a folder that holds no exported SavedModel; --output needs {kind}, "
            "and an export never replaces other folders"
        )
    if (target.exists() or target.is_symlink()) and not force:
        raise ConfigError(
            f"{target} already exists; pass --force to replace it, or --output another path"
        )


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A hidden folder beside `target` (same disk, so the final rename is atomic); removed after."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise os_failure(exc, target) from None
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(staged: Path, target: Path, tmp: Path) -> None:
    """Rename the checked export onto `target`; an old one (with --force) goes into `tmp`."""
    if (target.exists() or target.is_symlink()) and (target.is_dir() or staged.is_dir()):
        os.replace(target, tmp / ".replaced")  # a folder cannot be swapped in one rename
    os.replace(staged, target)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# ---------------------------------------------------------------- conversion


def _convert(model: keras.Model, fmt: str, quantize: str, path: Path, tmp: Path) -> None:
    """Write the export to `path` (in `tmp`, beside the target); a converter's failure is one
    line: a full or read-only disk exit 3 naming the target, anything else exit 1."""
    model = for_inference(model)
    try:
        with hold_stderr():  # converters log to fd 2 from C++; kept unless the block fails
            if fmt == "savedmodel":
                _write_savedmodel(model, path)
            elif fmt == "tflite":
                _write_tflite(model, path, quantize, tmp / "savedmodel")
            else:
                _write_onnx(model, path)
    except FmnistError:
        raise
    except Exception as exc:  # converters raise many types (unsupported op, bad graph, disk)
        if (disk := disk_failure(exc, tmp.parent / path.name)) is not None:
            raise disk from None
        raise FmnistError(f"{fmt} export failed: {first_line(exc)}; nothing was written") from None


def for_inference(model: keras.Model) -> keras.Model:
    """The model wrapped so that every trace of it runs in inference mode.

    Exporters trace the model without a `training` argument. Keras 3 then resolves it layer by
    layer, and a preprocessing layer whose `call` defaults to training=True (Resizing does)
    leaves that value in the call context for the layers after it: inside a nested backbone,
    dropout and BatchNorm then traced in training mode, so a scratch CNN behind a resize
    exported random ops and batch statistics. The wrapper passes training=False explicitly,
    for every format and every model, whatever its layers.
    """
    import keras
    import numpy as np

    pixels = keras.Input(model.input_shape[1:], name="pixels")
    wrapped = keras.Model(pixels, model(pixels, training=False), name=model.name)
    wrapped(np.zeros((1, *model.input_shape[1:]), np.float32))  # ONNX's exporter wants it called
    return wrapped


def _write_savedmodel(model: keras.Model, path: Path) -> None:
    """Keras 3's own export: a `serve` endpoint and a `serving_default` signature."""
    model.export(str(path), format="tf_saved_model", verbose=False)


def _write_tflite(model: keras.Model, path: Path, quantize: str, savedmodel: Path) -> None:
    """TFLiteConverter from the SavedModel above: one graph for both formats."""
    import tensorflow as tf

    _write_savedmodel(model, savedmodel)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(converter.convert())


def _write_onnx(model: keras.Model, path: Path) -> None:
    """Keras 3's own ONNX export, which drives tf2onnx (patched by Keras for numpy 2)."""
    with warnings.catch_warnings():
        # Keras's numpy-2 patch for tf2onnx probes np.object, which numpy deprecates.
        warnings.filterwarnings("ignore", message=".*np\\.object", category=FutureWarning)
        model.export(str(path), format="onnx", verbose=False)
