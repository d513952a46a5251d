"""Several machines on one: real processes on 127.0.0.1, free ports, bounded, all ended.

* Keras Tuner's distributed mode: a chief serving the oracle over gRPC and two tuner workers,
  for `fmnist tune` (RandomSearch) and `fmnist sweep` (GridSearch over the cells x seeds).
* `runtime.distribute: multi_worker`: two MultiWorkerMirroredStrategy workers from TF_CONFIG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import SMOKE, free_port, outputs, sets

FMNIST = str(Path(sys.executable).with_name("fmnist"))
LIMIT_S = 150  # every process of a test must have ended by then


def run_all(commands: list[tuple[list[str], dict[str, str], Path]]) -> list[tuple[int, str]]:
    """Start every command at once; wait for all within LIMIT_S; kill whatever is left."""
    procs = []
    try:
        for args, env, cwd in commands:
            cwd.mkdir(parents=True, exist_ok=True)
            full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **env}
            procs.append(subprocess.Popen(args, cwd=cwd, env=full, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))  # fmt: skip
        deadline = time.monotonic() + LIMIT_S
        outputs = []
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append((p.returncode, out))
        return outputs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def kt_env(role: str, port: int) -> dict[str, str]:
    return {
        "KERASTUNER_TUNER_ID": role,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def test_tune_chief_and_two_workers_run_every_trial_once(tmp_path, synthetic_dir):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["tune"] = {"space": {"train.learning_rate": [0.001, 0.003, 0.01, 0.03],
                             "model.head.units": [16, 32]}, "epochs": 2}  # fmt: skip
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    port, trials = free_port(), 4
    cmd = [FMNIST, "tune", str(config), "--trials", str(trials)]
    cmd += sets([*outputs(tmp_path, synthetic_dir), "data.train_limit=240"])
    roles = ["chief", "tuner0", "tuner1"]
    results = run_all([(cmd, kt_env(r, port), tmp_path) for r in roles])
    for role, (rc, out) in zip(roles, results, strict=True):
        assert rc == 0, f"{role}: {out[-3000:]}"

    boards = {}
    for path in (tmp_path / "saved_models").glob("search-tune-*/leaderboard.json"):
        board = json.loads(path.read_text())
        boards[board["distributed"]["role"]] = board
    assert sorted(boards) == sorted(roles)
    chief = boards["chief"]
    assert chief["trials_run"] == trials and chief["complete"] is True
    assert sorted(t["trial"] for t in chief["trials"]) == list(range(1, trials + 1))
    assert all(t["status"] == "ok" for t in chief["trials"])
    ran = {w: sorted(t["trial"] for t in boards[w]["trials"]) for w in ("tuner0", "tuner1")}
    assert sorted(ran["tuner0"] + ran["tuner1"]) == list(range(1, trials + 1))  # once each
    for worker, numbers in ran.items():  # the chief knows who ran what
        assert all(chief["distributed"]["ran_on"][str(n)] == worker for n in numbers)
    for t in chief["trials"]:  # the numbers the chief holds are the worker's own
        worker = chief["distributed"]["ran_on"][str(t["trial"])]
        mine = next(w for w in boards[worker]["trials"] if w["trial"] == t["trial"])
        assert t["val_accuracy"] == mine["val_accuracy"] and t["values"] == mine["values"]
    assert (tmp_path / "saved_models" / chief["tune_id"] / "best.yaml").is_file()
    for worker in ("tuner0", "tuner1"):  # every trial's HParams, read with TensorBoard's reader
        for t in boards[worker]["trials"]:
            logs = tmp_path / "logs" / boards[worker]["tune_id"] / f"trial_{t['trial']:03d}"
            values = session_hparams(logs)
            assert values["train.learning_rate"] == t["values"]["train.learning_rate"]
            assert values["model.head.units"] == t["values"]["model.head.units"]
            assert values["model.backbone"] == "cnn"


def session_hparams(log_dir: Path) -> dict:
    """The hparams session in `log_dir`, via TensorBoard's event reader and hparams metadata."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    out = {}
    for key, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind)
    return out


def test_sweep_chief_and_two_workers_cover_the_grid_once(tmp_path, synthetic_dir):
    port = free_port()
    cmd = [FMNIST, "sweep", str(SMOKE), "--grid", "train.learning_rate=0.003,0.01",
           "--seeds", "2"]  # fmt: skip
    cmd += sets([*outputs(tmp_path, synthetic_dir), "data.train_limit=240", "train.epochs=1"])
    roles = ["chief", "tuner0", "tuner1"]
    results = run_all([(cmd, kt_env(r, port), tmp_path) for r in roles])
    for role, (rc, out) in zip(roles, results, strict=True):
        assert rc == 0, f"{role}: {out[-3000:]}"
    studies = {}
    for path in (tmp_path / "saved_models").glob("smoke-sweep-*/study.json"):
        spec = json.loads(path.read_text())
        studies[spec["distributed"]["role"]] = (path.parent, spec)
    assert sorted(studies) == sorted(roles)
    chief_dir, chief = studies["chief"]
    assert chief["complete"] is True and chief["runs_done"] == 4
    assert [c["n"] for c in chief["cells"]] == [2, 2]
    cells_seeds = sorted((r["cell"], r["seed"]) for r in chief["runs"])
    assert cells_seeds == [("c01", 0), ("c01", 1), ("c02", 0), ("c02", 1)]  # the grid, once
    trained = []
    for worker in ("tuner0", "tuner1"):
        folder, spec = studies[worker]
        for run in spec["runs"]:
            assert (folder / run["run_id"] / "best.keras").is_file()  # on the worker's disk
            assert chief["distributed"]["workers"][f"{run['cell']}-s{run['seed']}"] == worker
            trained.append((run["cell"], run["seed"]))
    assert sorted(trained) == cells_seeds
    assert not [p for p in chief_dir.iterdir() if p.is_dir() and p.name.startswith("smoke-c")]
    assert (chief_dir / "study.md").read_text().count("| c0") == 2


def test_multi_worker_mirrored_two_processes_train_one_model(tmp_path, synthetic_dir):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    commands = []
    for index in (0, 1):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        folder = tmp_path / f"machine{index}"  # each worker on its own disk, as on two machines
        cmd = [FMNIST, "train", str(SMOKE)]
        cmd += sets([*outputs(folder, synthetic_dir), "runtime.distribute=multi_worker",
                     "train.epochs=1", "train.batch_size=32"])  # fmt: skip
        commands.append((cmd, {"TF_CONFIG": tf_config}, folder))
    results = run_all(commands)
    for index, (rc, out) in enumerate(results):
        assert rc == 0, f"worker {index}: {out[-3000:]}"
    import keras

    (chief_run,) = [p for p in (tmp_path / "machine0" / "saved_models").iterdir() if p.is_dir()]
    metrics = json.loads((chief_run / "metrics.json").read_text())
    assert metrics["runtime"]["distribute"] == "multi_worker"
    assert metrics["runtime"]["replicas"] == 2  # one replica per worker, in sync
    assert metrics["runtime"]["global_batch_size"] == 64
    assert metrics["stages"][0]["epochs_run"] == 1
    model = keras.models.load_model(chief_run / "best.keras", compile=False)
    assert model.input_shape == (None, 28, 28, 1)
    (other_run,) = [p for p in (tmp_path / "machine1" / "saved_models").iterdir() if p.is_dir()]
    other = json.loads((other_run / "metrics.json").read_text())
    # Both workers trained the same replicated model: the same test scores.
    assert other["test"]["accuracy"] == metrics["test"]["accuracy"]
