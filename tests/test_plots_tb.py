"""Plots and TensorBoard worth opening: titles with the run and its test accuracy, whole-number
epoch ticks, the learning rate, the stage boundary, one legend; TensorBoard's test scores,
confusion image, one step counter across stages and the full model's graph, read back with
TensorBoard's own reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SMOKE, assert_png
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util

from fmnist_tl.config import load_config
from fmnist_tl.reporting import plots
from fmnist_tl.training.trainer import train


def history_rows() -> list[dict]:
    rows = []
    for epoch in range(1, 8):
        stage = "head" if epoch <= 4 else "finetune"
        rows.append(
            {
                "stage": stage,
                "epoch": epoch,
                "loss": 2.0 / epoch,
                "accuracy": 0.5 + epoch / 20,
                "val_loss": 2.2 / epoch + (0.3 if epoch == 7 else 0.0),
                "val_accuracy": 0.45 + epoch / 20,
                "learning_rate": 1e-3 if stage == "head" else 1e-5 * (8 - epoch),
                "seconds": 1.0,
            }
        )
    return rows


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure a plot function saves, kept open for inspection (then saved as usual)."""
    kept = []
    save = plots.save_figure

    def keep(fig, path):
        fig.canvas.draw()  # lay out ticks and the legend as the PNG has them
        axes = fig.axes
        kept.append(
            {
                "suptitle": fig.get_suptitle(),
                "titles": [ax.get_title() for ax in axes],
                "xticks": [list(ax.get_xticks()) for ax in axes],
                "xlim": [ax.get_xlim() for ax in axes],
                "legends": [[t.get_text() for t in leg.get_texts()] for leg in fig.legends],
                "axis_legends": [ax.get_legend() for ax in axes],
                "ylabels": [ax.get_ylabel() for ax in axes],
                "lines": [
                    [(ln.get_xdata(), ln.get_ydata()) for ln in ax.get_lines()] for ax in axes
                ],
            }
        )
        save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    return kept


def test_history_plot(tmp_path, figures):
    title = plots.run_title("demo-20260101-000000", 0.9123, 100)
    plots.plot_history(history_rows(), tmp_path / "history.png", title=title)
    assert_png(tmp_path / "history.png")
    (fig,) = figures
    assert fig["suptitle"] == "demo-20260101-000000: test accuracy 0.9123 on 100 images"
    assert fig["ylabels"] == ["accuracy", "loss", "learning rate"]
    for ticks, (lo, hi) in zip(fig["xticks"], fig["xlim"], strict=True):
        shown = [t for t in ticks if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), ticks
    # The learning rate each epoch ran at, as history.csv holds it.
    lr_x, lr_y = fig["lines"][2][0]
    assert list(lr_x) == list(range(1, 8))
    assert list(lr_y) == [r["learning_rate"] for r in history_rows()]
    # The stage boundary: a vertical line half-way between epoch 4 and 5, in every panel.
    for lines in fig["lines"]:
        assert any(list(x) == [4.5, 4.5] for x, _ in lines)
    # One legend for the figure, each entry once; no per-panel legends.
    (labels,) = fig["legends"]
    assert len(labels) == len(set(labels))
    assert {"train", "validation", "fine-tuning starts", "learning rate"} <= set(labels)
    assert all(legend is None for legend in fig["axis_legends"])


def test_confusion_and_mistakes_name_the_run_and_its_accuracy(tmp_path, figures):
    title = plots.run_title("demo-1", 0.5, 4)
    cm = np.array([[1, 1], [1, 1]])
    plots.plot_confusion_matrix(cm, tmp_path / "cm.png", class_names=["a", "b"], title=title)
    x = np.zeros((4, 28, 28, 1), np.uint8)
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0])
    plots.plot_misclassified(x, y, pred, None, tmp_path / "wrong.png", title=title)
    confusion, wrong = figures
    assert confusion["titles"][0].startswith("demo-1: test accuracy 0.5000 on 4 images\n")
    assert wrong["suptitle"].startswith("demo-1: test accuracy 0.5000 on 4 images\n")


def _accumulator(path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(str(path), size_guidance={ea.TENSORS: 0, ea.GRAPH: 1})
    acc.Reload()
    return acc


def _scalars(acc: ea.EventAccumulator, tag: str) -> list[tuple[int, float]]:
    """A TF2 scalar summary (stored as a tensor) as (step, value) pairs."""
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def test_a_two_stage_run_in_tensorboard(tmp_path, isolated, figures):
    """Stage 1 on cached features (a frozen scratch CNN), stage 2 fine-tuning: 3 + 2 epochs."""
    config = load_config(
        SMOKE,
        [
            *isolated,
            "model.freeze_backbone=true",
            "train.epochs=3",
            "finetune.epochs=2",
            "finetune.unfreeze_from=block2",
        ],
    )
    result = train(config)
    assert result.metrics.stages[0].feature_cache is not None  # stage 1 ran on features
    logs = tmp_path / "logs" / result.run_id
    val = _accumulator(logs / "validation")
    steps = [s for s, _ in _scalars(val, "evaluation_accuracy_vs_iterations")]
    per_epoch = steps[0]
    assert steps == [per_epoch * k for k in range(1, 6)]  # one counter across both stages
    assert [s for s, _ in _scalars(val, "epoch_accuracy")] == [0, 1, 2, 3, 4]

    test = _accumulator(logs / "test")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    monitor = [r[config.train.monitor] for r in result.history]
    pick = np.argmax if config.train.monitor.endswith("accuracy") else np.argmin
    kept_epoch = result.history[int(pick(monitor))]["epoch"]  # the model that was tested
    (acc_point,) = _scalars(test, "epoch_accuracy")
    assert acc_point == (kept_epoch - 1, pytest.approx(metrics["test"]["accuracy"]))
    (loss_point,) = _scalars(test, "epoch_loss")
    assert loss_point[1] == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    (image_event,) = test.Tensors("confusion_matrix")
    width, height, png = tensor_util.make_ndarray(image_event.tensor_proto)
    with Image.open(result.run_dir / "evaluation_confusion.png") as drawn:
        assert (int(width), int(height)) == drawn.size
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # The graph is the full model's (its backbone's convolutions), not the 4-layer head's.
    graph = _accumulator(logs / "train").Graph()
    names = " ".join(node.name for node in graph.node)
    assert "block1_conv1" in names and "block2_conv1" in names, names[:500]

    # Every figure of the run names it and its test accuracy in its title.
    title = f"{result.run_id}: test accuracy {result.metrics.test.accuracy:.4f}"
    assert len(figures) == 3  # confusion matrix, mistakes, history
    for fig in figures:
        assert title in fig["suptitle"] + " ".join(fig["titles"]), fig
    for name in ("history.png", "evaluation_confusion.png", "evaluation_misclassified.png"):
        assert_png(result.run_dir / name)
