"""The chief of Keras Tuner's distributed mode: it serves the oracle over gRPC and waits for its
workers, never forever.

It says where it serves and how long it waits for workers; it notes when it last heard from
each (every call, and the heartbeat a worker sends every few seconds while it trains,
ktdist.Watch, names its tuner id); it gives up (exit 3) when no worker has been heard from for
runtime.peer_wait_s, or when every unfinished trial is held by a worker silent for
runtime.peer_lost_s. SIGINT/SIGTERM/SIGHUP stop it at once (exit 130). The trials that
finished are on record either way: the caller writes them after every trial (`on_end`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import lifecycle, progress
from ..errors import Interrupted, Unreachable
from .ktdist import WHO, Role, prepare

POLL_S = 0.2  # how often the chief checks whether every worker has finished


def serve(oracle: Any, on_end: Callable[[Any, str], None], runtime: Any, trials: int) -> None:
    """Run the chief: serve `oracle` until every worker was told to stop and none is running.

    `on_end(trial, tuner_id)` is called after the oracle has recorded each finished trial.
    Keras Tuner's own `start_server` does the same but checks every 20 s once a worker has
    been stopped, and waits for workers forever; this checks every POLL_S, so the chief ends
    when the last worker does, and gives up on workers as the module says (exit 3).
    """
    import grpc
    from keras_tuner.src import protos

    r = prepare(runtime)  # the port again: a second chief may have taken it meanwhile
    assert r is not None and r.chief
    _hook_end_trial(oracle, on_end)
    server = grpc.server(_one_thread())
    servicer = _servicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(r.address) == 0:
        raise Unreachable(f"KERASTUNER_ORACLE_PORT: cannot listen on {r.address}; pick a free port")
    server.start()
    progress.say(
        f"chief: serving {trials} trials at {r.address}; waiting up to {runtime.peer_wait_s} s "
        "for workers (the same command with KERASTUNER_TUNER_ID=tuner0, tuner1, ...; "
        "runtime.peer_wait_s)"
    )
    try:
        while not servicer.done():
            time.sleep(POLL_S)
            _check_workers(servicer, r, runtime)
    except KeyboardInterrupt:
        raise Interrupted(
            f"{lifecycle.stopping() or 'interrupted'}: the chief stopped serving trials; the "
            "workers' finished trials are on record"
        ) from None
    finally:
        server.stop(grace=1)


def _hook_end_trial(oracle: Any, on_end: Callable[[Any, str], None]) -> None:
    original = oracle.end_trial

    def end_trial(trial: Any) -> None:
        ongoing = oracle.ongoing_trials.items()
        ran_on = next((t for t, o in ongoing if o.trial_id == trial.trial_id), "unknown")
        original(trial)
        on_end(oracle.trials[trial.trial_id], ran_on)

    oracle.end_trial = end_trial


def _servicer(oracle: Any) -> Any:
    """Keras Tuner's OracleServicer that also notes when it last heard from each worker."""
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    class Servicer(OracleServicer):
        def __init__(self) -> None:
            super().__init__(oracle)
            self.started = time.monotonic()
            self.seen: dict[str, float] = {}  # tuner id (or gRPC peer) -> last call
            self.peers: dict[str, str] = {}  # gRPC peer -> tuner id

        def heard(self, request: Any, context: Any) -> None:
            peer = context.peer()
            who = dict(context.invocation_metadata() or ()).get(WHO)
            who = who or getattr(request, "tuner_id", "") or self.peers.get(peer, "")
            if who:
                self.peers[peer] = who
            self.seen[who or peer] = time.monotonic()

        def done(self) -> bool:
            return bool(self.stop_triggered and exit_chief(oracle))

    for name in ("GetSpace", "UpdateSpace", "CreateTrial", "UpdateTrial", "EndTrial",
                 "GetTrial", "GetBestTrials"):  # fmt: skip
        setattr(Servicer, name, _noting(getattr(OracleServicer, name)))
    return Servicer()


def _noting(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, request: Any, context: Any) -> Any:
        self.heard(request, context)
        return method(self, request, context)

    return call


def _check_workers(servicer: Any, r: Role, runtime: Any) -> None:
    """Give up (exit 3) on workers that never came, or on silent ones holding the last trials."""
    now = time.monotonic()
    last = max(servicer.seen.values(), default=servicer.started)
    if now - last > runtime.peer_wait_s:
        heard = "no worker came" if not servicer.seen else "no worker was heard from"
        raise Unreachable(
            f"chief at {r.address}: {heard} within runtime.peer_wait_s ({runtime.peer_wait_s} "
            "s); start workers with KERASTUNER_TUNER_ID=tuner0, tuner1, ... (the finished "
            "trials are on record)"
        )
    holders = list(servicer.oracle.ongoing_trials)  # tuner ids with a trial unfinished
    if not (servicer.stop_triggered and holders):
        return
    silent = [
        t for t in holders if now - servicer.seen.get(t, servicer.started) > runtime.peer_lost_s
    ]
    if len(silent) == len(holders):
        raise Unreachable(
            f"chief at {r.address}: {', '.join(sorted(silent))} stopped answering with a trial "
            f"unfinished (silent for over runtime.peer_lost_s, {runtime.peer_lost_s} s); the "
            "finished trials are on record"
        )


def _one_thread() -> Any:
    from concurrent import futures

    return futures.ThreadPoolExecutor(max_workers=1)  # the oracle is not thread-safe
