"""`fmnist tune`: a real CLI search on cached features, its files, reproducibility, failures.

The search runs a frozen from-scratch CNN (model.freeze_backbone: true) so every trial trains
only the head on features extracted once; the divergence test streams images instead.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE, cli_fails, outputs, sets
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config

runner = CliRunner()
FMNIST = Path(sys.executable).with_name("fmnist")  # the installed console script
SPACE = {
    "model.head.units": [16, 32, 64],
    "model.head.dropout": {"min": 0.0, "max": 0.5},
    "train.learning_rate": {"min": 0.001, "max": 0.01, "log": True},
    "train.batch_size": {"min": 32, "max": 128, "step": 32},
    "train.optimizer": ["adam", "sgd"],
}
TRIALS = 4


def search_config(folder: Path, space: dict, *, frozen: bool = True, **tune) -> Path:
    """smoke.yaml with a tune: section (and a frozen backbone: the cached-features path)."""
    raw = yaml.safe_load(SMOKE.read_text())
    if frozen:
        raw["model"]["freeze_backbone"] = True
    raw["tune"] = {"space": space, "epochs": 2, **tune}
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def get(config, key: str):
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def md_rows(path: Path) -> list[dict[str, str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


@pytest.fixture(scope="module")
def cli_search(tmp_path_factory, synthetic_dir):
    """One `fmnist tune CONFIG --trials 4` subprocess, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("tune")
    config = search_config(root, SPACE, trials=10)
    overrides = outputs(root, synthetic_dir)
    proc = subprocess.run(
        [str(FMNIST), "tune", str(config), "--trials", str(TRIALS), *sets(overrides)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tune_dir,) = (root / "saved_models").iterdir()
    return root, config, tune_dir, proc


def test_cli_search_writes_a_ranked_leaderboard_and_best_yaml(cli_search):
    root, config, tune_dir, proc = cli_search
    assert "Traceback" not in proc.stderr
    assert tune_dir.name.startswith("search-tune-")
    board = json.loads((tune_dir / "leaderboard.json").read_text())
    trials = board["trials"]
    assert board["complete"] and board["trials_run"] == TRIALS == len(trials)
    assert sorted(t["trial"] for t in trials) == list(range(1, TRIALS + 1))
    for t in trials:
        v = t["values"]
        assert t["status"] == "ok" and t["objective"] == t["val_accuracy"]
        assert v["model.head.units"] in (16, 32, 64)
        assert 0.0 <= v["model.head.dropout"] <= 0.5
        assert 0.001 <= v["train.learning_rate"] <= 0.01
        assert v["train.batch_size"] in (32, 64, 96, 128)
        assert v["train.optimizer"] in ("adam", "sgd")
        assert 1 <= t["best_epoch"] <= t["epochs_run"] <= 2 and t["seconds"] > 0
    assert len({json.dumps(t["values"], sort_keys=True) for t in trials}) == TRIALS

    # Best first by val_accuracy (ties: lower val_loss), in the JSON and in the Markdown table.
    order = sorted(trials, key=lambda t: (-t["val_accuracy"], t["val_loss"], t["trial"]))
    assert [t["trial"] for t in trials] == [t["trial"] for t in order]
    rows = md_rows(tune_dir / "leaderboard.md")
    assert [int(r["trial"]) for r in rows] == [t["trial"] for t in order]
    accs = [float(r["val_accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert board["best"]["trial"] == trials[0]["trial"] == int(rows[0]["trial"])

    # Features extracted once: a cache miss for trial 1, hits after; one file in the cache.
    assert [f["cache"] for f in board["features"]] == ["miss"]
    assert [t["feature_cache"] for t in sorted(trials, key=lambda t: t["trial"])] == [
        "miss",
        *["hit"] * (TRIALS - 1),
    ]
    assert len(list((root / "cache").glob("*.npy"))) == 1
    assert board["total_seconds"] >= board["feature_seconds"] > 0

    best = load_config(tune_dir / "best.yaml")
    for key, value in board["best"]["values"].items():
        assert get(best, key) == value, key
    base = load_config(config)
    assert best.train.epochs == base.train.epochs  # tune.epochs applies to trials only
    assert (tune_dir / "keras_tuner" / "oracle.json").is_file()
    assert f"fmnist train {tune_dir / 'best.yaml'}" in proc.stdout.replace("\n", "")


def test_best_yaml_trains_unchanged(cli_search, tmp_path, isolated):
    _, _, tune_dir, _ = cli_search
    result = runner.invoke(app, ["train", str(tune_dir / "best.yaml"), *sets(isolated)])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "saved_models").iterdir()
    assert (run / "metrics.json").is_file()


def test_same_seed_same_trials(cli_search, tmp_path, isolated):
    from fmnist_tl import tune

    _, config, tune_dir, _ = cli_search
    first = json.loads((tune_dir / "leaderboard.json").read_text())["trials"]
    again = tune(load_config(config, isolated), TRIALS).leaderboard["trials"]
    by_trial = {t["trial"]: t for t in again}
    for t in first:
        assert by_trial[t["trial"]]["values"] == t["values"]
        assert by_trial[t["trial"]]["val_loss"] == pytest.approx(t["val_loss"], abs=1e-6)
    other = tune(load_config(config, [*isolated, "seed=1"]), 1).leaderboard["trials"]
    assert other[0]["values"] != by_trial[1]["values"]


def test_diverged_trial_is_recorded_and_the_search_goes_on(tmp_path, isolated):
    from fmnist_tl import tune

    # Streaming images (backbone not frozen); YAML reads 1e30 as a string, typed like --set.
    config = search_config(tmp_path, {"train.learning_rate": [0.003, "1e30"]}, frozen=False)
    seen = []
    result = tune(load_config(config, isolated), 3, on_trial=lambda r, n: seen.append(r))
    board = result.leaderboard
    assert board["stopped"] == "search space exhausted" and board["trials_run"] == 2
    ok, diverged = board["trials"]
    assert ok["status"] == "ok" and ok["values"] == {"train.learning_rate": 0.003}
    assert diverged["status"] == "diverged" and diverged["values"]["train.learning_rate"] == 1e30
    loss = float(diverged["message"].split("became ")[1].split()[0])
    assert not loss <= 1e6, diverged["message"]  # NaN, inf, or finite but exploded
    assert ok["feature_cache"] is None and not board["features"]
    assert len(seen) == 2 and result.best.trial == ok["trial"]
    rows = md_rows(result.tune_dir / "leaderboard.md")
    assert [r["status"] for r in rows] == ["ok", "diverged"]


def test_a_stop_signal_keeps_the_completed_trials(tmp_path, isolated):
    config = search_config(tmp_path, SPACE, epochs=1)
    proc = subprocess.Popen(
        [str(FMNIST), "tune", str(config), "--trials", "50", *sets(isolated)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr.txt").open("w"),
        cwd=tmp_path,
    )
    root = tmp_path / "saved_models"
    deadline = time.monotonic() + 120
    while not list(root.glob("*/leaderboard.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the search ended or hung before its first trial")
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)  # a closed terminal: the same clean stop as Ctrl-C
    assert proc.wait(timeout=60) == 130
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    (tune_dir,) = root.iterdir()
    assert "interrupted after" in stderr.splitlines()[-1]
    assert str(tune_dir / "leaderboard.md") in stderr.splitlines()[-1]
    board = json.loads((tune_dir / "leaderboard.json").read_text())
    assert board["stopped"] == "interrupted" and not board["complete"]
    assert 1 <= board["trials_run"] < 50 and all(t["status"] == "ok" for t in board["trials"])
    assert load_config(tune_dir / "best.yaml").model.head.units in (16, 32, 64)
    assert not list(tune_dir.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize(
    ("space", "needles"),
    [
        ({"model.head.unit": [1, 2]}, ["tune.space", "unknown key 'model.head.unit'", "units"]),
        (
            {"model.head.dropout": {"min": 0.2, "max": 1.0}},
            ["tune.space: model.head.dropout", "max 1.0", "less than 1"],
        ),
        ({"data.dir": ["a", "b"]}, ["tune.space: data.dir", "cannot be tuned"]),
        ({"model.head.units": {"min": 8.5, "max": 64}}, ["model.head.units", "integer"]),
        ({"model.head.units": 64}, ["model.head.units", "list of choices", "range"]),
        ({}, ["tune.space is empty"]),
    ],
)
def test_bad_space_is_one_line_exit_2_and_writes_nothing(tmp_path, isolated, space, needles):
    config = search_config(tmp_path, space)
    cli_fails(["tune", str(config), *sets(isolated)], 2, *needles)
    assert not (tmp_path / "saved_models").exists()


def test_tune_section_is_optional_and_the_shipped_space_is_valid():
    from fmnist_tl.config import search_space

    assert load_config(SMOKE).tune.space == {}
    mobilenet = load_config(SMOKE.with_name("mobilenet.yaml"))
    keys = [d.key for d in search_space(mobilenet)]
    assert "train.learning_rate" in keys and "model.head.dropout" in keys


def test_head_only_trials_build_the_backbone_once_and_match_fmnist_train(
    tmp_path, isolated, monkeypatch
):
    """Trials after the first reuse the features and build only the head; their numbers are
    still what `fmnist train` gives for stage 1 of the same values."""
    import csv

    from fmnist_tl import tune
    from fmnist_tl.training import stage1

    builds = []
    real_build = stage1.build_model
    monkeypatch.setattr(stage1, "build_model", lambda c: builds.append(c) or real_build(c))
    space = {"model.head.units": [16, 32, 64], "train.learning_rate": [0.003, 0.01]}
    config = search_config(tmp_path, space, epochs=None)
    result = tune(load_config(config, isolated), 3)
    trials = result.leaderboard["trials"]
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials)
    assert len(builds) == 1  # trial 1 built the model; trials 2 and 3 only their heads

    # Each trial's numbers == stage 1 of `fmnist train` with its values (same seed, same split).
    for t in trials:
        values = [f"{k}={v}" for k, v in t["values"].items()]
        out = tmp_path / f"train{t['trial']}"
        runs = [*isolated, f"output.dir={out}"]
        res = runner.invoke(app, ["train", str(config), *sets(runs), *sets(values)])
        assert res.exit_code == 0, res.output
        (run,) = out.iterdir()
        with (run / "history.csv").open() as f:
            rows = {int(r["epoch"]): r for r in csv.DictReader(f) if r["stage"] == "head"}
        row = rows[t["best_epoch"]]
        assert float(row["val_accuracy"]) == pytest.approx(t["val_accuracy"], abs=1e-6)
        assert float(row["val_loss"]) == pytest.approx(t["val_loss"], abs=1e-5)


def test_build_head_starts_from_the_full_models_head_weights():
    import numpy as np

    from fmnist_tl.models.assembly import build_model
    from fmnist_tl.models.head import build_head

    config = load_config(SMOKE)
    full = build_model(config).head
    alone = build_head(config, full.input_shape[1:])
    for a, b in zip(full.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
