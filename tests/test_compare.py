"""Runs side by side (`fmnist compare`): discovery, groups, comparison.md/.csv and the cost plot,
on run folders written by the tests themselves."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_png, write_history

from fmnist_tl.errors import MissingFileError
from fmnist_tl.reporting import cost_plot, plots
from fmnist_tl.reporting.compare import compare_runs, comparison_markdown
from fmnist_tl.reporting.rows import RunRow
from fmnist_tl.reporting.rows_csv import read_rows, write_rows
from fmnist_tl.reporting.runs import collect_runs


def write_run(
    folder: Path,
    *,
    acc: float,
    loss: float,
    seed: int = 42,
    stages: dict[str, int] | None = None,
    wall: float = 12.34,
    backbone: str = "mobilenet_v2",
) -> Path:
    stages = stages or {"head": 3, "finetune": 2}
    folder.mkdir(parents=True)
    metrics = {
        "run_id": folder.name,
        "config_name": "cfg",
        "created": "2026-11-23T12:00:00",
        "backbone": backbone,
        "input_size": 96,
        "resize_method": "bilinear",
        "weights_requested": "imagenet",
        "weights_used": "imagenet",
        "seed": seed,
        "test": {"accuracy": acc, "loss": loss},
        "stages": [
            {
                "name": k,
                "epochs_run": n,
                "best_epoch": 1,
                "epochs_after_best": n - 1,
                "best_val_accuracy": acc,
                "best_val_loss": loss,
                "wall_time_s": 1.0,
                "images_per_s": 100.0,
            }
            for k, n in stages.items()
        ],
        "wall_time_s": wall,
        "data": {"source": "test", "train": 90, "val": 10, "test": 20},
        "versions": {
            "tensorflow": "2.21.0",
            "keras": "3.15.1",
            "python": "3.11",
            "fmnist_tl": "0.1.0",
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "config.yaml").write_text(f"seed: {seed}\nmodel:\n  backbone: {backbone}\n")
    write_history(folder / "history.csv", stages)
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two single runs, a group whose runs sit inside it, and one whose runs sit beside it."""
    root = tmp_path / "saved_models"
    write_run(root / "cnn-a", acc=0.91, loss=0.25, backbone="simple_cnn")
    write_run(root / "cnn-b", acc=0.89, loss=0.31, stages={"head": 4}, wall=5.0)
    group = root / "rep-1"
    accs, losses = [0.90, 0.92, 0.935], [0.30, 0.27, 0.22]
    for i, (a, lo) in enumerate(zip(accs, losses, strict=True)):
        write_run(group / f"rep-1-s{i}", acc=a, loss=lo, seed=i, wall=10.0 + i)
    (group / "repeat.json").write_text(
        json.dumps(
            {
                "group_id": "rep-1",
                "config_name": "cfg",
                "runs": [f"rep-1-s{i}" for i in range(3)],
                "seeds": [0, 1, 2],
                "accuracy": {"mean": 0.0, "std": 0.0},
                "loss": {"mean": 0, "std": 0},
            }
        )
    )
    write_run(root / "rep-2-s0", acc=0.80, loss=0.5, stages={"head": 2})
    write_run(root / "rep-2-s1", acc=0.82, loss=0.4, stages={"head": 4})
    (root / "rep-2").mkdir()
    (root / "rep-2" / "repeat.json").write_text(
        json.dumps({"group_id": "rep-2", "config_name": "c", "runs": ["rep-2-s0", "rep-2-s1"]})
    )
    return root


def test_collect_runs_all(runs: Path) -> None:
    rows = collect_runs(None, root=runs)
    assert [r.run for r in rows] == ["rep-1", "cnn-a", "cnn-b", "rep-2"]
    group = rows[0]
    accs, losses = [0.90, 0.92, 0.935], [0.30, 0.27, 0.22]
    assert group.n == 3
    assert group.accuracy == pytest.approx(np.mean(accs))
    assert group.accuracy_std == pytest.approx(np.std(accs, ddof=1))
    assert group.loss == pytest.approx(np.mean(losses))
    assert group.loss_std == pytest.approx(np.std(losses, ddof=1))
    assert group.wall_time_s == pytest.approx(11.0)
    assert group.epochs == 5 and group.stages == "head+finetune"
    single = rows[1]
    assert asdict(single) == {
        "run": "cnn-a",
        "backbone": "simple_cnn",
        "input_size": 96,
        "resize_method": "bilinear",
        "weights": "imagenet",
        "stages": "head+finetune",
        "epochs": 5,
        "accuracy": 0.91,
        "accuracy_std": None,
        "loss": 0.25,
        "loss_std": None,
        "n": 1,
        "wall_time_s": 12.34,
        "path": str(runs / "cnn-a"),
    }
    assert rows[2].stages == "head" and rows[2].epochs == 4
    assert rows[3].epochs == 3.0  # members stopped at 2 and 4 epochs: the mean


