"""Test-set evaluation of a saved model, or of several as an ensemble (ensemble.py): the scores
(scores.py), written as evaluation.json with its pictures (reporting.plots), never over the
report of another test setup."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import atomic, progress
from ..data.sources import limit, load_fashion_mnist
from ..layout import CONFIG, EVALUATION
from ..models.frozen import FrozenPass
from ..paths import check_report_outputs, read_text, report_paths
from ..reporting.plots import plot_confusion_matrix, plot_misclassified, run_title
from . import ensemble
from .loading import load_classifier, saved_frozen_setup, saved_test_flip
from .scores import evaluate_arrays


def write_evaluation(
    model: keras.Model | None,
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
    model_path: str | Path | Sequence[str | Path],
    *,
    data_dir: str | None = None,
    test_limit: int | None = None,
    output: str | Path | None = None,
    test_flip: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a saved model, or several as an ensemble, on the Fashion-MNIST test set; write
    JSON and pictures.

    `test_flip` None: as the config saved with each model says (augment.test_flip). The report
    goes to `output`, else beside the (first) model (`report_path`; an ensemble's is named by
    its members): a run's evaluation.json is only rewritten for the test setup it used.
    """
    paths = (
        [Path(model_path)] if isinstance(model_path, str | Path) else [Path(p) for p in model_path]
    )
    if len(paths) > 1:
        return _evaluate_ensemble(paths, data_dir, test_limit, output, test_flip)
    (path,) = paths
    model = load_classifier(path)
    if test_flip is None:
        test_flip = saved_test_flip(path)
    x, y, source = _test_set(data_dir, test_limit)
    setup = {"n": int(len(y)), "test_flip": bool(test_flip), "data_source": source}
    out = Path(output) if output else report_path(path, setup)
    extra = {"model": str(path), "data_source": source}
    n_images = len(x) * (2 if test_flip else 1)  # auto: XNNPACK only for many images
    frozen = FrozenPass(model, saved_frozen_setup(path), n_images, what="the model's pass")
    return write_evaluation(
        model,
        x,
        y,
        out,
        test_flip=test_flip,
        extra=extra,
        run_id=model_run_id(path),
        frozen=frozen,
    )


def _evaluate_ensemble(
    paths: list[Path],
    data_dir: str | None,
    test_limit: int | None,
    output: str | Path | None,
    test_flip: bool | None,
) -> dict[str, Any]:
    """The ensemble's scores (the mean of its members' probabilities), each member's beside."""
    members = ensemble.load_members(paths, test_flip)
    x, y, source = _test_set(data_dir, test_limit)
    probs = ensemble.member_probabilities(members, x)
    extra = {**ensemble.describe(members), "data_source": source}
    extra["members"] = ensemble.member_scores(members, probs, y)
    out = Path(output) if output else paths[0].parent / ensemble.report_name(paths)
    views = [ensemble.ensemble_probabilities(probs)]
    run_id = f"ensemble of {len(members)}"
    return write_evaluation(None, x, y, out, extra=extra, run_id=run_id, views=views)


def _test_set(data_dir: str | None, test_limit: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    with progress.task("loading data", None):
        ds = load_fashion_mnist(data_dir)
    x, y = limit(ds.x_test, ds.y_test, test_limit)
    return x, y, ds.source


def report_path(model_path: Path, setup: dict[str, Any]) -> Path:
    """evaluation.json beside the model when `setup` is the one it holds (or there is none);
    else a file named after what differs: evaluation.limit50.json, evaluation.flip.json,
    evaluation.data-<digest>.json, so a run's own report is never replaced by another setup's.
    """
    own = model_path.parent / EVALUATION
    try:
        held = atomic.loads_json(read_text(own))
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
        record = atomic.loads_json(read_text(model_path.with_suffix(".json")))
    except (OSError, ValueError):
        return model_path.name
    run = record.get("run_id") if isinstance(record, dict) else None
    return f"{model_path.name} ({run})" if run else model_path.name
