"""`fmnist sweep`: a 2 x 2 grid x 2 seeds of real runs, its study files, a rerun, an interrupt.

The grid moves head settings of a frozen from-scratch CNN, so stage 1 trains the head on
cached features: each seed's features are extracted once and reused by every cell (the cache
key holds the backbone, size and resize, not the head).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMOKE, assert_png, sets
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.reporting.tables import mean_std

runner = CliRunner()
FMNIST = Path(sys.executable).with_name("fmnist")
GRID = ["--grid", "model.head.units=16,32", "--grid", "train.learning_rate=0.003,0.01"]
FROZEN = ["model.freeze_backbone=true", "train.epochs=2", "train.patience=null"]


def studies(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("smoke-sweep-*") if p.is_dir())


def run_folders(study: Path) -> list[Path]:
    return sorted(p for p in study.iterdir() if p.is_dir())


def md_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the first Markdown table in `path`, by column name."""
    text = path.read_text().splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("|"))
    lines = []
    for line in text[start:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, synthetic_dir):
    """One 2 x 2 x 2-seed sweep through the CLI, then the same command again."""
    root = tmp_path_factory.mktemp("sweep")
    outputs = [
        f"data.dir={synthetic_dir}",
        f"output.dir={root / 'saved_models'}",
        f"output.log_dir={root / 'logs'}",
        f"output.cache_dir={root / 'cache'}",
    ]
    args = ["sweep", str(SMOKE), *GRID, "--seeds", "2", *sets([*outputs, *FROZEN])]
    first = runner.invoke(app, args, terminal_width=100)
    again = runner.invoke(app, args, terminal_width=100)
    return root, first, again


def test_every_cell_and_seed_runs_once_as_a_normal_run(swept):
    root, first, _ = swept
    assert first.exit_code == 0, first.output
    (study,) = studies(root / "saved_models")
    folders = run_folders(study)
    names = sorted("-".join(p.name.split("-")[:3]) for p in folders)
    expected = sorted(f"smoke-c0{c}-s{s}" for c in range(1, 5) for s in (0, 1))
    assert names == expected  # every cell x seed exactly once
    for folder in folders:
        state = json.loads((folder / "state.json").read_text())
        assert state["complete"] is True
        assert (folder / "best.keras").is_file()
    # The features of a seed are extracted once and reused by the other cells of that seed.
    caches = {}
    for folder in folders:
        m = json.loads((folder / "metrics.json").read_text())
        caches.setdefault(m["seed"], []).append(m["stages"][0]["feature_cache"])
    assert all(sorted(v) == ["hit", "hit", "hit", "miss"] for v in caches.values()), caches
    assert "run 8/8 trained" in first.output


def test_study_table_is_computed_from_the_runs_own_metrics(swept):
    root, first, _ = swept
    (study,) = studies(root / "saved_models")
    spec = json.loads((study / "study.json").read_text())
    assert spec["complete"] is True and spec["runs_done"] == 8 and spec["std_ddof"] == 1
    assert len(spec["cells"]) == 4
    by_run = {}
    for folder in run_folders(study):
        by_run[folder.name] = json.loads((folder / "metrics.json").read_text())
    means = []
    for cell in spec["cells"]:
        assert cell["n"] == 2 and cell["seeds"] == [0, 1]
        accs = [by_run[r]["test"]["accuracy"] for r in cell["runs"]]
        mean, std = mean_std(accs)
        assert cell["test_accuracy"]["mean"] == pytest.approx(mean)
        assert cell["test_accuracy"]["std"] == pytest.approx(std)
        for r in cell["runs"]:  # each run is a run of this cell's values
            config = (study / r / "config.yaml").read_text()
            assert f"units: {cell['values']['model.head.units']}" in config
        means.append(mean)
    assert means == sorted(means, reverse=True)  # best first
    rows = md_rows(study / "study.md")
    assert [r["cell"] for r in rows] == [c["cell"] for c in spec["cells"]]
    best = spec["cells"][0]
    expected = f"{best['test_accuracy']['mean']:.4f} ± {best['test_accuracy']['std']:.4f}"
    assert rows[0]["test accuracy"] == expected
    assert rows[0]["n"] == "2"
    assert expected in first.output  # the terminal prints the same table
    # Two swept keys: study.md also lays the cells out as a grid, units down, rate across.
    text = (study / "study.md").read_text()
    grid = text[text.index("Test accuracy (± sample std, wall time per run) by") :]
    grid_rows = [line for line in grid.splitlines() if line.startswith("| 16 |")]
    assert grid.splitlines()[2] == "| model.head.units \\ train.learning_rate | 0.003 | 0.01 |"
    cell = next(
        c
        for c in spec["cells"]
        if c["values"] == {"model.head.units": 16, "train.learning_rate": 0.003}
    )
    acc = f"{cell['test_accuracy']['mean']:.4f} ± {cell['test_accuracy']['std']:.4f}"
    assert len(grid_rows) == 1 and grid_rows[0].startswith(f"| 16 | {acc}, ")
    assert_png(study / "study_accuracy.png")
    assert_png(study / "study_cost.png")


def test_rerun_skips_every_finished_run(swept):
    root, first, again = swept
    assert again.exit_code == 0, again.output
    (study,) = studies(root / "saved_models")  # the same study folder, found by its key
    assert len(run_folders(study)) == 8  # no run trained twice
    assert again.output.count(" skipped: ") == 8
    assert " trained: " not in again.output