def test_a_run_tested_with_the_flip_says_so(runs: Path) -> None:
    metrics_path = runs / "cnn-b" / "metrics.json"
    m = json.loads(metrics_path.read_text())
    m["test"].update(test_flip=True, accuracy_without_flip=0.88)
    metrics_path.write_text(json.dumps(m))
    rows = {r.run: r for r in collect_runs(None, root=runs)}
    assert rows["cnn-b"].stages == "head, test flip"
    assert rows["cnn-a"].stages == "head+finetune"
    assert "| head, test flip |" in comparison_markdown(list(rows.values()))


def test_collect_runs_patterns(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = collect_runs([str(runs / "cnn-*")], root=runs)
    assert [r.run for r in rows] == ["cnn-a", "cnn-b"]
    # Run ids resolve under root; the same run twice is listed once.
    rows = collect_runs(["cnn-b", "rep-2", str(runs / "cnn-b")], root=runs)
    assert [r.run for r in rows] == ["cnn-b", "rep-2"]
    # Naming a run's metrics.json means its folder.
    rows = collect_runs([str(runs / "cnn-a" / "metrics.json")], root=runs)
    assert [r.run for r in rows] == ["cnn-a"]
    # A relative glob works from the working directory, as typed in a shell.
    monkeypatch.chdir(runs.parent)
    rows = collect_runs(["saved_models/rep-*"], root="saved_models")
    assert [r.run for r in rows] == ["rep-1", "rep-2"]
    assert rows[0].n == 3 and rows[1].n == 2


def test_collect_runs_errors(runs: Path) -> None:
    with pytest.raises(MissingFileError, match="no-such-run"):
        collect_runs(["cnn-a", "no-such-run*"], root=runs)
    (runs / "cnn-a" / "metrics.json").write_text("{not json")
    with pytest.raises(MissingFileError, match=r"cnn-a.metrics\.json"):
        collect_runs(None, root=runs)
    with pytest.raises(MissingFileError, match="no runs"):
        collect_runs(None, root=runs.parent / "empty")


def test_compare_markdown_and_plot(runs: Path, tmp_path: Path) -> None:
    rows = collect_runs(None, root=runs)
    table = comparison_markdown(rows)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(rows)
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    accs = [0.90, 0.92, 0.935]
    assert f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}" in lines[2]
    assert "| 0.9100 |" in lines[3] and "| 12.3 |" in lines[3] and "±" not in lines[3]
    assert "| 5.0 |" in lines[4]
    plots.plot_comparison(rows, tmp_path / "compare.png")
    assert_png(tmp_path / "compare.png")


# -- comparison.csv and compare --include: results that travel without their run folders ------

FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]


def test_comparison_csv_reads_back_as_the_same_rows(runs: Path, tmp_path: Path) -> None:
    first = compare_runs(root=runs, out_dir=tmp_path / "a")
    assert first.csv_path == tmp_path / "a" / "comparison.csv"
    with first.csv_path.open(newline="") as f:
        lines = list(csv.DictReader(f))
    assert [r["run"] for r in lines] == ["rep-1", "cnn-a", "cnn-b", "rep-2"]
    assert lines[0]["n"] == "3" and lines[0]["data"] == "90/10/20"
    assert lines[1]["accuracy_std"] == ""  # a single run has no spread: empty, not 0
    # The rows, data counts, validation accuracies and table come back exactly, with no run
    # folder to read: the included rows are the whole comparison.
    again = compare_runs(root=tmp_path / "none", out_dir=tmp_path / "b", include=[first.csv_path])
    assert [asdict(r) for r in again.rows] == [asdict(r) for r in first.rows]
    assert again.data == first.data and again.val_accuracy == first.val_accuracy
    assert again.markdown == first.markdown
    assert (tmp_path / "b" / "comparison.csv").read_text() == first.csv_path.read_text()
    for png in ("comparison.png", "comparison_cost.png"):
        assert_png(tmp_path / "b" / png)


