"""A run's report: its history read back and plotted, the per-class report and its pictures."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_png, write_history

from fmnist_tl.classes import CLASS_NAMES
from fmnist_tl.errors import MissingFileError
from fmnist_tl.evaluation.scores import per_class_report
from fmnist_tl.reporting import plots
from fmnist_tl.reporting.tables import mean_std
from fmnist_tl.training.runfolder import read_history


def test_read_history_types_and_plot(tmp_path: Path) -> None:
    write_history(tmp_path / "history.csv", {"head": 3, "finetune": 2})
    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["stage"] for r in rows] == ["head"] * 3 + ["finetune"] * 2
    assert isinstance(rows[0]["epoch"], int) and isinstance(rows[0]["val_loss"], float)
    assert plots._stage_boundary(np.array([1, 2, 3, 4, 5.0]), [r["stage"] for r in rows]) == 3.5
    plots.plot_history(rows, tmp_path / "history.png", title="run x")
    assert_png(tmp_path / "history.png")


def test_plot_history_single_stage_without_validation(tmp_path: Path) -> None:
    rows = [
        {
            "stage": "head",
            "epoch": e,
            "loss": 1 / e,
            "accuracy": 0.5 + e / 10,
            "val_loss": math.nan,
            "val_accuracy": math.nan,
        }
        for e in (1, 2, 3)
    ]
    plots.plot_history(rows, tmp_path / "h.png")
    assert_png(tmp_path / "h.png")


def test_read_history_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="nope.csv"):
        read_history(tmp_path / "nope.csv")


def test_per_class_report_hand_computed() -> None:
    # class 2 is never predicted: its precision is undefined and must come out 0.0 silently.
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm, rows = per_class_report(y_true, y_pred, num_classes=3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [2, 0, 0]])
    expected = [(1 / 3, 1 / 2, 0.4, 2), (2 / 3, 1.0, 0.8, 2), (0.0, 0.0, 0.0, 2)]
    for row, (p, r, f1, support) in zip(rows, expected, strict=True):
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support


def test_per_class_report_uses_class_names_and_handles_absent_classes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm, rows = per_class_report([9, 9, 0], [9, 0, 0])
    assert cm.shape == (10, 10) and cm.sum() == 3
    assert [r["class"] for r in rows] == list(CLASS_NAMES)
    assert rows[9] == {
        "class": "Ankle boot",
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert rows[3] == {"class": "Dress", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    with pytest.raises(ValueError, match="outside"):
        per_class_report([10], [0])


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix(tmp_path: Path, normalize: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 300)
    pred = np.where(rng.random(300) < 0.8, y, rng.integers(0, 10, 300))
    cm, _ = per_class_report(y, pred)
    cm[3] = 0  # a class absent from the test set must not produce NaNs or warnings
    plots.plot_confusion_matrix(cm, tmp_path / "cm.png", normalize=normalize)
    assert_png(tmp_path / "cm.png")


def test_plot_misclassified(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 28, 28, 1)).astype(np.uint8)
    y_true = rng.integers(0, 10, 40)
    y_pred = y_true.copy()
    y_pred[::3] = (y_pred[::3] + 1) % 10
    probs = rng.dirichlet(np.ones(10), 40)
    plots.plot_misclassified(images, y_true, y_pred, probs, tmp_path / "wrong.png", max_images=9)
    assert_png(tmp_path / "wrong.png")
    # (N,) confidences and (N, 28, 28) images are accepted too
    plots.plot_misclassified(
        images[..., 0], y_true, y_pred, probs.max(axis=1), tmp_path / "wrong1d.png"
    )
    assert_png(tmp_path / "wrong1d.png")
    plots.plot_misclassified(
        images.astype(np.float32), y_true, y_true, probs, tmp_path / "none.png"
    )
    assert_png(tmp_path / "none.png")


def test_mean_std() -> None:
    assert mean_std([0.9]) == (0.9, 0.0)
    values = [0.90, 0.92, 0.935]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values))
    assert std == pytest.approx(np.std(values, ddof=1))
