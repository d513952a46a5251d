"""A classifier's scores on labelled images: every metric (metrics.py), the per-class report
and the confusion matrix, with the test-time flip averaged in when asked. Pure computation:
report.py writes the files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from .. import metrics
from ..classes import CLASS_NAMES
from ..data.pipeline import mirror
from ..models.frozen import FrozenPass, keras_pass


def _views(
    model: keras.Model,
    x: np.ndarray,
    test_flip: bool,
    label: str | None = None,
    frozen: FrozenPass | None = None,
) -> tuple[list[np.ndarray], str]:
    """Class probabilities of the images, and with `test_flip` of their mirror images, and the
    pass that gave them; `label` names the progress bar (none without it). `frozen`: the pass
    over `model` (models/frozen.py); None runs Keras's."""
    run = frozen if frozen is not None else keras_pass(model)
    views = [run(x, label=label)]
    if test_flip:
        views.append(run(mirror(x), label=label and f"{label} (mirror images)"))
    return views, run.name


def predict_proba(
    model: keras.Model,
    x: np.ndarray,
    *,
    test_flip: bool = False,
    label: str | None = None,
    frozen: FrozenPass | None = None,
) -> np.ndarray:
    """Class probabilities for raw pixels (0..255), in batches.

    With `test_flip`, the mean over each image and its mirror image (see augment.test_flip);
    `frozen` as for `_views`.
    """
    return np.mean(_views(model, x, test_flip, label, frozen)[0], axis=0)


def evaluate_arrays(
    model: keras.Model | None,
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_flip: bool = False,
    views: list[np.ndarray] | None = None,
    frozen: FrozenPass | None = None,
) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, per-class precision/recall/F1 and confusion matrix.

    With `test_flip` the figures are for the flip-averaged probabilities, and the accuracy of
    the images alone is reported beside them, so the two can be compared. `views`: the class
    probabilities of the images (and with `test_flip` of their mirror images) when the caller
    has them by a cheaper path than `model` on `x` (a head on cached features); otherwise
    they come from `frozen` (as for `_views`), and `frozen_pass` names the pass.
    """
    made_by = {}
    if views is None:
        assert model is not None, "evaluate_arrays needs a model or the views"
        views, name = _views(model, x, test_flip, "testing", frozen)
        made_by["frozen_pass"] = name
    if len(views) != 1 + test_flip:
        raise ValueError(f"{len(views)} views of the test images; test_flip={test_flip}")
    probs = np.mean(views, axis=0)
    y = np.asarray(y, dtype=np.int64)
    pred = probs.argmax(axis=1)
    cm, per_class = per_class_report(y, pred, len(CLASS_NAMES))
    single = {"accuracy_without_flip": metrics.ACCURACY.compute(views[0], y)}
    return {
        **metrics.scores(probs, y),
        "n": int(len(y)),
        "test_flip": test_flip,
        **(single if test_flip else {}),
        **made_by,
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