def test_every_field_survives_the_csv_and_a_spreadsheet_bom(tmp_path: Path) -> None:
    odd = RunRow("g", "cnn", "96/128", None, None, "head", 3.5, 0.9, 0.0, None, None, 3, 7.5, "")
    plain = RunRow("s", "mobilenet_v2", 96, "area", "imagenet", "head+finetune, test flip", 4,
                   0.8, None, 0.5, None, 1, 12.0, "/runs/s")  # fmt: skip
    path = tmp_path / "c.csv"
    write_rows(path, [odd, plain], ["", "18000/2000/10000"], [None, 0.81])
    rows, data, val = read_rows(path)
    assert [asdict(r) for r in rows] == [asdict(odd), asdict(plain)]
    assert isinstance(rows[1].epochs, int) and isinstance(rows[1].input_size, int)
    assert data == ["", "18000/2000/10000"] and val == [None, 0.81]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as a spreadsheet saves it
    assert [asdict(r) for r in read_rows(bom)[0]] == [asdict(odd), asdict(plain)]


def test_included_rows_join_the_runs_on_disk_sorted_and_never_doubled(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.csv"  # hand-written: only the required columns, no loss
    other.write_text(
        "run,backbone,stages,accuracy,accuracy_std,n,wall_time_s,data\n"
        "elsewhere,mobilenet_v2,head+finetune,0.925,0.002,3,250.5,18000/2000/10000\n"
    )
    own = compare_runs(root=runs, out_dir=tmp_path / "own").csv_path
    monkeypatch.chdir(runs.parent)  # the runs again, spelled relative: the same runs
    c = compare_runs(root="saved_models", out_dir=tmp_path / "out", include=[other, own, other])
    assert [r.run for r in c.rows] == ["elsewhere", "rep-1", "cnn-a", "cnn-b", "rep-2"]
    row = c.rows[0]
    assert (row.accuracy, row.accuracy_std, row.n, row.wall_time_s) == (0.925, 0.002, 3, 250.5)
    assert row.loss is None and row.epochs is None and row.input_size is None
    assert c.data[0] == "18000/2000/10000" and c.val_accuracy[0] is None
    line = next(ln for ln in c.markdown.splitlines() if "elsewhere" in ln)
    assert "| 0.9250 ± 0.0020 | - | 3 | 250.5 |" in line


def test_compare_include_errors_through_the_cli(tmp_path: Path, no_tf: dict[str, str]) -> None:
    out = tmp_path / "out"
    base = [*FMNIST, "compare", "--root", str(tmp_path / "none"), "--out", str(out)]
    H = "run,backbone,stages,accuracy,n,wall_time_s"
    bad = tmp_path / "bad.csv"
    cases = [
        ("", 3, ["no-such.csv: cannot be included (no such file)", "fmnist compare"]),
        ("run,accuracy\nx,0.9\n", 3, ["not a comparison.csv (no column backbone, stages, n"]),
        (
            "run,backbone,stages,accuracy,n,wall_time_s\nok,cnn,head,0.9,1,5\nx,cnn,head,high,1,5\n",
            3,
            ["bad.csv: line 3: accuracy 'high' is not a number; fix or remove that line"],
        ),
        ("run,backbone,stages,accuracy,n,wall_time_s\nx,cnn,head,0.9,0,5\n", 3, ["line 2: n '0'"]),
        ("run,backbone,stages,accuracy,n,wall_time_s\n", 3, ["holds no rows"]),
        # blank lines count: the line named is the file's own
        (f"{H}\n\nx,cnn,head,0.9,1,0\n", 3, ["line 3: wall_time_s '0' is not above 0"]),
        (f"{H}\nx,cnn,head,1.2,1,5\n", 3, ["line 2: accuracy '1.2' is not an accuracy"]),
        (f"{H},data\nx,cnn,head,0.9,1,5,18k/2k/10k\n", 3, ["data '18k/2k/10k' is not"]),
        (f"{H},val_accuracy\nx,cnn,head,0.9,1,5,n/a\n", 3, ["val_accuracy 'n/a' is not a number"]),
        (f'{H}\nx,cnn,head,0.9,1,"{"9" * 200_000}"\n', 3, ["line 2: field larger than"]),
    ]
    for text, code, needles in cases:
        if text:
            bad.write_text(text)
        target = str(bad if text else tmp_path / "no-such.csv")
        done = subprocess.run(
            [*base, "--include", target], capture_output=True, text=True, env=no_tf, timeout=60
        )
        assert done.returncode == code, done.stderr
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert all(n in lines[0] for n in needles), (needles, lines[0])
        assert not out.exists()  # nothing written on a bad include
    bad.write_text("run,backbone,stages,accuracy,n,wall_time_s\nx,cnn,head,0.9,1,5\n")
    done = subprocess.run(
        [*base, "--diff", "--include", str(bad)], capture_output=True, text=True, env=no_tf,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "drop one of the two" in done.stderr, done.stderr
    done = subprocess.run(
        [*base, "--include", str(bad)], capture_output=True, text=True, env=no_tf, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.csv", "comparison.md", "comparison.png", "comparison_cost.png",
    ]  # fmt: skip
    assert "comparison.csv" in done.stdout and "x" in (out / "comparison.md").read_text()


def test_a_crowded_cost_plot_names_the_full_data_rows_only() -> None:
    def row(name: str, n: int) -> RunRow:
        return RunRow(name, "mobilenet_v2", 96, "bilinear", None, "head", 3, 0.9, None,
                      0.3, None, n, 10.0, name)  # fmt: skip

    few = [row(f"r{i}", 1) for i in range(5)]
    assert cost_plot.labelled(few, ["18000/2000/10000"] * 5) == [True] * 5
    # 30 subset cells, 3 full-data groups, 2 full-data single runs: the 5 full rows named.
    rows = [row(f"c{i}", 3) for i in range(30)] + [row(f"g{i}", 3) for i in range(3)]
    rows += [row("lever-a", 1), row("lever-b", 1)]
    data = ["18000/2000/10000"] * 30 + ["54000/6000/10000", "57000/3000/10000"] * 2
    data += ["54000/6000/10000"]
    assert cost_plot.labelled(rows, data) == [False] * 30 + [True] * 5
    # Past 20 full-data rows, their single runs go unnamed too; their groups never do.
    many = [row(f"s{i}", 1) for i in range(25)] + [row("group", 3)]
    assert cost_plot.labelled(many, [""] * 26) == [False] * 25 + [True]


def test_the_cost_plot_keeps_far_off_runs_on_its_bottom_edge(tmp_path: Path) -> None:
    assert cost_plot.accuracy_floor([0.91, 0.93, 0.90]) is None  # all within 0.15: no floor
    # Rounded down, never up: every row within 0.15 of the best stays on the axis.
    assert cost_plot.accuracy_floor([0.946, 0.86, 0.33]) == pytest.approx(0.79)
    assert cost_plot.accuracy_floor([0.946, 0.797, 0.33]) < 0.797
    assert cost_plot.accuracy_floor([]) is None
    minor = [cost_plot._seconds_minor(v) for v in (20, 40, 300, 700, 5000)]
    assert minor == ["20", "", "300", "", "5000"]  # 2, 3, 5 of a decade; the rest collide
    write_run(tmp_path / "r" / "far", acc=0.33, loss=2.0)
    write_run(tmp_path / "r" / "near", acc=0.93, loss=0.2)
    rows = collect_runs(None, root=tmp_path / "r")
    cost_plot.plot_comparison_cost(rows, tmp_path / "cost.png", ["90/10/20"] * len(rows))
    assert_png(tmp_path / "cost.png")


def test_labels_of_near_points_are_moved_apart() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    ax.set_xscale("log")
    ax.set_xlim(10, 1000), ax.set_ylim(0.8, 0.95)
    labels = [("frozen_bilinear (n=3)", 60.0, 0.8751), ("frozen_nearest (n=3)", 71.0, 0.8744),
              ("far away", 500.0, 0.81)]  # fmt: skip
    offsets = cost_plot._place_labels(ax, labels)
    plt.close(fig)
    assert offsets[0] == 3.0 and offsets[2] == 3.0  # the first and a lone point: beside it
    assert abs(offsets[1] - offsets[0]) >= 9.0  # the near one: a whole label height off
