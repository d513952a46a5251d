"""`fmnist train --repeat/--seeds`, `fmnist compare` and `fmnist predict`, end to end.

One module-scoped repeat (two smoke runs on the real data) feeds every test, so the whole file
costs two short trainings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_png
from typer.testing import CliRunner

from fmnist_tl.classes import CLASS_NAMES
from fmnist_tl.cli import app
from fmnist_tl.errors import FmnistError
from fmnist_tl.experiments.seeds import resolve_seeds

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
RUNS = "runs"  # output.dir, relative to the test's working directory
OVERRIDES = [
    "--set",
    f"output.dir={RUNS}",
    "--set",
    "output.log_dir=logs",
    "--set",
    "output.cache_dir=cache",
]

runner = CliRunner()


@pytest.fixture(scope="module")
def fmnist():
    from fmnist_tl.data.sources import load_fashion_mnist

    try:
        return load_fashion_mnist()
    except FmnistError as exc:
        pytest.skip(f"real Fashion-MNIST not available: {exc}")


@pytest.fixture(scope="module")
def repeated(tmp_path_factory, fmnist):
    """`fmnist train smoke.yaml --repeat 2` in a fresh working directory."""
    work = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = runner.invoke(app, ["train", str(SMOKE), "--repeat", "2", *OVERRIDES])
    assert result.exit_code == 0, result.output
    groups = list((work / RUNS).glob("*/repeat.json"))
    assert len(groups) == 1, groups
    return work, groups[0].parent, result


def member_metrics(group: Path) -> list[dict]:
    spec = json.loads((group / "repeat.json").read_text())
    # Member runs stay where train() put them: in output.dir, beside the group folder.
    return [json.loads((group.parent / rid / "metrics.json").read_text()) for rid in spec["runs"]]


def test_repeat_writes_group_with_numpy_mean_and_sample_std(repeated) -> None:
    work, group, result = repeated
    spec = json.loads((group / "repeat.json").read_text())
    metrics = member_metrics(group)
    assert group.name.startswith("smoke-x2-")
    assert spec["group_id"] == group.name and spec["config_name"] == "smoke"
    assert spec["seeds"] == [0, 1]  # smoke.yaml's seed, then seed + 1
    assert [m["seed"] for m in metrics] == [0, 1]
    assert len(set(spec["runs"])) == 2
    accs = [m["test"]["accuracy"] for m in metrics]
    losses = [m["test"]["loss"] for m in metrics]
    assert spec["accuracy"]["mean"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert spec["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
    assert spec["loss"]["mean"] == pytest.approx(np.mean(losses), abs=1e-12)
    assert spec["loss"]["std"] == pytest.approx(np.std(losses, ddof=1), abs=1e-12)
    assert spec["loss"]["std"] > 0  # two seeds really trained two different models
    assert [r["run_id"] for r in spec["per_run"]] == spec["runs"]
    assert [r["accuracy"] for r in spec["per_run"]] == accs

    md = (group / "repeat.md").read_text()
    for rid in spec["runs"]:
        assert rid in md and rid in result.output
    mean_row = f"{spec['accuracy']['mean']:.4f} ± {spec['accuracy']['std']:.4f}"
    assert mean_row in md and mean_row in result.output
    assert "mean ± std" in md and "mean ± std" in result.output

    for rid in spec["runs"]:  # every member run carries its own pictures
        for png in ("history.png", "evaluation_confusion.png", "evaluation_misclassified.png"):
            assert_png(work / RUNS / rid / png)


def test_compare_shows_group_as_one_row(repeated, monkeypatch) -> None:
    work, group, _ = repeated
    monkeypatch.chdir(work)
    metrics = member_metrics(group)
    accs = [m["test"]["accuracy"] for m in metrics]
    losses = [m["test"]["loss"] for m in metrics]

    result = runner.invoke(app, ["compare", "--root", RUNS])
    assert result.exit_code == 0, result.output
    md = (work / RUNS / "comparison.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 1, md  # the group, not its two member runs
    assert group.name in rows[0] and group.name in result.output
    for m in metrics:
        assert m["run_id"] not in md
    acc_cell = f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}"
    loss_cell = f"{np.mean(losses):.4f} ± {np.std(losses, ddof=1):.4f}"
    assert acc_cell in rows[0] and loss_cell in rows[0]
    assert acc_cell in result.output
    assert_png(work / RUNS / "comparison.png")
    assert_png(work / RUNS / "comparison_cost.png")  # accuracy against wall time
    assert "comparison_cost.png" in result.output

    # A glob that names members and group alike still gives one row; --out moves the files.
    result = runner.invoke(app, ["compare", f"{RUNS}/smoke-*", "--out", "report"])
    assert result.exit_code == 0, result.output
    md = (work / "report" / "comparison.md").read_text()
    assert group.name in md and acc_cell in md
    assert all(m["run_id"] not in md for m in metrics)
    assert_png(work / "report" / "comparison.png")


def test_compare_without_runs_exits_3(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", "nothing-*", "--root", "empty"])
    assert result.exit_code == 3
    assert "nothing-*" in result.output


def test_predict_top1_matches_evaluation(repeated, fmnist, monkeypatch) -> None:
    from fmnist_tl.data.images import save_png
    from fmnist_tl.evaluation.loading import load_classifier
    from fmnist_tl.evaluation.scores import evaluate_arrays

    work, group, _ = repeated
    monkeypatch.chdir(work)
    model_path = work / RUNS / member_metrics(group)[0]["run_id"] / "best.keras"
    save_png(fmnist.x_test[0], work / "test0.png")

    result = runner.invoke(app, ["predict", str(model_path), "test0.png", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert [a["image"] for a in answer] == ["test0.png"]
    top3 = answer[0]["top3"]
    assert len(top3) == 3
    assert all(t["label"] == CLASS_NAMES[t["class"]] for t in top3)
    probs = [t["probability"] for t in top3]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6

    expected = evaluate_arrays(load_classifier(model_path), fmnist.x_test[:1], fmnist.y_test[:1])
    assert top3[0]["class"] == int(expected["predictions"][0])
    assert top3[0]["probability"] == pytest.approx(
        float(expected["probabilities"][0].max()), abs=1e-6
    )

    table = runner.invoke(app, ["predict", str(model_path), "test0.png"])
    assert table.exit_code == 0, table.output
    assert "test0.png" in table.output and top3[0]["label"] in table.output


def test_predict_on_a_text_file_exits_3(repeated, tmp_path) -> None:
    _, group, _ = repeated
    model_path = group.parent / member_metrics(group)[0]["run_id"] / "best.keras"
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    result = runner.invoke(app, ["predict", str(model_path), str(text)])
    assert result.exit_code == 3
    assert str(text) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--repeat", "2", "--seeds", "0,1"], "exclude each other"),
        (["--repeat", "1"], "--repeat: need at least 2 runs"),
        (["--seeds", "0,x"], "--seeds: expected comma-separated integers"),
        (["--seeds", "3,3"], "seed 3 appears twice"),
        (["--seeds", "7"], "--seeds: need at least 2 seeds"),
        (["--seeds", "1,-4"], "--seeds: seeds must be in"),
    ],
)
def test_bad_repeat_options_exit_2_before_training(args, needle, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(SMOKE), *args, *OVERRIDES])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert not (tmp_path / RUNS).exists()  # nothing trained, nothing written


def test_resolve_seeds() -> None:
    assert resolve_seeds(5, repeat=3, seeds=None) == [5, 6, 7]
    assert resolve_seeds(5, repeat=None, seeds=" 2, 0 ,9") == [2, 0, 9]


def test_cost_plot_places_every_run_and_draws_subset_runs_hollow(tmp_path, monkeypatch):
    from fmnist_tl.reporting import cost_plot as plots
    from fmnist_tl.reporting.rows import RunRow

    def row(run: str, backbone: str, stages: str, acc: float, std, n: int, wall: float):
        return RunRow(run, backbone, 96, "bilinear", "none", stages, 10, acc, std, 0.3, None,
                      n, wall, str(tmp_path / run))  # fmt: skip

    rows = [
        row("full-group", "mobilenet_v2", "head+finetune", 0.91, 0.002, 3, 300.0),
        row("subset-run", "mobilenet_v2", "head", 0.86, None, 1, 12.0),
        row("scratch", "cnn", "head, test flip", 0.92, None, 1, 170.0),
    ]
    data = ["54000/6000/10000", "18000/2000/10000", "54000/6000/10000"]
    shown = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: shown.update(fig=fig))
    plots.plot_comparison_cost(rows, tmp_path / "cost.png", data)
    ax = shown["fig"].axes[0]
    points = [  # the data points, not the error bars' caps
        line for line in ax.lines if len(line.get_xdata()) == 1 and line.get_marker() in "os^Dv"
    ]
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in points] == [
        (300.0, 0.91), (12.0, 0.86), (170.0, 0.92)
    ]  # fmt: skip
    hollow = [line.get_markerfacecolor() == "none" for line in points]
    assert hollow == [False, True, False]  # the 18,000-image subset's run only
    assert [line.get_marker() for line in points] == ["s", "o", "o"]  # stage 2 or not
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "data 18000/2000/10000" in labels and "cnn" in labels
