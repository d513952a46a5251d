"""Keras Tuner's distributed mode, shared by `fmnist tune` and `fmnist sweep`.

Every machine runs the same command with three environment variables (Keras Tuner's own):
KERASTUNER_TUNER_ID ("chief" on one machine, "tuner0", "tuner1", ... on the others),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (where the chief listens). The chief holds the
oracle and serves it over gRPC (Keras Tuner's `OracleServicer`); it runs no trial. A worker's
tuner asks it for trials, runs each with this tool's own training, and reports the scores. The
chief learns of each finished trial through the oracle's `end_trial`, which `serve` hooks, so
it can write the leaderboard or study after every trial. Only numbers travel: a trial's
hyperparameters and metrics (the Trial proto), never files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, Interrupted
from ..records import TrialRecord

ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
PROJECT = "keras_tuner"  # Keras Tuner's own project folder inside a tune or study folder
POLL_S = 0.2  # how often the chief checks whether every worker has finished


def active() -> bool:
    """Distributed mode is on: KERASTUNER_ORACLE_IP is set (and then so must the others be)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return False
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"KERASTUNER_ORACLE_IP is set but {missing[0]} is not; distributed mode needs "
            "KERASTUNER_TUNER_ID (chief or tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and "
            "KERASTUNER_ORACLE_PORT on every machine"
        )
    return True


def tuner_id() -> str:
    return os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


def is_chief() -> bool:
    return active() and "chief" in tuner_id()


def is_worker() -> bool:
    return active() and not is_chief()


def oracle_address() -> str:
    """The chief's ip:port: what every process of one distributed search shares."""
    return f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"


def folder_name(name: str) -> str:
    """The chief's folder keeps the plain name; a worker's names its tuner id."""
    return f"{name}-{tuner_id()}" if is_worker() else name


def serve(oracle: Any, on_end: Callable[[Any, str], None]) -> None:
    """Run the chief: serve `oracle` until every worker was told to stop and none is running.

    `on_end(trial, tuner_id)` is called after the oracle has recorded each finished trial.
    Keras Tuner's own `start_server` does the same but checks every 20 s once a worker has
    been stopped; this checks every POLL_S, so the chief ends when the last worker does.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    original = oracle.end_trial

    def end_trial(trial: Any) -> None:
        ongoing = oracle.ongoing_trials.items()
        ran_on = next((t for t, o in ongoing if o.trial_id == trial.trial_id), "unknown")
        original(trial)
        on_end(oracle.trials[trial.trial_id], ran_on)

    oracle.end_trial = end_trial
    address = oracle_address()
    server = grpc.server(_one_thread())
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise ConfigError(f"KERASTUNER_ORACLE_PORT: cannot listen on {address}; pick a free port")
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(oracle)):
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted: the chief stopped serving trials; the workers' finished trials are "
            "on record"
        ) from None
    finally:
        server.stop(grace=1)


def _one_thread() -> Any:
    from concurrent import futures

    return futures.ThreadPoolExecutor(max_workers=1)  # the oracle is not thread-safe


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
