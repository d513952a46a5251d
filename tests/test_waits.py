"""Issue 28, class 1: every distributed wait is announced, bounded and interruptible.

Real processes on 127.0.0.1, each bounded in time and ended: Keras Tuner's chief and workers
(`fmnist sweep` with KERASTUNER_*), `runtime.distribute: multi_worker` tasks (TF_CONFIG). The
bounds are the config keys runtime.peer_wait_s and runtime.peer_lost_s, set short here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMOKE, free_port, one_line, outputs, sets

FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]
LIMIT_S = 180  # no process of a test lives longer (a busy 2-core machine included)
SWEEP = ["sweep", str(SMOKE), "--grid", "train.learning_rate=0.003,0.01"]


def kt_env(role: str, port: int | str, ip: str = "127.0.0.1") -> dict[str, str]:
    return {
        "KERASTUNER_TUNER_ID": role,
        "KERASTUNER_ORACLE_IP": ip,
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def tf_config(ports: list[int], index: int) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    }


class Proc:
    """One `fmnist` process: its stderr line by line (a file, so nothing blocks), its end."""

    def __init__(self, tmp: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.err = tmp / f"{name}.err"
        full = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", **env}
        self.started = time.monotonic()
        self.p = subprocess.Popen([*FMNIST, *args], cwd=tmp, env=full, stdout=subprocess.DEVNULL,
                                  stderr=self.err.open("w"))  # fmt: skip

    def lines(self) -> list[str]:
        return [line for line in self.err.read_text().splitlines() if line.strip()]

    def wait_for(self, needle: str, timeout: float = LIMIT_S) -> float:
        """Seconds since start when a stderr line holds `needle` (fails if the process ends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines()):
                return time.monotonic() - self.started
            assert self.p.poll() is None, f"ended ({self.p.returncode}) before {needle!r}: " + (
                "\n".join(self.lines())
            )
            time.sleep(0.05)
        pytest.fail(f"no {needle!r} within {timeout} s")

    def end(self, timeout: float = LIMIT_S) -> int:
        try:
            return self.p.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def last_line(proc: Proc, *needles: str) -> str:
    """The process's last stderr line, one line with every needle; no traceback anywhere."""
    text = proc.err.read_text()
    assert "Traceback" not in text, text
    return one_line(proc.lines()[-1], *needles)


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        (kt_env("chief", 99999), ["KERASTUNER_ORACLE_PORT", "'99999'", "1 to 65535"]),
        (kt_env("tuner0", "80a"), ["KERASTUNER_ORACLE_PORT", "'80a'"]),
        (kt_env("tuner0", 8000, ip="http://10.0.0.1"), ["KERASTUNER_ORACLE_IP", "http"]),
        (kt_env("tuner 0", 8000), ["KERASTUNER_TUNER_ID", "'tuner 0'"]),
        ({"KERASTUNER_ORACLE_IP": "127.0.0.1"}, ["KERASTUNER_TUNER_ID is not set"]),
        ({"TF_CONFIG": "{'cluster': 1}"}, ["TF_CONFIG: not JSON"]),
        (tf_config([70000], 0), ["TF_CONFIG: cluster.worker[0]", "'70000'", "1 to 65535"]),
        (tf_config([2345, 2346], 2), ["TF_CONFIG: task.index 2 is out of range"]),
    ],
)
def test_a_malformed_variable_is_exit_2_before_any_work(tmp_path, synthetic_dir, no_tf, env,
                                                        needles):  # fmt: skip
    """Checked before TensorFlow loads (`no_tf`) and before any folder is made."""
    overrides = outputs(tmp_path, synthetic_dir)
    args = SWEEP
    if "TF_CONFIG" in env:
        args, overrides = ["train", str(SMOKE)], [*overrides, "runtime.distribute=multi_worker"]
    done = subprocess.run([*FMNIST, *args, *sets(overrides)], cwd=tmp_path, env={**no_tf, **env},
                          capture_output=True, text=True, timeout=LIMIT_S)  # fmt: skip
    assert done.returncode == 2, done.stderr
    one_line(done.stderr, *needles)
    assert not (tmp_path / "saved_models").exists()


