"""The MLflow store a run or study writes to: every call to MLflow goes through `Store`.

MLflow loads on the first `Store.open` (with output.tracking: none nothing here imports it),
with its own logging held at errors unless `fmnist --verbose`, a server that does not answer
retried for seconds rather than MLflow's minutes, and its usage telemetry off (fmnist runs
offline; MLFLOW_* variables already set win). Any failure inside MLflow (a server down, a
database that cannot be written, a deleted experiment, a bug) comes out as `TrackingFailure`,
one line naming the store; the trackers turn it into "not recorded", never into a lost run.
A store that failed is not tried again by the same process (`down`): one timeout, not one a
run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .. import tfenv
from ..config import OutputConfig
from ..errors import MissingFileError, first_line

T = TypeVar("T")
MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # MLflow's 7, with backoff, wait four minutes
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
# MLflow 3's UI opens an experiment of this kind on its runs table, not on GenAI traces.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
ARTIFACTS = "mlartifacts"  # beside a SQLite store: the artifacts of its runs
IDENTITY = "fmnist.run_id"  # the tag a run, group, study, search or trial is found again by
KIND = "fmnist.kind"  # run, trial, repeat, sweep or tune
PARENT = "mlflow.parentRunId"  # MLflow's own: the UI nests a child under its parent
NOTE = "mlflow.note.content"  # MLflow's own: the run's description, Markdown
RECORDED = "fmnist.recorded"  # "complete" once every file of a run is in its MLflow run
MESSAGE_CHARS = 240  # of a failure's reason: SQLAlchemy's run to many lines and links
_BATCH = {"params": 100, "tags": 100, "metrics": 1000}  # MLflow's log_batch limits
_open: dict[tuple[str, str], Store] = {}
down: dict[str, str] = {}  # store URI -> why it failed, for the rest of this process


class TrackingFailure(Exception):
    """MLflow could not be reached or written; the message is one line naming the store."""


def installed() -> bool:
    """Whether MLflow can be imported (found without importing it)."""
    return importlib.util.find_spec("mlflow") is not None


def require(output: OutputConfig, what: str = "output.tracking: mlflow") -> None:
    """Tracking asked for without MLflow installed: one line, exit 3, before any work."""
    if output.tracking == "mlflow" and not installed():
        raise MissingFileError(
            f"{what} needs MLflow, which is not installed; install it with pip install -e "
            "'.[mlflow]' (or pip install mlflow), or set output.tracking: none"
        )


def experiment_of(output: OutputConfig) -> str:
    """output.experiment, else the config's name."""
    return output.experiment or output.name or "default"


def _mlflow() -> Any:
    for name, value in MLFLOW_ENV.items():
        os.environ.setdefault(name, value)
    import mlflow

    if not tfenv.verbose():  # its INFO lines (database set-up) and warnings are not ours
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return mlflow


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        if not tfenv.verbose():
            warnings.simplefilter("ignore")
        yield


def guarded(uri: str, what: str, call: Callable[[], T]) -> T:
    """`call()`, any failure as TrackingFailure("URI: cannot WHAT (reason)")."""
    try:
        with _quiet():
            return call()
    except TrackingFailure:
        raise
    except Exception as exc:  # MLflow's, SQLAlchemy's, requests', OSError: never the run's
        raise TrackingFailure(f"MLflow at {uri}: cannot {what} ({reason(exc)})") from None


_NETWORK = {  # what requests/urllib3 say, as a user would say it
    "Connection refused": "connection refused: is the server running?",
    "timed out": "no answer in time",
    "Failed to resolve": "unknown host",
    "Name or service not known": "unknown host",
    "Max retries exceeded": "no answer",
}


def reason(exc: BaseException) -> str:
    """Why a call failed, in one short line (MLflow wraps the network's words in a page)."""
    text = " ".join(str(exc).split())
    for needle, words in _NETWORK.items():
        if needle in text:
            return words
    return " ".join(first_line(exc).split())[:MESSAGE_CHARS]


def artifact_root(uri: str) -> str | None:
    """Where a SQLite store keeps its runs' files: a folder beside the database (MLflow's own
    default is ./mlruns in whatever folder the command ran from). A server decides its own."""
    if not uri.startswith("sqlite:///"):
        return None
    return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / ARTIFACTS)


