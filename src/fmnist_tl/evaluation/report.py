"""Test-set evaluation of a saved model: the scores (scores.py), written as evaluation.json with
its pictures (reporting.plots), never over the report of another test setup."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import atomic, progress
from ..classes import CLASS_NAMES
from ..data.sources import limit, load_fashion_mnist
from ..errors import ConfigError, MissingFileError, first_line
from ..layout import CONFIG, EVALUATION
from ..models.frozen import FrozenPass, PassSetup
from ..paths import check_model_file, check_report_outputs, report_paths
from ..reporting.plots import plot_confusion_matrix, plot_misclassified, run_title
from .scores import evaluate_arrays

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
    """How `evaluate` and `predict` run the model's pass: runtime.frozen_pass of the config
    saved with it, converted models kept in its output.cache_dir (the defaults without one)."""
    from ..config import Config, config_beside, load_config

    found = config_beside(Path(model_path))
    try:
        config = load_config(found) if found is not None else Config()
    except ConfigError:  # saved_test_flip has said so; the pass is not worth a second line
        config = Config()
    return PassSetup(config.runtime.frozen_pass, Path(config.output.cache_dir))


def write_evaluation(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    out_json: Path,
    *,
    test_flip: bool = False,
    extra: dict[str, Any] | None = None,
    run_id: str | None = None,
    views: list[np.ndarray] | None = None,
    frozen: FrozenPass | None = None,
) -> dict[str, Any]:
    """Evaluate, write the JSON report and its pictures (confusion matrix, mistakes), whose
    titles name `run_id` (default: the report's folder) and the test accuracy; `views` and
    `frozen` as for `evaluate_arrays`.

    Every path is checked before the first is written, so a picture's path that is a folder
    leaves no JSON report without its pictures."""
    check_report_outputs(out_json)
    _, confusion, mistakes = report_paths(out_json)
    result = evaluate_arrays(model, x, y, test_flip=test_flip, views=views, frozen=frozen)
    pred, probs = result.pop("predictions"), result.pop("probabilities")
    result.update(extra or {})
    atomic.write_json(out_json, result)
    title = run_title(run_id or out_json.parent.name, result["accuracy"], len(y))
    cm = np.array(result["confusion_matrix"])
    plot_confusion_matrix(cm, str(confusion), title=title)
    plot_misclassified(x, y, pred, probs, str(mistakes), title=title)
    result["json_path"] = str(out_json)
    result["plots"] = [str(confusion), str(mistakes)]
    return result


def evaluate(
    model_path: str | Path,
    *,
    data_dir: str | None = None,
    test_limit: int | None = None,
    output: str | Path | None = None,
    test_flip: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a saved model on the Fashion-MNIST test set; write JSON and pictures.

    `test_flip` None: as the config saved with the model says (augment.test_flip). The report
    goes to `output`, else beside the model (`report_path`): a run's evaluation.json is only
    rewritten for the test setup the run itself used.
    """
    model_path = Path(model_path)
    model = load_classifier(model_path)
    if test_flip is None:
        test_flip = saved_test_flip(model_path)
    with progress.task("loading data", None):
        ds = load_fashion_mnist(data_dir)
    x, y = limit(ds.x_test, ds.y_test, test_limit)
    setup = {"n": int(len(y)), "test_flip": bool(test_flip), "data_source": ds.source}
    out = Path(output) if output else report_path(model_path, setup)
    extra = {"model": str(model_path), "data_source": ds.source}
    n_images = len(x) * (2 if test_flip else 1)
    frozen = FrozenPass(model, saved_frozen_setup(model_path), n_images, what="the model's pass")
    return write_evaluation(
        model,
        x,
        y,
        out,
        test_flip=test_flip,
        extra=extra,
        run_id=model_run_id(model_path),
        frozen=frozen,
    )


def report_path(model_path: Path, setup: dict[str, Any]) -> Path:
    """evaluation.json beside the model when `setup` is the one it holds (or there is none);
    else a file named after what differs: evaluation.limit50.json, evaluation.flip.json,
    evaluation.data-<digest>.json, so a run's own report is never replaced by another setup's.
    """
    own = model_path.parent / EVALUATION
    try:
        held = json.loads(own.read_text())
    except (OSError, ValueError):
        return own  # nothing to keep (or nothing readable): the report goes here
    if not isinstance(held, dict):
        return own
    parts = []
    if isinstance(held.get("model"), str) and Path(held["model"]).name != model_path.name:
        parts.append(model_path.stem)  # another model of the same folder
    if held.get("n") != setup["n"]:
        parts.append(f"limit{setup['n']}")
    if bool(held.get("test_flip", False)) != setup["test_flip"]:
        parts.append("flip" if setup["test_flip"] else "noflip")
    if held.get("data_source") not in (None, setup["data_source"]):
        digest = hashlib.sha256(setup["data_source"].encode()).hexdigest()[:8]
        parts.append(f"data-{digest}")
    return own if not parts else own.with_name(f"evaluation.{'.'.join(parts)}.json")


def model_run_id(model_path: Path) -> str:
    """What figure titles call a model: its run folder's name, or the file name with the run
    it was published from (saved_models/best.keras's best.json), or the file name alone."""
    if (model_path.parent / CONFIG).is_file():
        return model_path.parent.name
    try:
        record = json.loads(model_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return model_path.name
    run = record.get("run_id") if isinstance(record, dict) else None
    return f"{model_path.name} ({run})" if run else model_path.name
