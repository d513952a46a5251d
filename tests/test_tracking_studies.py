"""MLflow tracking of studies against a real SQLite store, read back with MlflowClient: a
2 x 2 sweep with 2 seeds is one parent with 8 children carrying their swept values, found
again (not duplicated) by `fmnist track`; a search is one parent with a child per trial.

The sweep's eight runs and its study draw no pictures (`undrawn`: half the sweep's CPU).
"""

from __future__ import annotations

import json

import pytest
from conftest import SMOKE
from test_tracking import runs, sqlite, steps, tracked, undrawn
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.tracking.backfill import track_runs

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def swept(tmp_path_factory, synthetic_dir):
    """A 2 x 2 grid x 2 seeds, tracked, through the CLI."""
    root = tmp_path_factory.mktemp("swept")
    db = root / "mlflow.db"
    sets = tracked(root, db, f"data.dir={synthetic_dir}", "model.freeze_backbone=true")
    sets += ["train.epochs=1", "train.patience=null", "data.train_limit=200", "data.test_limit=100"]
    grid = ["--grid", "model.head.units=16,32", "--grid", "train.learning_rate=0.003,0.01"]
    args = ["sweep", str(SMOKE), *grid, "--seeds", "2"]
    with undrawn():
        result = runner.invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    (study,) = (root / "saved_models").glob("smoke-sweep-*")
    return study, db


def test_a_sweep_is_one_parent_with_a_child_per_cell_and_seed(swept):
    study, db = swept
    found = runs(db)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    (parent,) = parents
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 8 and len(found) == 9
    assert parent.data.tags["fmnist.kind"] == "sweep" and parent.info.run_name == study.name
    swept = {"model.head.units", "train.learning_rate", "seed"}  # the children's, not its
    assert not swept & set(parent.data.params) and "model.backbone" in parent.data.params
    assert json.loads(parent.data.params["sweep.grid"]) == {
        "model.head.units": [16, 32],
        "train.learning_rate": [0.003, 0.01],
    }
    cells = {(r.data.tags["fmnist.cell"], r.data.tags["fmnist.seed"]) for r in children}
    assert cells == {(f"c0{c}", str(s)) for c in (1, 2, 3, 4) for s in (0, 1)}
    values = {(r.data.params["model.head.units"], r.data.params["train.learning_rate"])
              for r in children}  # fmt: skip
    assert values == {("16", "0.003"), ("16", "0.01"), ("32", "0.003"), ("32", "0.01")}
    cells_json = json.loads((study / "study.json").read_text())["cells"]
    for cell in cells_json:
        key = f"{cell['cell']}/test_accuracy_mean"
        assert parent.data.metrics[key] == pytest.approx(cell["test_accuracy"]["mean"])
        assert parent.data.metrics[f"{cell['cell']}/n"] == 2
    client = MlflowClient(sqlite(db))
    assert {"study.json", "study.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert parent.data.tags["mlflow.note.content"].startswith("# Study")
    assert {r.info.status for r in found} == {"FINISHED"}


def test_the_same_sweep_again_continues_its_parent_and_adds_nothing(swept):
    study, db = swept
    before = {r.info.run_id for r in runs(db)}
    report = track_runs([study], uri=sqlite(db))
    assert {i.what for i in report.items} == {"already recorded"} and len(report.items) == 9
    assert {r.info.run_id for r in runs(db)} == before


def test_a_search_is_one_parent_with_a_child_per_trial(tmp_path, isolated):
    from fmnist_tl import tune

    db = tmp_path / "mlflow.db"
    space = "tune.space={model.head.units: [8, 16, 32]}"
    sets = [*isolated, "output.tracking=mlflow", f"output.tracking_uri={sqlite(db)}", space]
    sets += ["model.freeze_backbone=true", "train.epochs=2", "train.patience=null"]
    result = tune(load_config(SMOKE, sets), 2)
    found = runs(db)
    (parent,) = [r for r in found if r.data.tags["fmnist.kind"] == "tune"]
    trials = [r for r in found if r.data.tags["fmnist.kind"] == "trial"]
    assert len(found) == 3 and len(trials) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert "model.head.units" not in parent.data.params  # the trials' own
    board = {t["trial"]: t for t in result.leaderboard["trials"]}
    for run in trials:
        trial = board[int(run.data.tags["fmnist.trial"])]
        assert (
            json.loads(run.data.params["model.head.units"]) == trial["values"]["model.head.units"]
        )
        assert steps(db, run.info.run_id, "val_accuracy") == [1, 2]  # its curve, no score mixed in
        assert run.data.metrics["best_val_accuracy"] == pytest.approx(trial["val_accuracy"])
    assert parent.data.metrics["trials_ok"] == 2
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.best.val_accuracy)
    best = result.best.values["model.head.units"]
    assert parent.data.tags["best.model.head.units"] == str(best)
    assert parent.info.status == "FINISHED"