class Store:
    """One experiment in one MLflow store, through MlflowClient (no global active run)."""

    def __init__(self, client: Any, uri: str, experiment: str, experiment_id: str) -> None:
        self.client, self.uri = client, uri
        self.experiment, self.experiment_id = experiment, experiment_id

    @classmethod
    def open(cls, uri: str, experiment: str) -> Store:
        """The store at `uri`, its experiment `experiment` made if new; TrackingFailure."""
        if uri in down:
            raise TrackingFailure(down[uri])
        if (uri, experiment) in _open:
            return _open[(uri, experiment)]
        try:
            store = guarded(uri, "reach the store", lambda: cls._connect(uri, experiment))
        except TrackingFailure as exc:
            down[uri] = str(exc)
            raise
        _open[(uri, experiment)] = store
        return store

    @classmethod
    def _connect(cls, uri: str, experiment: str) -> Store:
        client = _mlflow().MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                client.create_experiment(
                    experiment, artifact_location=artifact_root(uri), tags=EXPERIMENT_TAGS
                )
            except Exception:
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                # else another process made it meanwhile (a worker, a second run)
            found = found or client.get_experiment_by_name(experiment)
        if found.lifecycle_stage == "deleted":
            raise TrackingFailure(
                f"MLflow at {uri}: experiment {experiment!r} is deleted; restore it (mlflow "
                "experiments restore) or choose another output.experiment"
            )
        return cls(client, uri, experiment, found.experiment_id)

    def call(self, what: str, call: Callable[[], T]) -> T:
        """`call()` against this store; a failure marks it down for this process."""
        if self.uri in down:
            raise TrackingFailure(down[self.uri])
        try:
            return guarded(self.uri, what, call)
        except TrackingFailure as exc:
            down[self.uri] = str(exc)
            raise

    def find(self, identity: str, kind: str | None = None) -> Any | None:
        """The newest run in this experiment tagged with `identity` (and `kind`), or None."""
        return self.find_tagged({IDENTITY: identity, **({KIND: kind} if kind else {})})

    def find_tagged(self, tags: dict[str, str], running: bool = False) -> Any | None:
        """The newest run with these tag values (and still running), or None."""
        terms = []
        for key, value in tags.items():
            quote = "'" if "'" not in value else '"'
            if quote in value:
                return None  # a value holding both quotes cannot be searched for
            terms.append(f"tags.`{key}` = {quote}{value}{quote}")
        if running:
            terms.append("attributes.status = 'RUNNING'")
        runs = self.call(
            "search its runs",
            lambda: self.client.search_runs(
                [self.experiment_id],
                " and ".join(terms),
                max_results=1,
                order_by=["attributes.start_time DESC"],
            ),
        )
        return runs[0] if runs else None

    def get(self, run_id: str) -> Any | None:
        """The run `run_id` of this experiment, or None (another store, deleted, or gone)."""
        runs = self.call(
            "search its runs",
            lambda: self.client.search_runs(
                [self.experiment_id], f"attributes.run_id = '{run_id}'", max_results=1
            ),
        )
        return runs[0] if runs else None

    def create(self, name: str, tags: dict[str, str]) -> str:
        run = self.call(
            "create a run",
            lambda: self.client.create_run(self.experiment_id, run_name=name, tags=tags),
        )
        return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        *,
        params: dict[str, str] | None = None,
        metrics: list[tuple[str, float, int]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Params, metrics (key, value, step) and tags, in batches of MLflow's size."""
        from mlflow.entities import Metric, Param, RunTag

        stamp = _now_ms()
        items = {
            "params": [Param(k, v) for k, v in (params or {}).items()],
            "metrics": [Metric(k, v, stamp, s) for k, v, s in metrics or []],
            "tags": [RunTag(k, v) for k, v in (tags or {}).items()],
        }
        for kind, entities in items.items():
            size = _BATCH[kind]
            for i in range(0, len(entities), size):
                batch = {kind: entities[i : i + size]}
                self.call("log to a run", lambda b=batch: self.client.log_batch(run_id, **b))

    def steps(self, run_id: str, key: str) -> set[int]:
        """The steps at which `key` was logged in the run."""
        history = self.call("read a metric", lambda: self.client.get_metric_history(run_id, key))
        return {int(m.step) for m in history}

    def upload(self, run_id: str, files: list[tuple[Path, str | None]]) -> None:
        """Each (file, folder in the run's artifacts); an existing one is replaced."""
        for path, folder in files:
            self.call(
                f"store {path.name}",
                lambda p=path, f=folder: self.client.log_artifact(run_id, str(p), f),
            )

    def set_status(self, run_id: str, status: str) -> None:
        """RUNNING again (a resumed run or study), or its end: FINISHED, FAILED, KILLED."""
        if status == "RUNNING":
            self.call("update a run", lambda: self.client.update_run(run_id, status=status))
        else:
            self.call("end a run", lambda: self.client.set_terminated(run_id, status))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