def test_a_port_in_use_is_refused_before_serving(tmp_path, synthetic_dir, no_tf):
    """gRPC would share the port (SO_REUSEPORT): the chief and a multi_worker task refuse it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            (SWEEP, kt_env("chief", port), "KERASTUNER_ORACLE_PORT: port"),
            (["train", str(SMOKE)], tf_config([port, free_port()], 0), "TF_CONFIG: worker 0's"),
        ]
        for args, env, needle in cases:
            overrides = [*outputs(tmp_path, synthetic_dir), "runtime.distribute=multi_worker"]
            done = subprocess.run([*FMNIST, *args, *sets(overrides)], cwd=tmp_path,
                                  env={**no_tf, **env}, capture_output=True, text=True,
                                  timeout=LIMIT_S)  # fmt: skip
            assert done.returncode == 3, done.stderr
            one_line(done.stderr, needle, str(port), "already in use")
    assert not (tmp_path / "saved_models").exists()


def test_a_worker_says_whom_it_waits_for_and_gives_up(tmp_path, synthetic_dir, procs):
    port = free_port()
    overrides = [*outputs(tmp_path, synthetic_dir), "runtime.peer_wait_s=1"]
    procs.append(worker := Proc(tmp_path, "w", [*SWEEP, *sets(overrides)], kt_env("tuner0", port)))
    assert worker.end() == 3
    elapsed = time.monotonic() - worker.started
    first = worker.lines()[0]
    for needle in ("tuner0: waiting up to 1 s for the chief", f"127.0.0.1:{port}"):
        assert needle in first, first
    last_line(worker, "no chief answered", f"127.0.0.1:{port}", "runtime.peer_wait_s (1 s)")
    assert len(worker.lines()) == 2
    assert elapsed < 1 + 20, elapsed  # the bound, plus start-up on a busy machine
    assert not (tmp_path / "saved_models").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_ends_a_wait_at_once(tmp_path, synthetic_dir, procs, sig):
    port = free_port()
    args = [*SWEEP, *sets(outputs(tmp_path, synthetic_dir))]  # waits up to 600 s
    procs.append(worker := Proc(tmp_path, "w", args, kt_env("tuner0", port)))
    worker.wait_for("waiting up to 600 s for the chief")
    sent = time.monotonic()
    worker.p.send_signal(sig)
    assert worker.end(timeout=30) == 130
    assert time.monotonic() - sent < 10
    last_line(worker, f"{sig.name}: stopped")


def test_lone_processes_give_up_after_peer_wait_s(tmp_path, synthetic_dir, procs):
    """A chief with no worker, a multi_worker task whose peer never starts, and one stopped
    by SIGTERM while it waits: each names whom it waits for, where and how long."""
    wait = "runtime.peer_wait_s=2"
    kt_port, ports, ports2 = free_port(), [free_port(), free_port()], [free_port(), free_port()]
    chief_args = [*SWEEP, *sets([*outputs(tmp_path / "a", synthetic_dir), wait])]
    mw = [*outputs(tmp_path / "b", synthetic_dir), "runtime.distribute=multi_worker"]
    mw2 = [*outputs(tmp_path / "c", synthetic_dir), "runtime.distribute=multi_worker"]
    procs.append(chief := Proc(tmp_path, "chief", chief_args, kt_env("chief", kt_port)))
    train = ["train", str(SMOKE)]
    procs.append(alone := Proc(tmp_path, "mw", [*train, *sets([*mw, wait])], tf_config(ports, 0)))
    procs.append(stopped := Proc(tmp_path, "mw2", [*train, *sets(mw2)], tf_config(ports2, 1)))

    stopped.wait_for(f"worker 1: waiting up to 600 s for worker 0 at 127.0.0.1:{ports2[0]}")
    sent = time.monotonic()
    stopped.p.send_signal(signal.SIGTERM)  # TensorFlow has not taken SIGTERM over yet
    assert stopped.end(timeout=60) == 130
    assert time.monotonic() - sent < 30  # the line at once; TensorFlow's teardown after it
    last_line(stopped, "SIGTERM: stopped")

    assert alone.end() == 3
    assert f"worker 0: waiting up to 2 s for worker 1 at 127.0.0.1:{ports[1]}" in alone.lines()[0]
    last_line(alone, f"worker 1 at 127.0.0.1:{ports[1]} did not start", "peer_wait_s (2 s)")
    assert not (tmp_path / "b" / "saved_models").exists()

    assert chief.end() == 3
    announce = chief.lines()[0]
    assert f"chief: serving 2 trials at 127.0.0.1:{kt_port}; waiting up to 2 s" in announce
    last_line(chief, "no worker came within runtime.peer_wait_s (2 s)")


def test_workers_notice_a_dead_chief_within_peer_lost_s(tmp_path, synthetic_dir, procs):
    """SIGKILL the chief while its worker trains: the worker stops at the end of its batch,
    with one line, within runtime.peer_lost_s and a batch."""
    port = free_port()
    overrides = [*outputs(tmp_path, synthetic_dir), "train.epochs=200", "train.patience=null",
                 "runtime.peer_lost_s=2"]  # fmt: skip
    args = [*SWEEP, *sets(overrides)]
    procs.append(chief := Proc(tmp_path, "chief", args, kt_env("chief", port)))
    procs.append(worker := Proc(tmp_path, "w", args, kt_env("tuner0", port)))
    deadline = time.monotonic() + LIMIT_S
    root = tmp_path / "saved_models"
    while not list(root.glob("smoke-sweep-tuner0-*/smoke-c*/history.csv")):
        assert time.monotonic() < deadline and worker.p.poll() is None, worker.lines()
        time.sleep(0.1)
    chief.p.send_signal(signal.SIGKILL)
    chief.end()
    killed = time.monotonic()
    assert worker.end() == 3
    assert time.monotonic() - killed < 2 + 20, "the worker did not notice in time"
    last_line(worker, f"tuner0: the chief at 127.0.0.1:{port} stopped answering",
              "runtime.peer_lost_s, 2 s")  # fmt: skip


def test_multi_worker_sigterm_mid_fit_stops_one_and_its_peer_says_so(tmp_path, synthetic_dir,
                                                                     procs):  # fmt: skip
    """TensorFlow's runtime takes SIGTERM over when the strategy starts (for its preemption
    notifier); fmnist's handler is put back: worker 0 stops at a batch end (exit 130), and
    worker 1, whose collective loses its peer, says so in one line (exit 3), not exit 1."""
    ports = [free_port(), free_port()]
    extra = ["runtime.distribute=multi_worker", "train.epochs=100", "train.patience=null",
             "train.batch_size=16"]  # fmt: skip
    for i in (0, 1):
        args = ["train", str(SMOKE), *sets([*outputs(tmp_path / f"m{i}", synthetic_dir), *extra])]
        procs.append(Proc(tmp_path, f"w{i}", args, tf_config(ports, i)))
    first, second = procs
    deadline = time.monotonic() + LIMIT_S
    while not any('"epochs_done": 1' in p.read_text()
                  for p in (tmp_path / "m0" / "saved_models").glob("*/state.json")):  # fmt: skip
        assert time.monotonic() < deadline and first.p.poll() is None, first.lines()
        time.sleep(0.1)
    first.p.send_signal(signal.SIGTERM)
    assert first.end() == 130
    last_line(first, "SIGTERM: stopped after epoch", "resume with:")
    assert second.end() == 3
    last_line(second, "worker 1: a peer stopped answering during training")
