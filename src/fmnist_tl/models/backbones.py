"""A backbone network from its registry row (config/backbones.py), with the weights asked for.

keras.applications networks are built by the constructor their row names; from-scratch ones by
models/scratch.py. `weights` is `imagenet` (Keras's own download and cache), `none` (random
init) or a local weights file, and what was actually loaded is returned for metrics.json.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import progress
from ..config.backbones import BACKBONES, BackboneSpec
from ..errors import MissingFileError, first_line, short_path
from ..paths import file_problem
from .scratch import SCRATCH


def build_backbone(spec: BackboneSpec, size: int, weights: str | None, model_cfg: Any) -> Any:
    """Build the headless backbone as a named sub-model taking preprocessed images."""
    import keras

    if spec.keras_app is not None:
        constructor = getattr(keras.applications, spec.keras_app)
        with _quiet_keras_app():
            return constructor(
                include_top=False,
                weights=weights,
                input_shape=(size, size, 3),
                name="backbone",
            )
    return SCRATCH[spec.name](size, getattr(model_cfg, spec.name))


@contextlib.contextmanager
def _quiet_keras_app() -> Iterator[None]:
    """Keras's own words while it builds an application, held back unless verbose:

    - the UserWarning (with its source line) that MobileNetV2 at a size without its own
      ImageNet weights loads the 224 ones: a known fact of the registry (`weight_sizes`);
    - "Downloading data from https://..." and its bar: written out when the download
      succeeds, dropped when it fails, as the error then says which file to put where.
    """
    from .. import tfenv

    if tfenv.verbose():
        yield
        return
    held = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(held):
        warnings.filterwarnings("ignore", message=".*input_shape. is undefined or non-square")
        yield
    sys.stdout.write(held.getvalue())  # not reached when the build fails


def keras_models_dir() -> Path:
    """Where keras.applications caches weight files ($KERAS_HOME/models or ~/.keras/models)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_file(spec: BackboneSpec, size: int) -> Path:
    """Where Keras keeps the ImageNet weights it loads for `spec` at `size`."""
    return keras_models_dir() / spec.imagenet_weights_file(size)


def make_backbone(model_cfg: Any) -> tuple[Any, str, bool]:
    """Build the configured backbone; return (backbone, weights actually used, pretrained?).

    `weights: imagenet` goes through Keras's own download and cache. Offline, that fails:
    then either stop with a message saying which file to put where, or, when the config
    opts in with `allow_random_weights`, continue from random weights and say so loudly.
    """
    spec = BACKBONES[model_cfg.backbone]
    size = model_cfg.input_size
    weights = model_cfg.weights
    if weights == "none":
        return build_backbone(spec, size, None, model_cfg), "none (random init)", False
    if weights != "imagenet":
        path = Path(weights)
        if (problem := file_problem(path, "weights file")) is not None:  # a FIFO never opened
            raise MissingFileError(
                f"model.weights: {short_path(path)}: {problem}; give an existing "
                "weights file (.weights.h5 or .h5), 'imagenet' or 'none'"
            )
        backbone = build_backbone(spec, size, None, model_cfg)
        try:
            backbone.load_weights(str(path))
        except Exception as exc:  # h5py/Keras raise many types for a bad file
            raise MissingFileError(
                f"model.weights: cannot load {weights!r} into {spec.name} at {size}x{size}: "
                f"{first_line(exc)}"
            ) from None
        return backbone, f"file {path.resolve()}", True
    try:
        return build_backbone(spec, size, "imagenet", model_cfg), "imagenet", True
    except Exception as exc:  # Keras raises a bare Exception on URL fetch failure
        file = spec.imagenet_weights_file(size)
        reason = first_line(exc)
        if not model_cfg.allow_random_weights:
            raise MissingFileError(
                f"ImageNet weights for {spec.name} could not be loaded ({reason}); put "
                f"{file} in {keras_models_dir()}/, or set model.weights to 'none' (train "
                "from scratch) or to a local weights file, or set "
                "model.allow_random_weights=true to continue from random weights"
            ) from None
    # The size random weights train at: the config says what was built from here on (the
    # caches, config.yaml and metrics.json record it).
    model_cfg.input_size = size = model_cfg.fallback_input_size or size
    progress.say(
        f"WARNING: ImageNet weights for {spec.name} are unavailable ({file} not in "
        f"{keras_models_dir()}); continuing from RANDOM weights at {size} px as "
        "model.allow_random_weights asks. Accuracy will NOT reflect transfer learning."
    )
    return (
        build_backbone(spec, size, None, model_cfg),
        "none (random init: ImageNet weights unavailable, allow_random_weights)",
        False,
    )
