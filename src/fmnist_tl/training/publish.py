"""What a finished run publishes in output.dir: `latest.keras` always, `best.keras` if better.

    latest.keras, latest.config.yaml, latest.json   the model of the last run that completed
    best.keras, best.config.yaml, best.json         the best test accuracy on one test setup

`best.keras` is replaced only by a model with a higher test accuracy on the same test setup
(the same test images and labels, by SHA-256, and the same flip setting), so it means what
its name says. The JSON beside each model records the run, its test accuracy, its setup and
the model's SHA-256. Every file is replaced atomically, and the compare-and-replace runs under
an exclusive flock on `.publish.lock`, so two runs that finish at the same moment leave the
better of the two, and a reader always finds a whole, loadable model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import MissingFileError
from ..layout import PUBLISH_LOCK, PUBLISHED, RunPaths
from ..paths import read_text
from .splits import Splits

LOCK = PUBLISH_LOCK  # the one lock file in output.dir
NAMES = PUBLISHED  # paths.check_run_outputs checks their files before a run starts
# `fmnist finetune` without a MODEL continues from the model the last completed run produced.
DEFAULT_FINETUNE_SOURCE = Path("saved_models") / "latest.keras"


def test_setup(splits: Splits, test_flip: bool) -> dict[str, Any]:
    """What makes two test accuracies comparable: the same test set, evaluated the same way."""
    h = hashlib.sha256(np.ascontiguousarray(splits.x_test).tobytes())
    h.update(np.ascontiguousarray(splits.y_test, dtype=np.int64).tobytes())
    return {
        "data_source": splits.source,
        "test_images": len(splits.x_test),
        "test_sha256": h.hexdigest(),
        "test_flip": bool(test_flip),
    }


def publish(run: RunPaths, accuracy: float, setup: dict[str, Any]) -> str:
    """Copy a complete run's best.keras to latest.keras, and to best.keras if it is better.

    Returns one line saying what became of best.keras.
    """
    root = run.dir.parent
    model = run.best
    record = {
        "run_id": run.name,
        "model": str(model.resolve()),
        "sha256": atomic.sha256_file(model),
        "test_accuracy": float(accuracy),
        "setup": setup,
    }
    with _locked(root / LOCK):
        _remove_stale(root)
        _replace(root, "latest", run, record)
        best_model = root / "best.keras"
        best = read_record(best_model.with_suffix(".json")) if best_model.is_file() else None
        if best is not None and best.get("setup") != setup:
            return (
                f"{best_model} kept: it was tested on another test setup "
                f"({_describe(best)}); this run is {root / 'latest.keras'}"
            )
        if best is not None and not accuracy > float(best.get("test_accuracy", -1.0)):
            return (
                f"{best_model} kept: test accuracy {best['test_accuracy']:.4f} "
                f"({best.get('run_id')}) is not beaten by {accuracy:.4f}; this run is "
                f"{root / 'latest.keras'}"
            )
        _replace(root, "best", run, record)
    return f"{best_model} is now this run (test accuracy {accuracy:.4f})"


def read_record(path: Path) -> dict[str, Any] | None:
    """best.json / latest.json, or None where it is missing or damaged (then replaced)."""
    try:
        raw = atomic.loads_json(read_text(path))
    except (OSError, ValueError):
        return None
    ok = isinstance(raw, dict) and isinstance(raw.get("test_accuracy"), int | float)
    return raw if ok else None


def pinned(model_path: Path) -> Path:
    """A published copy (latest.keras, best.keras) as the run-folder model it was copied from.

    A finetune run records the model it started from and a resume reloads it; latest.keras
    may by then hold another run, the run folder's own best.keras does not change.
    """
    if model_path.name not in (f"{n}.keras" for n in NAMES):
        return model_path
    record = read_record(model_path.with_suffix(".json"))
    if record is None or not isinstance(record.get("model"), str):
        return model_path
    source = Path(record["model"])
    with contextlib.suppress(OSError):
        if source.is_file() and atomic.sha256_file(source) == record.get("sha256"):
            return source
    return model_path


def _replace(root: Path, name: str, run: RunPaths, record: dict[str, Any]) -> None:
    """The model first, then its config, then the record: each one atomically."""
    atomic.copy_file(run.best, root / f"{name}.keras")
    atomic.copy_file(run.config, root / f"{name}.config.yaml")
    atomic.write_json(root / f"{name}.json", record)


def _describe(record: dict[str, Any]) -> str:
    setup = record.get("setup") or {}
    flip = ", test flip" if setup.get("test_flip") else ""
    return f"{setup.get('test_images')} images from {setup.get('data_source')}{flip}"


def _remove_stale(root: Path) -> None:
    """Temporaries of a publisher that was killed mid-copy (only lock holders write them)."""
    for name in NAMES:
        for path in root.glob(f".{name}.*"):
            if path.is_file():
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`, waited for; the kernel releases it if the holder dies."""
    try:
        f = path.open("a")
    except OSError as exc:
        raise MissingFileError(
            f"{path}: cannot write here: {exc.strerror}; choose a writable output.dir"
        ) from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
