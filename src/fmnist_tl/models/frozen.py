"""Every frozen forward pass: through XNNPACK (LiteRT) on a CPU when it is exact enough, else Keras.

A frozen pass runs a model whose weights do not change: the backbone's pooled features for
stage 1, the bottom below stage 2's cut, a saved model on the test images. On a CPU, the same
model converted to a float32 TFLite flatbuffer and run by XNNPACK (models/litert.py) measured
1.8-2.5x the images per second of `inference.infer` (issue 29: MobileNetV2 at 96 px, 2 cores).

`FrozenPass` is one model's pass for one run, built on first use:

- **Which**: `runtime.frozen_pass` (`PassSetup.mode`). `keras` is today's pass; `xnnpack` asks
  for the converted one; `auto` asks for it when the pass covers at least `MIN_IMAGES` images,
  since converting costs seconds that a small pass would not win back. On a GPU or under
  `runtime.distribute` the pass is Keras's whatever the mode.
- **Built once per model**: the flatbuffer is kept in the cache folder as
  `xnnpack-<key>.tflite` with a verified sidecar (cache.save_bytes). The key is a digest of what
  the outputs depend on, as the caches' keys are, less the images: every layer's class and
  settings, every weight, the input shape, the TensorFlow and Keras versions. So the pool, its
  mirror images and the test images, a second seed, a resumed run and a sweep cell with the
  same backbone share one conversion.
- **Checked every time it is built**: on `CHECK_IMAGES` evenly spaced images of the first batch
  it is asked for, beside the Keras pass. It is used only when the largest difference is at most
  `TOLERANCE` times the largest value the Keras pass gave there (the features' scale) and the
  head's top-1 class is the same on every one of them; otherwise one line says why, and the
  pass is Keras's.
- **Timed on the same images, for `auto`**: both passes run the check's images in batches,
  and `auto` keeps XNNPACK only when it ran at least `MIN_SPEED` times Keras's speed there
  (the first batch of each, which sets up kernels and buffers, left out). XNNPACK is not
  faster everywhere: a frozen VGG16 at 32 px ran at 0.69x (README "Speed"). `xnnpack` asks
  for it whatever its speed.

The caller records `FrozenPass.name` ("xnnpack" or "keras") in the cache key of what it made,
so a cache never mixes the two unawares, and in metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import progress
from ..cache import load_bytes, save_bytes
from ..errors import first_line
from .inference import graph_step, infer

if TYPE_CHECKING:
    import keras

    from .litert import Compiled

KERAS, XNNPACK = "keras", "xnnpack"
MODES = ("auto", KERAS, XNNPACK)
# Largest |xnnpack - keras| allowed, relative to the largest |keras| value on the checked
# images. Both passes compute the same float32 graph; only the order of the sums differs
# (XNNPACK's kernels against oneDNN's), which leaves about 1e-5 of the scale: measured
# (scripts/bench_passes.py, README "Speed") for MobileNetV2 at 96 px with the ImageNet weights
# 3.0e-5 (its pooled features, 1.8e-4 at a scale of 6), 1.9e-5 (the whole model), 1.1e-5 and
# 6e-6 (below block_13, block_6); 2e-6 for a frozen random ResNet50 and 0 for VGG16 at 32 px.
# 1e-3 leaves 30x that for other backbones and sizes, while a pass that computes something else (a
# layer in training mode, other weights, another preprocessing) is off by a sizeable share of
# the scale. The head's top-1 must also be unchanged on every checked image.
TOLERANCE = 1e-3
CHECK_IMAGES = 256
TIMED_BATCH = 64  # the check's images are run and timed in batches of this many
# `auto` below this many images stays on Keras: converting MobileNetV2 at 96 px took 2.5 s on
# the quiet 2-core VM (more when shared) and its check about 3 CPU s, while XNNPACK saved 7.8 s on
# 4,096 images (README "Speed"): below a few thousand images the pass would not pay for them.
MIN_IMAGES = 4096
# `auto` keeps an exact XNNPACK pass unless it ran below this share of Keras's speed on the
# check's images: under 1, so that a pass about as fast as Keras's does not flip between
# the two with the machine's noise (±30% here) from one run to the next.
MIN_SPEED = 0.9
PREFIX = "xnnpack-"
WHAT = "converted frozen pass"  # names a damaged file in cache.py's one line


@dataclass(frozen=True)
class PassSetup:
    """How the frozen passes of one run (or one evaluation) are made."""

    mode: str = "auto"  # runtime.frozen_pass: auto, keras or xnnpack
    cache_dir: Path | None = None  # where converted models are kept; None: converted each time
    distributed: bool = False  # a tf.distribute strategy runs the model

    def intended(self, n_images: int) -> str:
        """The pass asked for, before any conversion or check: XNNPACK or Keras."""
        if self.mode == KERAS or self.distributed or _has_gpu():
            return KERAS
        return XNNPACK if self.mode == XNNPACK or n_images >= MIN_IMAGES else KERAS


@dataclass(frozen=True)
class Check:
    """The converted pass beside Keras's on the same images."""

    images: int
    max_abs_diff: float
    scale: float  # the largest |value| of the Keras outputs
    top1_changed: int  # images whose top-1 class under the head differs
    keras_s: float = 0.0  # seconds each pass took on the images (first batch left out)
    xnnpack_s: float = 0.0

    @property
    def speed(self) -> float:
        """XNNPACK's speed as a multiple of Keras's on the checked images (inf if untimed)."""
        return self.keras_s / self.xnnpack_s if self.xnnpack_s > 0 else float("inf")

    @property
    def passed(self) -> bool:
        within = self.max_abs_diff <= TOLERANCE * self.scale  # False for NaN
        return bool(within) and self.top1_changed == 0

    def why(self) -> str:
        """What failed, as words after "it": the difference, then any top-1 changed."""
        diff = (
            f"differs from Keras by up to {self.max_abs_diff:.2e} on {self.images} images "
            f"(allowed {TOLERANCE:g} x their scale {self.scale:.3g})"
        )
        if not self.top1_changed:
            return diff
        return f"{diff} and changes the top-1 class of {self.top1_changed} of them"


