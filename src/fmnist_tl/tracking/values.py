"""What a run records, as MLflow takes it: params, metrics and tags, built from a run's files.

Params are every config key, dotted (`train.learning_rate`), each written as the schema types
it (`param_text`: a number as JSON writes it, true/false, null, a list or mapping as JSON, a
text key verbatim) and read back the same way (`param_value`). Epoch metrics are history.csv's
columns on one step counter across both stages (the epoch, as TensorBoard counts it), plus
`stage` (1 head, 2 finetune) and `epoch_seconds`; the result is metrics.json's test scores
(`test_accuracy`, `test_loss`, and `test_accuracy_without_flip` beside a flip-averaged test).
A run recorded while it trains and one recorded later by `fmnist track` hold the same values,
because both read them from the run folder.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import getpass
import json
from pathlib import Path
from typing import Any

from .. import metrics
from .._version import __version__
from ..config import Config, key_table
from ..config.fields import is_text_field
from ..config.schema import field_annotation
from ..errors import ConfigError, MissingFileError
from ..machine import machine, project_commit
from ..paths import open_regular
from ..records import FINETUNE, HEAD, RunMetrics
from .store import IDENTITY, KIND

STAGE_NUMBER = {HEAD: 1, FINETUNE: 2}  # the `stage` metric: where fine-tuning begins
SOURCE = "fmnist-tl"  # mlflow.source.name: what wrote the run
EPOCH_KEYS = (*metrics.logged(), "learning_rate")  # history.csv's columns, logged as they are


@functools.cache
def _leaves() -> frozenset[str]:
    return frozenset(k.key for k in key_table())


def flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as {dotted key: value}; a mapping that is a key's value (tune.space,
    sweep.grid) stays whole."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in _leaves():
            out.update(flatten(value, f"{key}."))
        else:
            out[key] = value
    return out


def param_text(value: Any) -> str:
    """A config value as an MLflow param: text (or a path) as it is, anything else as JSON."""
    if isinstance(value, str | Path):
        return str(value)
    return json.dumps(value)


def param_value(key: str, text: str) -> Any:
    """A param read back as the schema types `key` (the inverse of `param_text`)."""
    if text == "null":
        return None
    try:
        text_key = is_text_field(field_annotation(key.split("."), key))
    except ConfigError:  # a key this version does not know: JSON if it reads as JSON
        text_key = False
    if text_key:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def config_params(raw: dict[str, Any]) -> dict[str, str]:
    return {key: param_text(value) for key, value in flatten(raw).items()}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """history.csv's rows: stage as text, every other cell a number or "" (no value)."""
    try:
        with open_regular(path, "r", newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f))
        return [
            {k: v if k == "stage" or v in ("", None) else float(v) for k, v in r.items() if k}
            for r in raw
        ]
    except (OSError, ValueError) as exc:
        raise MissingFileError(f"{path}: unreadable history ({exc})") from None


def epoch_metrics(rows: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """(key, value, step) for every epoch: step is the epoch, counted across both stages."""
    out = []
    for row in rows:
        step = int(row["epoch"])
        for key in EPOCH_KEYS:
            if row.get(key) not in ("", None):
                out.append((key, float(row[key]), step))
        if row.get("seconds") not in ("", None):
            out.append(("epoch_seconds", float(row["seconds"]), step))
        out.append(("stage", float(STAGE_NUMBER.get(str(row.get("stage")), 0)), step))
    return out


def result_metrics(m: RunMetrics) -> list[tuple[str, float, int]]:
    """The test scores (with and without the test-time flip when it is on) and the run's
    totals, each at step 0."""
    out = [(f"test_{name}", float(value)) for name, value in m.test.values.items()]
    if m.test.accuracy_without_flip is not None:
        out.append(("test_accuracy_without_flip", float(m.test.accuracy_without_flip)))
    if (best := m.best_val_accuracy()) is not None:
        out.append(("best_val_accuracy", best))
    out.append(("epochs", float(sum(s.epochs_run for s in m.stages))))
    out.append(("wall_time_s", float(m.wall_time_s)))
    if "cpu_s" in m.timings:
        out.append(("cpu_s", float(m.timings["cpu_s"])))
    return [(key, value, 0) for key, value in out]


def machine_tags(info: dict[str, Any]) -> dict[str, str]:
    """machine.cpu, machine.cores, machine.gpus, machine.tensorflow, machine.system."""
    tags = {}
    for key in ("cpu", "cores", "gpus", "tensorflow", "system"):
        value = info.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "none"
        if value is not None:
            tags[f"machine.{key}"] = str(value)
    return tags


def result_tags(m: RunMetrics, run_dir: Path) -> dict[str, str]:
    """What metrics.json says the run was: seed, backbone, weights and their SHA-256, the
    machine, the versions, the test set-up, and the run folder."""
    tags: dict[str, Any] = {
        "seed": m.seed,
        "backbone": m.backbone,
        "weights": m.weights_used,
        "weights_sha256": m.weights_sha256,
        "test_flip": str(m.test.test_flip).lower(),
        "data.source": m.data.source if m.data else None,
        "fmnist.version": m.versions.get("fmnist_tl"),
        "run_dir": str(run_dir.resolve()),
    }
    texts = {key: str(value) for key, value in tags.items() if value is not None}
    return {**texts, **machine_tags(m.machine)}


def identity_tags(name: str, kind: str, folder: Path | None = None) -> dict[str, str]:
    """What finds a run again (its folder's name) and what wrote it."""
    tags = {IDENTITY: name, KIND: kind, "mlflow.source.name": SOURCE}
    tags["mlflow.source.type"] = "LOCAL"
    tags["fmnist.version"] = __version__
    if folder is not None:
        tags["run_dir"] = str(folder.resolve())
    with contextlib.suppress(KeyError, OSError):  # no user name in this container
        tags["mlflow.user"] = getpass.getuser()
    return tags


def code_tags() -> dict[str, str]:
    """The git commit of this fmnist-tl checkout, when it is one, and whether it is edited."""
    found = project_commit()
    if found is None:
        return {}
    commit, dirty = found
    return {"mlflow.source.git.commit": commit, "fmnist.git_dirty": str(dirty).lower()}


def start_tags(config: Config, folder: Path, kind: str = "run") -> dict[str, str]:
    """A run's tags when it starts: who it is, its seed and backbone, the code, the machine.
    The weights it actually loaded and their SHA-256 come with its result."""
    tags = identity_tags(folder.name, kind, folder)
    tags.update(seed=str(config.seed), backbone=config.model.backbone)
    tags["weights"] = config.model.weights
    return {**tags, **code_tags(), **machine_tags(machine())}