def test_hparams_read_back_with_tensorboards_reader(swept):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    root, _, _ = swept
    (study,) = studies(root / "saved_models")
    folder = run_folders(study)[0]
    metrics = json.loads((folder / "metrics.json").read_text())
    acc = EventAccumulator(str(root / "logs" / study.name / folder.name))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {k: v for k, v in start.hparams.items()}
    assert hparams["model.backbone"].string_value == "cnn"
    assert hparams["model.input_size"].number_value == 28
    assert hparams["model.resize_method"].string_value == "bilinear"
    config = (folder / "config.yaml").read_text()
    assert f"units: {int(hparams['model.head.units'].number_value)}" in config
    assert "train.learning_rate" in hparams
    test_acc = float(tensor_util.make_ndarray(acc.Tensors("final/test_accuracy")[0].tensor_proto))
    assert test_acc == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)


def test_bad_grid_fails_before_any_work(tmp_path, isolated):
    for grid, words in [
        ("model.head.unitz=16,32", "unknown key"),
        ("model.head.units=16,abc", "not accepted"),
        ("seed=1,2", "--seeds"),
        ("model.head.units", "KEY=V1,V2"),
    ]:
        result = runner.invoke(app, ["sweep", str(SMOKE), "--grid", grid, *sets(isolated)])
        assert result.exit_code == 2, result.output
        assert words in result.output, result.output
        assert "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep:\n  grid:\n    model.head.unitz: [16, 32]\n")
    result = runner.invoke(app, ["sweep", str(bad), *sets(isolated)])
    assert result.exit_code == 2 and "unknown key 'model.head.unitz'" in result.output
    assert not (tmp_path / "saved_models").exists()  # nothing written


def test_interrupted_sweep_resumes_and_each_run_appears_once(tmp_path, isolated):
    sweep = [str(FMNIST), "sweep", str(SMOKE), "--grid", "train.learning_rate=0.003,0.01"]
    sweep += sets([*isolated, "train.epochs=6", "train.patience=null", "data.train_limit=200"])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(sweep, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        state = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            states = list((tmp_path / "saved_models").glob("smoke-sweep-*/*/state.json"))
            raw = [json.loads(p.read_text()) for p in states if p.stat().st_size]
            if any(s["epochs_done"] >= 1 and not s["complete"] for s in raw):
                state = raw
                break
            time.sleep(0.05)
        assert state is not None, "no run reached its first epoch in time"
        proc.send_signal(signal.SIGTERM)  # the same clean stop as Ctrl-C (test_signals.py)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "run the same command again to continue" in stderr
    (study,) = studies(tmp_path / "saved_models")
    before = {p.name for p in run_folders(study)}
    spec = json.loads((study / "study.json").read_text())
    assert spec["complete"] is False and spec["runs_done"] < 2

    again = subprocess.run(sweep, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert " resumed: " in again.stderr
    folders = run_folders(study)
    assert before <= {p.name for p in folders}  # the interrupted run went on in its folder
    assert sorted("-".join(p.name.split("-")[:3]) for p in folders) == [
        "smoke-c01-s0",
        "smoke-c02-s0",
    ]
    for folder in folders:
        assert json.loads((folder / "state.json").read_text())["complete"] is True
        epochs = [line.split(",")[1] for line in (folder / "history.csv").read_text().split()[1:]]
        assert epochs == [str(e) for e in range(1, 7)], epochs  # every epoch once
    assert json.loads((study / "study.json").read_text())["runs_done"] == 2


def test_compare_diff_shows_only_differing_keys_and_marks_data_limits(swept, tmp_path):
    import shutil

    import yaml

    root, _, _ = swept
    (study,) = studies(root / "saved_models")
    result = runner.invoke(app, ["compare", "--diff", "--root", str(study), "--out",
                                 str(tmp_path)], terminal_width=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = md_rows(tmp_path / "comparison.md")
    assert len(rows) == 8
    keys = [k for k in rows[0] if "." in k or k == "seed"]
    assert sorted(keys) == ["model.head.units", "seed", "train.learning_rate"]
    for row in rows:  # the validation accuracy is each run's own best epoch's
        m = json.loads((study / row["run"] / "metrics.json").read_text())
        assert row["val accuracy"] == f"{m['stages'][0]['best_val_accuracy']:.4f}"
        assert row["data (train/val/test)"] == "320/80/100"
    assert "model.backbone" not in result.output and "val accuracy" in result.output

    # A run on a different data limit is marked, in both modes.
    runs = tmp_path / "runs"
    first, second = run_folders(study)[:2]
    shutil.copytree(first, runs / first.name)
    other = shutil.copytree(second, runs / second.name)
    m = json.loads((other / "metrics.json").read_text())
    m["data"]["train"], m["data"]["val"] = 160, 40
    (other / "metrics.json").write_text(json.dumps(m))
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["train_limit"] = 200
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    plain = runner.invoke(app, ["compare", "--root", str(runs)], terminal_width=200)
    assert plain.exit_code == 0, plain.output
    assert "data (train/val/test, differ!)" in (runs / "comparison.md").read_text()
    assert "160/40/100" in plain.output and "320/80/100" in plain.output  # in setup
    diff = runner.invoke(app, ["compare", "--diff", "--root", str(runs)], terminal_width=200)
    assert "data.train_limit" in (runs / "comparison.md").read_text(), diff.output
