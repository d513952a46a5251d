"""Test-set evaluation of a saved model: accuracy, loss, per-class report, confusion matrix.

`per_class_report` is the one place precision/recall/F1 are computed; the pictures come from
`reporting.plots`.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import atomic, data
from .classes import CLASS_NAMES
from .errors import ConfigError, MissingFileError, first_line
from .inference import infer
from .reporting.plots import plot_confusion_matrix, plot_misclassified

EXPECTED_INPUT = (None, 28, 28, 1)


def load_classifier(path: str | Path) -> keras.Model:
    """Load a .keras file and check it is a Fashion-MNIST classifier (28x28x1 -> 10)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: model file not found; pass the path to a .keras file")
    if not zipfile.is_zipfile(path):
        raise MissingFileError(f"{path}: not a Keras model file (.keras zip archive expected)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise MissingFileError(f"{path}: cannot load the model: {first_line(exc)}") from None
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
    from .config import config_beside, load_config

    found = config_beside(Path(model_path))
    if found is None:
        return False
    try:
        return load_config(found).augment.test_flip
    except ConfigError as exc:
        print(
            f"note: no test-time flip: {first_line(exc)}; "
            "pass --test-flip or --no-test-flip to choose",
            file=sys.stderr,
        )
        return False


def _views(model: keras.Model, x: np.ndarray, test_flip: bool) -> list[np.ndarray]:
    """Class probabilities of the images, and with `test_flip` of their mirror images."""
    views = [infer(model, x)]
    if test_flip:
        views.append(infer(model, np.ascontiguousarray(x[:, :, ::-1])))
    return views


def predict_proba(model: keras.Model, x: np.ndarray, *, test_flip: bool = False) -> np.ndarray:
    """Class probabilities for raw pixels (0..255), in batches.

    With `test_flip`, the mean over each image and its mirror image (see augment.test_flip).
    """
    return np.mean(_views(model, x, test_flip), axis=0)


def evaluate_arrays(
    model: keras.Model, x: np.ndarray, y: np.ndarray, *, test_flip: bool = False
) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, per-class precision/recall/F1 and confusion matrix.

    With `test_flip` the figures are for the flip-averaged probabilities, and the accuracy of
    the images alone is reported beside them, so the two can be compared.
    """
    views = _views(model, x, test_flip)
    probs = np.mean(views, axis=0)
    y = np.asarray(y, dtype=np.int64)
    pred = probs.argmax(axis=1)
    eps = 1e-7  # the clip Keras's crossentropy uses, so our loss matches model.evaluate
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0))))
    cm, per_class = per_class_report(y, pred, len(CLASS_NAMES))
    single = {"accuracy_without_flip": float(np.mean(views[0].argmax(axis=1) == y))}
    return {
        "accuracy": float(np.mean(pred == y)),
        "loss": loss,
        "n": int(len(y)),
        "test_flip": test_flip,
        **(single if test_flip else {}),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "predictions": pred,
        "probabilities": probs,
    }


def per_class_report(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int = 10
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Confusion matrix (rows true, columns predicted) and precision/recall/F1/support per class.

    Undefined ratios (a class never predicted, or absent from y_true) are reported as 0.0, like
    scikit-learn's zero_division=0, without numpy division warnings.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    report = []
    for k in range(num_classes):
        tp, predicted, support = int(cm[k, k]), int(cm[:, k].sum()), int(cm[k, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        name = CLASS_NAMES[k] if num_classes == len(CLASS_NAMES) else str(k)
        report.append(
            {"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support}
        )
    return cm, report


def write_evaluation(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    out_json: Path,
    *,
    test_flip: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate, write the JSON report and its pictures (confusion matrix, mistakes)."""
    result = evaluate_arrays(model, x, y, test_flip=test_flip)
    pred, probs = result.pop("predictions"), result.pop("probabilities")
    result.update(extra or {})
    atomic.write_json(out_json, result)
    stem = out_json.parent / out_json.stem
    plot_confusion_matrix(np.array(result["confusion_matrix"]), f"{stem}_confusion.png")
    plot_misclassified(x, y, pred, probs, f"{stem}_misclassified.png")
    result["json_path"] = str(out_json)
    result["plots"] = [f"{stem}_confusion.png", f"{stem}_misclassified.png"]
    return result


def evaluate(
    model_path: str | Path,
    *,
    data_dir: str | None = None,
    test_limit: int | None = None,
    json_path: str | Path | None = None,
    test_flip: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a saved model on the Fashion-MNIST test set; write JSON and pictures.

    `test_flip` None: as the config saved with the model says (augment.test_flip).
    """
    model_path = Path(model_path)
    model = load_classifier(model_path)
    if test_flip is None:
        test_flip = saved_test_flip(model_path)
    ds = data.load_fashion_mnist(data_dir)
    x, y = data.limit(ds.x_test, ds.y_test, test_limit)
    out = Path(json_path) if json_path else model_path.parent / "evaluation.json"
    extra = {"model": str(model_path), "data_source": ds.source}
    return write_evaluation(model, x, y, out, test_flip=test_flip, extra=extra)
