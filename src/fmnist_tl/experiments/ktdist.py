"""Keras Tuner's distributed mode, shared by `fmnist tune` and `fmnist sweep`.

Every machine runs the same command with three environment variables (Keras Tuner's own):
KERASTUNER_TUNER_ID ("chief" on one machine, "tuner0", "tuner1", ... on the others),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (where the chief listens). The chief holds the
oracle and serves it over gRPC (Keras Tuner's `OracleServicer`); it runs no trial. A worker's
tuner asks it for trials, runs each with this tool's own training, and reports the scores. The
chief (ktchief.py) learns of each finished trial through the oracle's `end_trial`, which its
`serve` hooks, so it can write the leaderboard or study after every trial. Only numbers travel:
a trial's hyperparameters and metrics (the Trial proto), never files.

No wait is silent or endless (`prepare`, before any work): the variables are checked first
(exit 2, naming the variable); the chief refuses a port in use (exit 3); a worker says whom it
waits for and gives up after runtime.peer_wait_s. Then each side watches the other: a worker
calls the chief every few seconds (`_Watch`, a heartbeat that names it), so the chief knows its
workers are alive while they train, and a worker whose chief stays silent for
runtime.peer_lost_s stops at the end of its batch (lifecycle.fail) and exits 3. The chief gives
up on its workers likewise (ktchief.py). SIGINT/SIGTERM/SIGHUP end any wait at once.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import lifecycle, net, progress
from ..errors import ConfigError, Unreachable
from ..records import TrialRecord

ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
PROJECT = "keras_tuner"  # Keras Tuner's own project folder inside a tune or study folder
WHO = "fmnist-tuner-id"  # gRPC metadata: the worker a heartbeat comes from
GET_SPACE = "/keras_tuner.Oracle/GetSpace"  # the cheapest call the chief answers: the heartbeat
_TUNER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # it names a worker's folder
_watch: dict[str, Watch] = {}  # this process's heartbeat to its chief, while it works
# gRPC retries a refused connection after a backoff that grows to 2 minutes: a worker started
# long before its chief would connect that long after the chief came. At most a second instead.
RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class Role:
    """This process in distributed mode: its tuner id and where the chief listens."""

    tuner_id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return net.address(self.host, self.port)

    @property
    def chief(self) -> bool:
        return "chief" in self.tuner_id


def role() -> Role | None:
    """Keras Tuner's variables, parsed and checked (ConfigError naming the variable), or None
    when none is set. Keras Tuner reads them again itself, so they are written back normalised
    (a port without leading zeros, an IPv6 address in brackets)."""
    if not any(name in os.environ for name in ENV):
        return None
    values = {name: os.environ.get(name, "").strip() for name in ENV}
    missing = [name for name, value in values.items() if not value]
    if missing:
        given = next(name for name in ENV if name not in missing)
        raise ConfigError(
            f"{missing[0]} is not set but {given} is; distributed mode needs "
            "KERASTUNER_TUNER_ID (chief or tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and "
            "KERASTUNER_ORACLE_PORT on every machine (or none of them)"
        )
    tid = values["KERASTUNER_TUNER_ID"]
    if not _TUNER_ID.fullmatch(tid):
        raise ConfigError(
            f"KERASTUNER_TUNER_ID: {net.shown(tid)} is no tuner id; use chief on one machine "
            "and tuner0, tuner1, ... on the others (letters, digits, _ . -)"
        )
    host = net.host(values["KERASTUNER_ORACLE_IP"], "KERASTUNER_ORACLE_IP")
    port = net.port(values["KERASTUNER_ORACLE_PORT"], "KERASTUNER_ORACLE_PORT")
    os.environ["KERASTUNER_ORACLE_IP"] = f"[{host}]" if ":" in host else host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
    return Role(tid, host, port)


def active() -> bool:
    """Distributed mode is on: Keras Tuner's variables are set (and then checked)."""
    return role() is not None


def tuner_id() -> str:
    return os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


def is_chief() -> bool:
    r = role()
    return r is not None and r.chief


def is_worker() -> bool:
    r = role()
    return r is not None and not r.chief


def oracle_address() -> str:
    """The chief's ip:port: what every process of one distributed search shares."""
    r = role()
    if r is None:
        raise ConfigError("not in distributed mode: KERASTUNER_TUNER_ID and its peers are unset")
    return r.address


def folder_name(name: str) -> str:
    """The chief's folder keeps the plain name; a worker's names its tuner id."""
    return f"{name}-{tuner_id()}" if is_worker() else name


def prepare(runtime: Any) -> Role | None:
    """Before any work (the CLI calls it before TensorFlow loads, the API again): the variables
    checked; the chief's port checked free; a worker connected to its chief (or exit 3 after
    runtime.peer_wait_s) and watching it from then on."""
    r = role()
    if r is None:
        return None
    if r.chief:
        net.check_free(r.host, r.port, "KERASTUNER_ORACLE_PORT", "KERASTUNER_ORACLE_IP")
    elif "watch" not in _watch:
        _wait_for_chief(r, runtime.peer_wait_s)
        _watch["watch"] = Watch(r, runtime.peer_lost_s)
    return r


