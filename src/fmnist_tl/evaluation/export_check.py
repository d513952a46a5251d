"""An export checked before it is kept: loaded with its own runtime (`tf.saved_model.load`,
`tf.lite.Interpreter`, `onnxruntime`), run on real Fashion-MNIST test images, and compared with
the Keras model's probabilities."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FmnistError, first_line
from ..tfenv import hold_stderr

if TYPE_CHECKING:
    import numpy as np

CHECK_BATCH = 100
# Largest |p_export - p_keras| allowed for any class of any checked image, and the share of
# images whose top-1 must be the Keras model's. Measured on all 10,000 test images with a
# MobileNetV2@96 model (README, "Export"): float32 exports differ from Keras only by the order
# of float operations, at most 1.7e-5 (TFLite's XNNPACK; 1.1e-5 onnxruntime, 0 SavedModel), and
# keep every top-1; float16 and dynamic-range (int8) weights moved probabilities by up to 0.053
# and 0.077 and kept 99.2% and 99.1% of the top-1s. The bounds leave ~6x the float32 and ~2.7x
# the quantized differences; the 97% floor allows ~4x the disagreements measured.
TOLERANCE = {"none": 1e-4, "float16": 0.15, "dynamic": 0.2}
MIN_TOP1 = {"none": 1.0, "float16": 0.97, "dynamic": 0.97}


@dataclass(frozen=True)
class ParityCheck:
    """How an export's predictions compare with the Keras model's on the same test images."""

    images: int
    data_source: str
    max_abs_diff: float  # the largest |p_export - p_keras| over every image and class
    tolerance: float
    top1_agree: int  # images whose top-1 class is the Keras model's
    min_top1: float  # the share of images that must agree: 1.0 for float32 exports
    seconds: float

    @property
    def passed(self) -> bool:
        within = self.max_abs_diff <= self.tolerance  # False for NaN
        return within and self.top1_agree >= self.min_top1 * self.images


def check_export(
    fmt: str,
    path: Path,
    images: np.ndarray,
    reference: np.ndarray,
    quantize: str,
    source: str,
) -> tuple[ParityCheck, str]:
    """Run the export with its own runtime on `images`; compare with the Keras probabilities."""
    import numpy as np

    start = time.perf_counter()
    runner, runtime = _RUNNERS[fmt]()
    x = images.astype(np.float32)
    batches = [x[i : i + CHECK_BATCH] for i in range(0, len(x), CHECK_BATCH)]
    try:
        with hold_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            got = np.concatenate([np.asarray(p, np.float32) for p in runner(path, batches)])
    except Exception as exc:  # a runtime that cannot load or run what was written
        raise FmnistError(
            f"{fmt} export check failed: {runtime} cannot run it: {first_line(exc)}; "
            "nothing was written"
        ) from None
    if got.shape != reference.shape:
        raise FmnistError(
            f"{fmt} export check failed: it returned shape {got.shape}, the Keras model "
            f"{reference.shape}; nothing was written"
        )
    check = ParityCheck(
        images=len(x),
        data_source=source,
        max_abs_diff=float(np.max(np.abs(got - reference))),
        tolerance=TOLERANCE[quantize],
        top1_agree=int(np.sum(got.argmax(axis=1) == reference.argmax(axis=1))),
        min_top1=MIN_TOP1[quantize],
        seconds=time.perf_counter() - start,
    )
    return check, runtime


def failure(fmt: str, quantize: str, check: ParityCheck) -> str:
    variant = fmt if quantize == "none" else f"{fmt} ({quantize})"
    return (
        f"{variant} export failed its check on {check.images} test images: max |p - p_keras| "
        f"{check.max_abs_diff:.2e} (allowed {check.tolerance:g}), same top-1 on "
        f"{check.top1_agree}/{check.images} (required {check.min_top1:.0%}); nothing was written"
    )


Runner = Callable[[Path, list[Any]], Iterator[Any]]


def _savedmodel_runner() -> tuple[Runner, str]:
    import tensorflow as tf

    def run(path: Path, batches: list[Any]) -> Iterator[Any]:
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        (name,) = serve.structured_input_signature[1]
        (key,) = serve.structured_outputs
        for b in batches:
            yield serve(**{name: tf.constant(b)})[key].numpy()

    return run, f"tf.saved_model.load (TensorFlow {tf.__version__})"


def _tflite_runner() -> tuple[Runner, str]:
    import tensorflow as tf

    def run(path: Path, batches: list[Any]) -> Iterator[Any]:
        with warnings.catch_warnings():  # "use ai_edge_litert instead": still TF 2.21's own
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            interpreter = tf.lite.Interpreter(model_path=str(path))
        inp = interpreter.get_input_details()[0]["index"]
        out = interpreter.get_output_details()[0]["index"]
        shape = None
        for b in batches:
            if b.shape != shape:  # the batch size is dynamic (-1) in the converted graph
                interpreter.resize_tensor_input(inp, b.shape)
                interpreter.allocate_tensors()
                shape = b.shape
            interpreter.set_tensor(inp, b)
            interpreter.invoke()
            yield interpreter.get_tensor(out).copy()

    return run, f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


def _onnx_runner() -> tuple[Runner, str]:
    import onnxruntime as ort

    def run(path: Path, batches: list[Any]) -> Iterator[Any]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for b in batches:
            yield session.run(None, {name: b})[0]

    return run, f"onnxruntime {ort.__version__}"


_RUNNERS: dict[str, Callable[[], tuple[Runner, str]]] = {
    "savedmodel": _savedmodel_runner,
    "tflite": _tflite_runner,
    "onnx": _onnx_runner,
}