class FrozenPass:
    """One frozen model's forward pass for a run: XNNPACK when it is asked for and checks out,
    else `inference.infer`. Built (converted or loaded, then checked) on the first call."""

    def __init__(
        self,
        model: keras.Model,
        setup: PassSetup,
        n_images: int,
        *,
        head: keras.Model | None = None,
        what: str = "the frozen pass",
    ) -> None:
        self.model, self.setup, self.head, self.what = model, setup, head, what
        self.intended = setup.intended(n_images)  # what a cache is looked up under first
        self.check: Check | None = None
        self._compiled: Compiled | None = None
        self._built = self.intended == KERAS  # nothing to build for Keras's pass

    @property
    def name(self) -> str:
        """The pass that runs: "xnnpack" or "keras" (once built: `build` or a call)."""
        if not self._built:
            raise RuntimeError("FrozenPass.name before the pass was built; call build(x)")
        return XNNPACK if self._compiled is not None else KERAS

    def build(self, x: np.ndarray) -> str:
        """Convert (or load) and check on a sample of `x`, once; returns `name`."""
        if not self._built:
            self._built = True
            self._compiled = self._checked(_sample(x)) if len(x) else None
        return self.name

    def __call__(self, x: np.ndarray, *, label: str | None = None) -> np.ndarray:
        """The model's outputs for `x`, as float32 numpy; `label` names the progress bar."""
        self.build(x)
        if self._compiled is not None:
            return self._compiled(x, label=label)
        return infer(self.model, x, label=label)

    def _checked(self, sample: np.ndarray) -> Compiled | None:
        from .litert import Compiled

        try:
            compiled = Compiled(flatbuffer(self.model, self.setup.cache_dir))
            self.check = check(self.model, compiled, sample, self.head)
        except Exception as exc:  # a converter or runtime that cannot take this graph
            why = f"it cannot be converted or run ({first_line(exc)})"
            progress.say(f"note: XNNPACK is off for {self.what}: {why}; Keras runs it")
            return None
        if not self.check.passed:
            progress.say(
                f"note: XNNPACK is off for {self.what}: it {self.check.why()}; Keras runs it"
            )
            return None
        if self.setup.mode == "auto" and self.check.speed < MIN_SPEED:
            progress.say(
                f"note: XNNPACK is off for {self.what}: it ran at {self.check.speed:.2f}x "
                f"Keras's speed on {self.check.images} images (runtime.frozen_pass=xnnpack "
                "uses it anyway); Keras runs it"
            )
            return None
        return compiled


def keras_pass(model: keras.Model) -> FrozenPass:
    """The Keras pass of `model` (today's `infer`), as a FrozenPass."""
    return FrozenPass(model, PassSetup(KERAS), 0)


