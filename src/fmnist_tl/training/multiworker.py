"""MultiWorkerMirroredStrategy with Keras 3: its cluster checked, its wait bounded, and one
workaround, applied only when it is used.

The cluster is TF_CONFIG's, checked before any work (`cluster`, `check`): JSON; a cluster of
chief and worker addresses, each host:port with a port from 1 to 65535, none twice; a task whose
type and index name one of them (exit 2 naming TF_CONFIG); this task's port free (exit 3).
Building the strategy waits, inside TensorFlow and holding the interpreter, until every peer
has started; so the peers first meet on their TF_CONFIG ports (`_rendezvous`): the wait says
whom it waits for, where and how long, gives up after runtime.peer_wait_s (exit 3), and a
signal ends it at once (exit 130). TensorFlow's own start then runs in a thread, bounded by the
same deadline; its runtime takes SIGTERM over (it only notes it, for preemption), so
lifecycle's handler is put back. A thread left inside TensorFlow cannot be cancelled: the
process then ends with os._exit (lifecycle.abandon), after its line. A peer that dies during
the fit fails the next collective (UnavailableError): that is `lost_peer`, exit 3, not a bug.

Keras 3's TensorFlow trainer builds a model under a strategy by taking the first batch and
averaging it over replicas with `strategy.reduce("MEAN", batch)` (`_maybe_symbolic_build`).
With more than one worker, MultiWorkerMirroredStrategy's reduce does not take a nested batch
(keras-team/keras#20585: the TensorFlow multi-worker tutorial fails the same way), so `fit`
stops before its first step. Only the batch's shapes and dtypes matter for the build, so the
workaround builds from this worker's first replica's part of the batch instead. Then each
step's logs (scalar loss and metrics) are averaged over workers with `reduce("MEAN", axis=0)`,
which a scalar has no axis for; scalars are averaged with axis=None instead. Both are applied
once, for the process that asked for `runtime.distribute: multi_worker`; every other strategy
keeps Keras's own path.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import lifecycle, net, progress
from ..errors import ConfigError, Unreachable, first_line

_PATCHED = False
JOBS = ("chief", "worker")  # the task types MultiWorkerMirroredStrategy trains with
_PEER_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


@dataclass(frozen=True)
class Cluster:
    """TF_CONFIG, checked: every task's address, and which one this process is."""

    tasks: dict[str, tuple[str, int]]  # "worker 0" -> (host, port)
    me: str

    @property
    def peers(self) -> dict[str, tuple[str, int]]:
        return {name: a for name, a in self.tasks.items() if name != self.me}


def cluster() -> Cluster | None:
    """TF_CONFIG parsed and checked (ConfigError naming TF_CONFIG), or None when unset."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"TF_CONFIG: not JSON ({first_line(exc)}); {_EXAMPLE}") from None
    jobs = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(jobs, dict) or not jobs or not isinstance(task, dict):
        raise ConfigError(f"TF_CONFIG: needs a 'cluster' and a 'task'; {_EXAMPLE}")
    tasks: dict[str, tuple[str, int]] = {}
    for job, addresses in jobs.items():
        if job not in JOBS or not isinstance(addresses, list) or not addresses:
            raise ConfigError(
                f"TF_CONFIG: cluster.{job} must be a list of host:port addresses of "
                f"{' or '.join(JOBS)} tasks; {_EXAMPLE}"
            )
        for i, text_address in enumerate(addresses):
            where = f"TF_CONFIG: cluster.{job}[{i}]"
            address = net.host_port(str(text_address), where)
            if address in tasks.values():
                raise ConfigError(f"{where}: {net.address(*address)} is listed twice")
            tasks[f"{job} {i}"] = address
    kind, index = task.get("type"), task.get("index")
    if kind not in jobs or isinstance(index, bool) or not isinstance(index, int):
        raise ConfigError(
            f"TF_CONFIG: task must name a job of the cluster ({', '.join(jobs)}) and an "
            f"integer index, got {json.dumps(task)[:80]}"
        )
    if not 0 <= index < len(jobs[kind]):
        raise ConfigError(
            f"TF_CONFIG: task.index {index} is out of range: cluster.{kind} has "
            f"{len(jobs[kind])} addresses (0..{len(jobs[kind]) - 1})"
        )
    return Cluster(tasks, f"{kind} {index}")


_EXAMPLE = (
    'e.g. {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def check() -> Cluster | None:
    """Before any work: TF_CONFIG (exit 2) and this task's port free on this machine (exit 3;
    TensorFlow's server would take it with SO_REUSEPORT). Without TF_CONFIG, one worker."""
    found = cluster()
    if found is not None:
        net.check_free("0.0.0.0", found.tasks[found.me][1], f"TF_CONFIG: {found.me}'s port")
    return found


