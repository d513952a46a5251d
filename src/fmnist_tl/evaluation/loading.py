"""A saved model, loaded and checked to be a Fashion-MNIST classifier, and what its saved config
asks of its evaluation: the test-time flip, and how its frozen pass runs (models/frozen.py)."""

from __future__ import annotations

from pathlib import Path

import keras

from .. import progress
from ..classes import CLASS_NAMES
from ..errors import ConfigError, MissingFileError, first_line
from ..models.frozen import PassSetup
from ..paths import check_model_file

EXPECTED_INPUT = (None, 28, 28, 1)


def load_classifier(path: str | Path) -> keras.Model:
    """Load a .keras file and check it is a Fashion-MNIST classifier (28x28x1 -> 10)."""
    path = check_model_file(path)  # missing, a folder, not a zip, a zip of no model
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise MissingFileError(
            f"{path}: cannot load the model ({first_line(exc)}): the file is damaged or not a "
            "model saved by Keras 3; train again or pass another .keras file"
        ) from None
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape != EXPECTED_INPUT or tuple(model.output_shape) != (None, len(CLASS_NAMES)):
        raise ConfigError(
            f"{path}: model maps {model.input_shape} -> {model.output_shape}, but a "
            "Fashion-MNIST classifier maps (None, 28, 28, 1) -> (None, 10)"
        )
    return model


def saved_test_flip(model_path: str | Path) -> bool:
    """`augment.test_flip` of the config saved with a model; False when it has none.

    Evaluating needs no config, so one that cannot be read costs a note, not the evaluation.
    """
    from ..config import config_beside, load_config

    found = config_beside(Path(model_path))
    if found is None:
        return False
    try:
        return load_config(found).augment.test_flip
    except ConfigError as exc:
        progress.say(
            f"note: no test-time flip: {first_line(exc)}; "
            "pass --test-flip or --no-test-flip to choose"
        )
        return False


def saved_frozen_setup(model_path: str | Path) -> PassSetup:
    """How `evaluate` and `predict` run a model's pass: runtime.frozen_pass of the config saved
    with it, converted models kept in its output.cache_dir (the defaults without one)."""
    from ..config import Config, config_beside, load_config

    found = config_beside(Path(model_path))
    try:
        config = load_config(found) if found is not None else Config()
    except ConfigError:  # saved_test_flip has said so; the pass is not worth a second line
        config = Config()
    return PassSetup(config.runtime.frozen_pass, Path(config.output.cache_dir))