def flatbuffer(model: keras.Model, cache_dir: Path | None) -> bytes:
    """The converted model: from `cache_dir` when a verified copy is there, else converted
    (and kept there)."""
    from .litert import convert

    if cache_dir is None:
        return convert(model)
    path = Path(cache_dir) / f"{PREFIX}{model_key(model)}.tflite"
    data = load_bytes(path, what=WHAT)
    if data is None:
        data = convert(model)
        save_bytes(path, data, what=WHAT)
    return data


def check(
    model: keras.Model, compiled: Compiled, sample: np.ndarray, head: keras.Model | None
) -> Check:
    """The converted pass and Keras's on `sample`: the largest difference, its scale, and the
    images whose top-1 class under `head` (the outputs themselves without one) changed, and
    the seconds each took on it."""
    (ref, keras_s), (got, xnnpack_s) = (
        _timed(keras_batches(model, sample), sample),
        _timed(compiled, sample),
    )
    if got.shape != ref.shape:
        return Check(len(sample), float("inf"), 0.0, len(sample))
    if head is not None:  # called eagerly: tracing the head would cost more than running it
        both = np.concatenate([ref, got])
        both = np.concatenate(
            [np.asarray(head(both[i : i + 128], training=False)) for i in range(0, len(both), 128)]
        )
        top_ref, top_got = both[: len(ref)].argmax(-1), both[len(ref) :].argmax(-1)
    else:
        top_ref, top_got = _flat(ref).argmax(-1), _flat(got).argmax(-1)
    return Check(
        images=len(sample),
        max_abs_diff=float(np.max(np.abs(got - ref))) if ref.size else 0.0,
        scale=float(np.max(np.abs(ref))) if ref.size else 0.0,
        top1_changed=int(np.sum(top_ref != top_got)),
        keras_s=keras_s,
        xnnpack_s=xnnpack_s,
    )


def _timed(run: Any, x: np.ndarray) -> tuple[np.ndarray, float]:
    """`run` batch by batch over `x`, concatenated, and the seconds of every batch but the
    first (which traces, or sets up kernels and buffers; all of them when there is only one)."""
    outputs, seconds = [], []
    for start in range(0, max(len(x), 1), TIMED_BATCH):
        t0 = time.perf_counter()
        outputs.append(run(x[start : start + TIMED_BATCH]))
        seconds.append(time.perf_counter() - t0)
    return np.concatenate(outputs), sum(seconds[1:] or seconds)


def keras_batches(model: keras.Model, x: np.ndarray) -> Any:
    """The Keras pass the check times: `inference.graph_step` (infer's graph) traced once for
    `x`'s images, a function of one batch returning float32 numpy. Eager calls cost less on
    256 images (no trace: 2.6 against 3.0 CPU s for MobileNetV2 at 96 px) but do not time
    Keras's real pass: eagerly, XNNPACK looked 6.4x faster for MobileNetV2 at 96 px (3.3x in
    truth) and 1.02x for VGG16 at 32 px (0.81x)."""
    import tensorflow as tf

    step = graph_step(model, x.shape[1:])
    return lambda batch: np.asarray(step(tf.cast(batch, tf.float32)), dtype=np.float32)


def model_key(model: keras.Model) -> str:
    """A digest of everything a model's outputs depend on but its inputs (module docstring)."""
    import keras
    import tensorflow as tf

    h = hashlib.sha256()
    parts = {
        "layers": _structure(model),
        "input": list(model.input_shape[1:]),
        "float": "float32",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    for w in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        h.update(f"{value.shape}{value.dtype}".encode())
        h.update(value.tobytes())
    return h.hexdigest()[:24]


def _structure(model: keras.Model) -> list[Any]:
    """Each layer's class and settings, nested models opened, in order; names left out (Keras
    numbers unnamed layers per process, so a rebuilt model would not match itself)."""
    import keras

    out: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.append(_structure(layer))
            continue
        settings = {k: v for k, v in layer.get_config().items() if k != "name"}
        out.append([type(layer).__name__, settings])
    return out


def _sample(x: np.ndarray) -> np.ndarray:
    """`CHECK_IMAGES` evenly spaced images of `x` (all of them when fewer): a fixed sample."""
    if len(x) <= CHECK_IMAGES:
        return np.asarray(x)
    return np.asarray(x[np.linspace(0, len(x) - 1, CHECK_IMAGES).astype(int)])


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