def build(make: Callable[[], Any], wait_s: int) -> Any:
    """`make()` the strategy; with peers, after `_rendezvous`, in a thread: bounded again."""
    found = check()
    if found is None or not found.peers:
        return make()
    deadline = time.monotonic() + wait_s
    _rendezvous(found, wait_s, deadline)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["strategy"] = make()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="fmnist-cluster", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            lifecycle.reinstall()  # TensorFlow's runtime takes SIGTERM over while it starts
            thread.join(0.1)
            if thread.is_alive() and time.monotonic() > deadline:
                raise Unreachable(
                    f"{found.me}: the cluster did not start within runtime.peer_wait_s "
                    f"({wait_s} s); start every worker again"
                )
    except BaseException:
        lifecycle.abandon()  # the thread stays inside TensorFlow: end with os._exit
        raise
    lifecycle.reinstall()
    if "error" in box:
        raise box["error"]
    return box["strategy"]


def _rendezvous(found: Cluster, wait_s: int, deadline: float) -> None:
    """Hold this task's port with a plain listener until every peer's port answers.

    TensorFlow's own wait for peers blocks the whole interpreter (no signal, no timeout can
    act), so it starts only once every peer is there: each task listens on its TF_CONFIG port
    (a peer's connect then succeeds), and lets it go to TensorFlow when it has reached them
    all. Said in one line; a signal ends the wait at once; runtime.peer_wait_s bounds it."""
    pending = dict(found.peers)
    whom = ", ".join(f"{name} at {net.address(*a)}" for name, a in pending.items())
    progress.say(
        f"{found.me}: waiting up to {wait_s} s for {whom} (TF_CONFIG; runtime.peer_wait_s)"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", found.tasks[found.me][1]))
        listener.listen(64)  # never accepted: the kernel completes a peer's connect
        while pending:
            for name, (host, port) in list(pending.items()):
                with contextlib.suppress(OSError):
                    socket.create_connection((host, port), timeout=0.5).close()
                    del pending[name]
            if pending and time.monotonic() > deadline:
                missing = ", ".join(f"{n} at {net.address(*a)}" for n, a in pending.items())
                raise Unreachable(
                    f"{found.me}: {missing} did not start within runtime.peer_wait_s "
                    f"({wait_s} s); start each with the same command and its own TF_CONFIG "
                    "task, or check TF_CONFIG's addresses"
                )
            if pending:
                time.sleep(0.2)


def lost_peer(exc: BaseException, distribute: str) -> Unreachable | None:
    """A failure of a multi-worker collective because a peer stopped answering, as one line
    (`distribute`: runtime.distribute; TensorFlow's own class name for the strategy differs)."""
    if distribute != "multi_worker" or type(exc).__name__ not in _PEER_ERRORS:
        return None
    found = cluster()
    me = found.me if found is not None else "this worker"
    return Unreachable(
        f"{me}: a peer stopped answering during training ({type(exc).__name__}); this worker "
        "stopped too: start every worker again (runtime.distribute: multi_worker)"
    )


def patch_keras() -> None:
    """Build models under a multi-worker strategy from one replica's batch (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as trainer_module
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    def local(value: Any, strategy: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(lambda v: local(v, strategy), next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer_module.reduce_per_replica = _scalar_safe(trainer_module, local)
    _PATCHED = True


def _scalar_safe(trainer_module: Any, local: Any) -> Any:
    """Keras's reduce_per_replica, with scalars averaged over workers on no axis."""
    from keras.src import tree

    original = trainer_module.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        multi = trainer_module._collective_all_reduce_multi_worker(strategy)
        if not multi or reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)

        def one(v: Any) -> Any:
            rank = local(v, strategy).shape.rank
            return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

        return tree.map_structure(one, values)

    return reduce_per_replica