def _wait_for_chief(r: Role, wait_s: int) -> None:
    """Say whom this worker waits for, where and how long; return when the chief answers."""
    import grpc

    progress.say(
        f"{r.tuner_id}: waiting up to {wait_s} s for the chief at {r.address} "
        "(KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT; runtime.peer_wait_s)"
    )
    deadline = time.monotonic() + wait_s
    with grpc.insecure_channel(r.address, options=RECONNECT) as channel:
        call = channel.unary_unary(GET_SPACE)
        while (left := deadline - time.monotonic()) > 0:
            try:  # short calls: a signal ends the wait at once
                call(b"", timeout=min(1.0, left), wait_for_ready=True, metadata=_who(r))
                return
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise Unreachable(
                        f"{r.tuner_id}: {r.address} answered, but not as a Keras Tuner chief "
                        f"({exc.code().name}); check KERASTUNER_ORACLE_IP and "
                        "KERASTUNER_ORACLE_PORT"
                    ) from None
    raise Unreachable(
        f"{r.tuner_id}: no chief answered at {r.address} within runtime.peer_wait_s ({wait_s} s); "
        "start it (the same command with KERASTUNER_TUNER_ID=chief) or check "
        "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT"
    )


def _who(r: Role) -> tuple[tuple[str, str], ...]:
    return ((WHO, r.tuner_id),)


class Watch:
    """A worker's heartbeat to its chief, on the channel its tuner's calls use too.

    Every few seconds it calls the chief; when the chief has not answered for `lost_s`, it
    closes the channel (a call under way fails at once) and stops the process
    (lifecycle.fail: at the end of the batch while a trial trains)."""

    def __init__(self, r: Role, lost_s: int) -> None:
        import grpc

        self.role, self.lost_s = r, lost_s
        self.channel = grpc.insecure_channel(r.address)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="fmnist-heartbeat", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        import grpc

        call = self.channel.unary_unary(GET_SPACE)
        interval, last = min(2.0, self.lost_s / 4), time.monotonic()
        while not self.stopped.wait(interval):
            try:
                call(b"", timeout=self.lost_s, metadata=_who(self.role))
                last = time.monotonic()
            except (grpc.RpcError, ValueError):  # ValueError: the channel was closed
                if self.stopped.is_set() or time.monotonic() - last <= self.lost_s:
                    continue
                r = self.role
                lifecycle.fail(
                    Unreachable(
                        f"{r.tuner_id}: the chief at {r.address} stopped answering (silent for "
                        f"over runtime.peer_lost_s, {self.lost_s} s); this worker stopped, its "
                        "finished trials are in its own folder"
                    )
                )
                self.channel.close()
                return

    def stop(self) -> None:
        self.stopped.set()


def work(tuner: Any, search: Callable[[], None], runtime: Any) -> None:
    """A worker's search, its calls on the watched channel and bounded by runtime.peer_wait_s
    (Keras Tuner's own bound is an hour); a chief lost meanwhile is the failure raised."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_client

    r = prepare(runtime)
    assert r is not None and not r.chief
    watch = _watch["watch"]
    oracle_client.TIMEOUT = runtime.peer_wait_s
    tuner.oracle.stub = protos.get_service_grpc().OracleStub(watch.channel)
    try:
        search()
    except BaseException as exc:
        if (failure := lifecycle.failure()) is not None:
            raise failure from None
        if isinstance(exc, grpc.RpcError):
            raise Unreachable(
                f"{r.tuner_id}: the chief at {r.address} failed a call: {exc.code().name}: "
                f"{exc.details()}"
            ) from None
        raise
    finally:
        watch.stop()
        del _watch["watch"]


def metric(trial: Any, name: str) -> float | None:
    """A metric a worker reported for `trial`, or None."""
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_last_value(name)
    return None if value is None else float(value)


def trial_record(trial: Any, values: dict[str, Any], objective: str, ran_on: str) -> TrialRecord:
    """A `fmnist tune` trial as the chief knows it: the values and the numbers reported."""
    record = TrialRecord(int(trial.trial_id) + 1, values)
    for key in ("val_accuracy", "val_loss", "seconds", "epochs_run", "best_epoch"):
        value = metric(trial, key)
        setattr(record, key, None if value is None or value != value else value)  # NaN: None
    record.epochs_run = int(record.epochs_run or 0)
    record.best_epoch = int(record.best_epoch) if record.best_epoch else None
    record.objective = getattr(record, objective)
    if record.objective is None:
        record.status = "failed"
        record.message = f"no finite {objective} came back (see {ran_on}'s leaderboard)"
    return record
