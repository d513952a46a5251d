"""A frozen Keras model as a float32 TFLite flatbuffer, run by LiteRT's interpreter on XNNPACK.

Conversion traces `model(x, training=False)` (explicitly: see evaluation.export.for_inference
for what a missing flag does behind a Resizing layer) as one tf.function over a batch of any
size and hands that concrete function, with the tf.function that holds its variables, to
`tf.lite.TFLiteConverter.from_concrete_functions`: the converter freezes the variables into
constants itself. No optimization is set, so every weight and every op stays float32. Measured
on the 2-core VM with other jobs running (MobileNetV2 at 96 px with its preprocessing and
pooling): this path converted in 9-12 s, the SavedModel path `from_keras_model` takes (Keras 3's
ExportArchive written to disk, then read back) in 47 s, to the same outputs.

The runtime is LiteRT (`ai-edge-litert`), Google's maintained home of the TFLite interpreter:
TensorFlow 2.21 deprecates `tf.lite.Interpreter` in its favour. It installs beside TensorFlow
2.21 without changing any of its packages and applies the XNNPACK delegate to float32 graphs by
default. Where it is not installed, TensorFlow's own interpreter runs the same flatbuffer
(`runtime()` says which). Either runs with as many threads as this process may use.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import progress
from ..tfenv import hold_stderr

if TYPE_CHECKING:
    import keras

BATCH = 64  # images per invoke: the interpreter keeps one batch's activations


def threads() -> int:
    """The cores this process may run on (its affinity mask), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def runtime() -> str:
    """What runs a converted model here: LiteRT and its version, else TensorFlow's interpreter."""
    try:
        from importlib.metadata import version

        import ai_edge_litert.interpreter  # noqa: F401

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf

        if not hasattr(tf.lite, "Interpreter"):
            return "none"
        return f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


def convert(model: keras.Model) -> bytes:
    """`model` in inference mode as a float32 TFLite flatbuffer with a dynamic batch size.

    The converter's MLIR lines go to fd 2, held (and written out only if it fails)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    with hold_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite's deprecation notes: the flatbuffer is LiteRT's
        # `fn` holds the variables; the converter freezes them into constants.
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [fn.get_concrete_function()], fn
        )
        return bytes(converter.convert())


class Compiled:
    """A converted model loaded into an interpreter with XNNPACK, run batch by batch."""

    def __init__(self, flatbuffer: bytes, num_threads: int | None = None) -> None:
        self.threads = num_threads or threads()
        self._interpreter = _interpreter(flatbuffer, self.threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def __call__(
        self, x: np.ndarray, batch_size: int = BATCH, *, label: str | None = None
    ) -> np.ndarray:
        """The model's outputs for `x` (uint8 or float pixels), as float32 numpy; with
        `label`, a progress bar of that name (as models.inference.infer)."""
        outputs = []
        bar = progress.task(label, len(x)) if label else contextlib.nullcontext(_nothing)
        with bar as advance:
            for start in range(0, len(x), batch_size):
                outputs.append(self._invoke(x[start : start + batch_size]))
                advance(len(outputs[-1]))
        if not outputs:
            shape = self._interpreter.get_output_details()[0]["shape_signature"][1:]
            return np.zeros((0, *shape), np.float32)
        return np.concatenate(outputs)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape != self._shape:  # the batch size is dynamic (-1) in the flatbuffer
            with hold_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self._interpreter.resize_tensor_input(self._input, batch.shape)
                self._interpreter.allocate_tensors()
            self._shape = batch.shape
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output), dtype=np.float32)


def _interpreter(flatbuffer: bytes, num_threads: int) -> Any:
    """LiteRT's interpreter (XNNPACK applied by default), else TensorFlow's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = getattr(tf.lite, "Interpreter", None)  # noqa: N806
        if Interpreter is None:  # a TensorFlow that has handed it to LiteRT for good
            raise RuntimeError(
                "neither ai-edge-litert nor tf.lite.Interpreter is installed"
            ) from None
    with hold_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated": the fallback
        return Interpreter(model_content=flatbuffer, num_threads=num_threads)


def _nothing(n: int) -> None:
    """`advance` without a bar."""
