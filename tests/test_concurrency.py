"""Runs that share an output.dir: distinct run folders, and a best.keras that is always whole,
always loadable, and ends as the better model; latest.keras is every run's.

Real processes: two `fmnist train` at the same moment while a thread loads best.keras over
and over; and publishers that compare-and-replace at the same instant, many rounds over.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SMOKE
from test_resume import sets
from typer.testing import CliRunner

from fmnist_tl import atomic
from fmnist_tl.cli import app
from fmnist_tl.layout import RunPaths
from fmnist_tl.training import publish

SAME_WORK = ["train.epochs=3", "train.patience=null", "output.update_best=true"]


def wait_loading(
    procs: dict[str, subprocess.Popen], best: Path
) -> tuple[dict[str, int], list[int], list[str]]:
    """Wait for the runs while loading `best` over and over: their exit codes, how many loads
    succeeded, and every failure to load (what a reader racing the publishers would meet)."""
    import keras

    loads, failures, stop = [0], [], threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if best.exists():
                try:
                    model = keras.models.load_model(best, compile=False)
                    assert model.output_shape == (None, 10)
                    loads[0] += 1
                except Exception as exc:  # any failure to load is what this test is about
                    failures.append(repr(exc))
            time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        codes = {name: p.wait(timeout=240) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        time.sleep(0.3)  # a last look at the final best.keras
        stop.set()
        poller.join(timeout=30)
    return codes, loads, failures


def test_two_runs_at_once_leave_the_better_best_keras_loadable_throughout(tmp_path, isolated):
    root = tmp_path / "saved_models"
    best = root / "best.keras"
    # The same work, so they finish together; a learning rate 300x lower learns far less.
    arms = {"good": "train.learning_rate=0.003", "poor": "train.learning_rate=0.00001"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "fmnist_tl.cli", "train", str(SMOKE)]
            + sets([*isolated, *SAME_WORK, lr, f"output.name={name}"]),
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{name}.err").open("w"),
            env={**os.environ, "TMPDIR": str(tmp_path)},
            cwd=tmp_path,
        )
        for name, lr in arms.items()
    }
    codes, loads, failures = wait_loading(procs, best)
    errs = {n: (tmp_path / f"{n}.err").read_text()[-1500:] for n in arms}
    assert codes == {"good": 0, "poor": 0}, errs
    assert not failures, failures[:3]
    assert loads[0] >= 1
    print(f"best.keras loaded {loads[0]} times while the runs finished")

    runs = sorted(p for p in root.iterdir() if p.is_dir())
    assert [r.name.split("-")[0] for r in runs] == ["good", "poor"]  # two folders, each its own
    acc = {
        r.name.split("-")[0]: json.loads((r / "metrics.json").read_text())["test"]["accuracy"]
        for r in runs
    }
    assert acc["good"] > acc["poor"], acc
    good = runs[0]
    record = json.loads((root / "best.json").read_text())
    assert record["run_id"] == good.name and record["test_accuracy"] == acc["good"]
    assert atomic.sha256_file(best) == atomic.sha256_file(good / "best.keras")
    assert (root / "best.config.yaml").read_text() == (good / "config.yaml").read_text()
    latest = json.loads((root / "latest.json").read_text())["run_id"]
    assert latest in {r.name for r in runs}
    assert not [p.name for p in root.iterdir() if p.name.startswith((".best.", ".latest."))]
    assert not list(tmp_path.glob("tmp*")), "Keras left temporary folders in TMPDIR"


def _publisher(run_dirs: list[str], setup: dict, barrier, accuracies: list[float]) -> None:
    """One process: publish run i at the same instant as the other process, every round."""
    for run_dir, accuracy in zip(run_dirs, accuracies, strict=True):
        barrier.wait(timeout=60)
        publish.publish(RunPaths(Path(run_dir)), accuracy, setup)


def fake_run(root: Path, name: str, payload: bytes) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "best.keras").write_bytes(payload)
    (run / "config.yaml").write_text(f"# {name}\n")
    return run


def test_publishers_at_the_same_instant_keep_the_better_one(tmp_path):
    setup = {"data_source": "x", "test_images": 100, "test_sha256": "ab", "test_flip": False}
    rounds = 15
    # Round k: process A publishes accuracy a_k, process B b_k, at the same instant. Every
    # round is worse than the one before, so round 0's winner must survive 14 racing rounds,
    # and a wrong pick in round 0's race would never be repaired.
    a = [0.9 - 0.02 * k for k in range(rounds)]
    b = [0.9 - 0.02 * k + (0.01 if k % 2 else -0.01) for k in range(rounds)]
    runs_a = [str(fake_run(tmp_path, f"a{k}", os.urandom(200_000))) for k in range(rounds)]
    runs_b = [str(fake_run(tmp_path, f"b{k}", os.urandom(200_000))) for k in range(rounds)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_publisher, args=(runs_a, setup, barrier, a)),
        ctx.Process(target=_publisher, args=(runs_b, setup, barrier, b)),
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    winner = Path(runs_a[0])  # a_0 = 0.90 beats b_0 = 0.89 and every later round
    record = json.loads((tmp_path / "best.json").read_text())
    assert record["run_id"] == winner.name
    assert record["test_accuracy"] == pytest.approx(0.9)
    assert atomic.sha256_file(tmp_path / "best.keras") == atomic.sha256_file(winner / "best.keras")
    assert (tmp_path / "best.config.yaml").read_text() == f"# {winner.name}\n"


def test_best_keras_is_replaced_only_by_a_better_model_on_the_same_test_setup(tmp_path):
    setup = {"data_source": "x", "test_images": 100, "test_sha256": "ab", "test_flip": False}
    first = fake_run(tmp_path, "r1", b"first")
    assert "is now this run" in publish.publish(RunPaths(first), 0.69, setup)
    worse = fake_run(tmp_path, "r2", b"worse")
    line = publish.publish(RunPaths(worse), 0.10, setup)
    assert "kept" in line and "0.6900" in line and "0.1000" in line
    assert (tmp_path / "best.keras").read_bytes() == b"first"
    assert (tmp_path / "latest.keras").read_bytes() == b"worse"  # every run is the latest
    assert (tmp_path / "latest.config.yaml").read_text() == "# r2\n"
    other = fake_run(tmp_path, "r3", b"flip")
    line = publish.publish(RunPaths(other), 0.99, {**setup, "test_flip": True})
    assert "another test setup" in line and (tmp_path / "best.keras").read_bytes() == b"first"
    better = fake_run(tmp_path, "r4", b"better")
    publish.publish(RunPaths(better), 0.70, setup)
    assert (tmp_path / "best.keras").read_bytes() == b"better"
    # A publisher killed mid-copy left its temporary; the next one removes it.
    (tmp_path / ".best.x1y2z3.keras").write_bytes(b"half")
    publish.publish(RunPaths(fake_run(tmp_path, "r5", b"r5")), 0.1, setup)
    assert not list(tmp_path.glob(".best.*"))
    # `fmnist finetune` with no MODEL starts from latest.keras, pinned to its run folder's file.
    assert publish.pinned(tmp_path / "latest.keras") == (tmp_path / "r5" / "best.keras").resolve()
    (tmp_path / "r5" / "best.keras").write_bytes(b"changed since")
    assert publish.pinned(tmp_path / "latest.keras") == tmp_path / "latest.keras"


def test_finetune_without_a_model_names_latest_keras(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["finetune"])
    assert result.exit_code == 3, result.output
    assert "latest.keras" in result.output and "Traceback" not in result.output
