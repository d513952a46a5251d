"""MLflow tracking (output.tracking: mlflow) against a real SQLite store in a temp folder, read
back with MlflowClient: what a run records, resume, a store that does not answer, `fmnist track`
(idempotent), and MLflow kept quiet and unimported. Studies (sweep, search) are
test_tracking_studies.py's.

A few tiny runs, each made once: a two-stage run from a weights file with the test-time flip
(its real pictures among its artifacts); a run of two epochs interrupted after its first, then
resumed; and, as real subprocesses, one run without tracking (MLflow made unimportable) beside
the same run with a store that refuses connections.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE, cli_fails, free_port, interrupted, outputs, sets
from PIL import Image
from test_training import CNN, saved_backbone

from fmnist_tl.config import key_table, load_config
from fmnist_tl.experiments.sweep import plots as study_plots
from fmnist_tl.reporting import cost_plot, plots
from fmnist_tl.tracking import store as tracking_store
from fmnist_tl.tracking.backfill import track_runs
from fmnist_tl.tracking.values import flatten, param_value
from fmnist_tl.training.trainer import resume_run, train

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

FMNIST = str(Path(sys.executable).with_name("fmnist"))
EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "stage")
TWO_STAGES = ["train.epochs=2", "finetune.epochs=1", "finetune.unfreeze_from=block2"]


def sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


def tracked(root: Path, db: Path, *more: str) -> list[str]:
    return [*outputs(root), "output.tracking=mlflow", f"output.tracking_uri={sqlite(db)}", *more]


def _one_pixel_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    return out.getvalue()


PIXEL = _one_pixel_png()


def _stand_in(fig, path) -> None:
    plots.plt.close(fig)
    Path(path).write_bytes(PIXEL)


@contextlib.contextmanager
def undrawn():
    """Runs in this process save a one-pixel PNG under each picture's name instead of drawing
    it (drawing is most of a tiny run's CPU). For tests of what MLflow holds, not of pictures:
    test_plots_tb.py tests the drawing, and the two-stage run here keeps its real pictures."""
    with pytest.MonkeyPatch.context() as patch:
        for module in (plots, cost_plot, study_plots):
            patch.setattr(module, "save_figure", _stand_in)
        yield


def runs(db: Path) -> list:
    client = MlflowClient(sqlite(db))
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000)


def steps(db: Path, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(sqlite(db)).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory, synthetic_dir):
    """One run through both stages from a weights file, test-time flip on, tracked."""
    root = tmp_path_factory.mktemp("two_stage")
    cnn = [*CNN, "model.cnn.batch_norm=false"]  # smoke.yaml's backbone, no dropout in it
    weights, _ = saved_backbone(root, *cnn)
    db = root / "mlflow.db"
    sets = [f"data.dir={synthetic_dir}", *cnn, *TWO_STAGES, f"model.weights={weights}"]
    sets += ["augment.test_flip=true", "augment.flip=true"]
    result = train(load_config(SMOKE, tracked(root, db, *sets)))
    (run,) = runs(db)
    return result, run, db


def test_the_params_are_the_saved_config_typed_as_the_schema_types_it(two_stage):
    result, run, _ = two_stage
    saved = flatten(yaml.safe_load((result.run_dir / "config.yaml").read_text()))
    assert set(run.data.params) == set(saved) == {k.key for k in key_table()}
    assert {k: param_value(k, v) for k, v in run.data.params.items()} == saved
    assert run.data.params["train.learning_rate"] == "0.003"
    assert run.data.params["augment.test_flip"] == "true"
    assert run.data.params["data.train_limit"] == "600"
    assert run.data.params["model.cnn.filters"] == "[8, 16]"


def test_each_epoch_of_both_stages_is_one_point_on_one_step_counter(two_stage):
    result, run, db = two_stage
    epochs = [int(r["epoch"]) for r in result.history]
    assert epochs == [1, 2, 3]
    for key in EPOCH_KEYS:
        assert steps(db, run.info.run_id, key) == epochs, key
    history = MlflowClient(sqlite(db)).get_metric_history(run.info.run_id, "stage")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [1, 1, 2]
    losses = MlflowClient(sqlite(db)).get_metric_history(run.info.run_id, "val_loss")
    by_step = {m.step: m.value for m in losses}
    assert by_step == pytest.approx({int(r["epoch"]): r["val_loss"] for r in result.history})


def test_the_test_metrics_are_metrics_json_with_and_without_the_flip(two_stage):
    result, run, _ = two_stage
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    test = saved["test"]
    assert test["test_flip"] is True and "accuracy_without_flip" in test
    m = run.data.metrics
    assert m["test_accuracy"] == pytest.approx(test["accuracy"])
    assert m["test_loss"] == pytest.approx(test["loss"])
    assert m["test_accuracy_without_flip"] == pytest.approx(test["accuracy_without_flip"])
    assert saved["mlflow_run_id"] == run.info.run_id
    state = json.loads((result.run_dir / "state.json").read_text())
    assert state["mlflow_run_id"] == run.info.run_id and run.info.status == "FINISHED"


def test_the_tags_name_the_weights_sha256_the_machine_the_code_and_the_folder(two_stage):
    result, run, _ = two_stage
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    tags = run.data.tags
    assert saved["weights_sha256"] and tags["weights_sha256"] == saved["weights_sha256"]
    assert tags["weights"] == saved["weights_used"] and tags["weights"].startswith("file ")
    assert tags["seed"] == "0" and tags["backbone"] == "cnn"
    assert tags["machine.cpu"] == saved["machine"]["cpu"]
    assert tags["machine.cores"] == str(saved["machine"]["cores"])
    assert tags["machine.tensorflow"] == saved["machine"]["tensorflow"]
    assert tags["run_dir"] == str(result.run_dir.resolve())
    assert tags["mlflow.runName"] == result.run_id
    if (Path(__file__).parents[1] / ".git").exists():
        assert len(tags["mlflow.source.git.commit"]) == 40


def test_the_artifacts_are_the_run_files_and_the_model_only_when_asked(two_stage):
    _, run, db = two_stage
    client = MlflowClient(sqlite(db))
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {
        "config.yaml",
        "metrics.json",
        "history.csv",
        "history.png",
        "evaluation.json",
        "evaluation_confusion.png",
        "evaluation_misclassified.png",
    }
    assert (db.parent / "mlartifacts").is_dir()  # beside the database, not in the cwd


def test_an_interrupted_then_resumed_run_is_one_mlflow_run(tmp_path, isolated):
    db = tmp_path / "mlflow.db"
    sets = [*isolated, "output.tracking=mlflow", f"output.tracking_uri={sqlite(db)}"]
    config = load_config(SMOKE, [*sets, "train.epochs=2", "train.patience=null"])
    with undrawn():
        run_dir = interrupted(lambda: train(config), epoch=1)
        (first,) = runs(db)
        assert first.info.status == "KILLED"
        state = json.loads((run_dir / "state.json").read_text())
        assert state["mlflow_run_id"] == first.info.run_id
        resume_run(run_dir)
    (run,) = runs(db)
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert json.loads((run_dir / "metrics.json").read_text())["mlflow_run_id"] == run.info.run_id
    for key in EPOCH_KEYS:
        assert steps(db, run.info.run_id, key) == [1, 2], key


@pytest.fixture(scope="module")
def off_and_away(tmp_path_factory, synthetic_dir):
    """The same run twice as subprocesses: tracking off with MLflow made unimportable, and
    tracking on with a store that refuses connections."""
    root = tmp_path_factory.mktemp("off_and_away")
    fake = root / "no_mlflow" / "mlflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('MLflow was imported')\n")
    off_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), *sys.path])}
    port = free_port()
    away = [*outputs(root / "away", synthetic_dir), "output.tracking=mlflow"]
    away.append(f"output.tracking_uri=http://127.0.0.1:{port}")
    procs = [
        subprocess.Popen(
            [FMNIST, "train", str(SMOKE), *sets(outputs(root / "off", synthetic_dir))],
            env=off_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ),
        subprocess.Popen(
            [FMNIST, "train", str(SMOKE), *sets(away)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ),
    ]  # fmt: skip
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append((proc.returncode, out, err))
    return root, done


def only_run(root: Path) -> Path:
    (run,) = [p for p in (root / "saved_models").iterdir() if p.is_dir()]
    return run


def test_tracking_off_never_imports_mlflow_and_writes_no_run_id(off_and_away):
    root, ((code, _, err), _) = off_and_away
    assert code == 0, err
    run = only_run(root / "off")
    assert "mlflow_run_id" not in json.loads((run / "metrics.json").read_text())
    assert "mlflow_run_id" not in json.loads((run / "state.json").read_text())
    assert not list(root.rglob("mlflow.db")) and not list(root.rglob("mlruns"))


def test_a_store_that_does_not_answer_costs_the_run_nothing(off_and_away):
    root, ((_, _, _), (code, out, err)) = off_and_away
    assert code == 0, err
    off, away = only_run(root / "off"), only_run(root / "away")
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("tracking: ") for line in lines), err
    assert "connection refused" in lines[0] and "training goes on" in lines[0]
    assert f"fmnist track {away}" in lines[1]
    assert "test accuracy" in out
    assert sorted(p.name for p in off.iterdir()) == sorted(p.name for p in away.iterdir())
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (off, away))
    assert a["test"] == b["test"] and a["stages"][0]["best_epoch"] == b["stages"][0]["best_epoch"]
    assert set(a) == set(b)  # no mlflow_run_id: the store never gave one
    rows = [(d / "history.csv").read_text().splitlines() for d in (off, away)]
    assert [r.rsplit(",", 1)[0] for r in rows[0]] == [r.rsplit(",", 1)[0] for r in rows[1]]
    configs = [flatten(yaml.safe_load((d / "config.yaml").read_text())) for d in (off, away)]
    differ = {k for k in configs[0] if configs[0][k] != configs[1][k]}
    assert differ <= {"output.dir", "output.log_dir", "output.cache_dir", "output.tracking"} | {
        "output.tracking_uri",
        "output.experiment",
    }


def test_backfill_records_a_run_once_however_often_it_is_asked(off_and_away, tmp_path):
    root, _ = off_and_away
    off = only_run(root / "off")
    db = tmp_path / "backfill.db"
    first = track_runs([off], uri=sqlite(db))
    assert [(i.kind, i.what) for i in first.items] == [("run", "recorded")]
    (run,) = runs(db)
    points = {k: steps(db, run.info.run_id, k) for k in EPOCH_KEYS}
    again = track_runs([off.parent], uri=sqlite(db))
    assert [(i.what, i.run_id) for i in again.items] == [("already recorded", run.info.run_id)]
    (same,) = runs(db)
    assert same.info.run_id == run.info.run_id and same.info.status == "FINISHED"
    assert {k: steps(db, run.info.run_id, k) for k in EPOCH_KEYS} == points
    saved = json.loads((off / "metrics.json").read_text())
    assert same.data.metrics["test_accuracy"] == pytest.approx(saved["test"]["accuracy"])
    assert same.data.tags["fmnist.backfilled"] == "true"
    assert "mlflow_run_id" not in saved  # the run folder is read, never written


def test_backfill_completes_a_run_a_failing_store_left_half_done(two_stage, tmp_path):
    result, run, db = two_stage
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    client = MlflowClient(sqlite(copy))
    client.set_tag(run.info.run_id, "fmnist.recorded", "partial")
    client.update_run(run.info.run_id, status="RUNNING")
    report = track_runs([result.run_dir], uri=sqlite(copy))
    assert [(i.what, i.run_id) for i in report.items] == [("completed", run.info.run_id)]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    for key in EPOCH_KEYS:
        assert steps(copy, run.info.run_id, key) == [1, 2, 3], key


def test_fmnist_track_is_quiet_unless_verbose(off_and_away, tmp_path):
    """MLflow's own lines (a new database's set-up) reach the terminal only with --verbose."""
    root, _ = off_and_away
    off = only_run(root / "off")
    quiet = subprocess.run(
        [FMNIST, "track", str(off), "--uri", sqlite(tmp_path / "a.db")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert quiet.stdout.splitlines()[0].startswith("recorded  run")
    assert f"mlflow ui --backend-store-uri {sqlite(tmp_path / 'a.db')}" in quiet.stdout
    loud = subprocess.run(
        [FMNIST, "--verbose", "track", str(off), "--uri", sqlite(tmp_path / "b.db")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert loud.returncode == 0, loud.stderr
    assert "Creating initial MLflow database tables" in loud.stderr


def test_tracking_without_mlflow_is_one_line_before_any_work(tmp_path, isolated, monkeypatch):
    monkeypatch.setattr(tracking_store, "installed", lambda: False)
    args = ["train", str(SMOKE), *sets([*isolated, "output.tracking=mlflow"])]
    line = cli_fails(args, 3, "output.tracking: mlflow needs MLflow", "pip install -e")
    assert "not installed" in line
    assert not (tmp_path / "saved_models").exists()
    cli_fails(["track", str(tmp_path)], 3, "fmnist track needs MLflow")


def test_track_refuses_what_it_cannot_record_in_one_line(tmp_path):
    cli_fails(["track", str(tmp_path / "nowhere")], 3, "no such folder")
    cli_fails(["track", str(tmp_path)], 3, "no run, repeat group, sweep or search")
    cli_fails(["track", str(tmp_path), "--uri", "runs/mlflow.db"], 2, "--uri", "scheme")


def test_the_tracking_keys_are_listed_and_checked(tmp_path):
    keys = {k.key: k for k in key_table()}
    assert keys["output.tracking"].default == "none"
    assert {"output.tracking_uri", "output.experiment", "output.tracking_model"} <= set(keys)
    cli_fails(
        ["train", str(SMOKE), "--set", "output.tracking_uri=/tmp/mlflow.db"],
        2,
        "output.tracking_uri",
        "a URI with a scheme",
    )
    pinned = load_config(SMOKE, [f"output.dir={tmp_path}", "output.tracking=mlflow"]).output
    assert pinned.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert pinned.experiment == "smoke"
    assert load_config(SMOKE).output.tracking_uri is None  # off: nothing filled in


def test_backfill_of_a_run_from_another_machine_goes_beside_it(two_stage, tmp_path):
    """Its saved store is a SQLite file of the machine it came from: the run goes to
    <the folder holding it>/mlflow.db here, found again as the same run the second time."""
    result, run, _ = two_stage
    copy = tmp_path / "records" / result.run_dir.name
    shutil.copytree(result.run_dir, copy)
    config = copy / "config.yaml"
    foreign = "sqlite:////elsewhere/saved_models/mlflow.db"
    text = config.read_text().replace(run.data.params["output.tracking_uri"], foreign)
    config.write_text(text)
    report = track_runs([copy.parent])
    db = tmp_path / "records" / "mlflow.db"
    assert [(i.what, i.store) for i in report.items] == [("recorded", sqlite(db.resolve()))]
    assert [r.data.tags["fmnist.run_id"] for r in runs(db)] == [result.run_id]
    assert not Path("/elsewhere").exists()
