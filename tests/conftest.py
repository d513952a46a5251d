"""Shared fixtures: a small learnable synthetic Fashion-MNIST on disk, isolated run folders."""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fmnist_tl.data import sources as data  # noqa: E402
from fmnist_tl.errors import Interrupted  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
SHARED_WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_imagenet_no_top.weights.h5"
# Every download fails at once, online or not: the proxy's name is in .invalid, which never
# resolves (RFC 2606). With an empty KERAS_HOME, Keras's weights download then fails for sure.
NO_DOWNLOAD = {
    key: "http://no-proxy.invalid:9"
    for key in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
} | {"NO_PROXY": "", "no_proxy": ""}


def keras_cache(folder: Path, sizes: tuple[int, ...] = (96,)) -> Path:
    """A KERAS_HOME holding the shared weights as Keras's own MobileNetV2 ImageNet files
    (scripts/keras_cache.py), so `weights: imagenet` loads through Keras, offline."""
    assert SHARED_WEIGHTS.is_file(), f"{SHARED_WEIGHTS} is missing: the shared weights are needed"
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from keras_cache import build_cache
    finally:
        sys.path.remove(str(REPO / "scripts"))
    build_cache(SHARED_WEIGHTS, folder, sizes)
    return folder


def sets(overrides: list[str]) -> list[str]:
    """`--set` before each override: the command line a user types."""
    return [a for o in overrides for a in ("--set", o)]


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS's choice): distributed tests stay on localhost."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def idx_bytes(a: np.ndarray) -> bytes:
    if a.ndim == 4:
        return struct.pack(">IIII", 0x803, len(a), 28, 28) + a.astype(np.uint8).tobytes()
    return struct.pack(">II", 0x801, len(a)) + a.astype(np.uint8).tobytes()


def write_idx(folder: Path, arrays, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in zip(data.IDX_NAMES, arrays, strict=True):
        raw = idx_bytes(a)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def learnable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright bar at a class-specific row, plus noise: a class told by position, so
    models that keep position (flatten pooling, dense) learn it in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = rng.integers(0, 60, (n, 28, 28, 1)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 2 + 2 * c : 4 + 2 * c, 4:24, 0] = 220
    return x, y


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """400 train / 100 test learnable images as gzipped IDX files."""
    x_tr, y_tr = learnable(400, 1)
    x_te, y_te = learnable(100, 2)
    return write_idx(tmp_path_factory.mktemp("fmnist"), (x_tr, y_tr, x_te, y_te), gz=True)


def outputs(root: Path, data_dir: Path | None = None) -> list[str]:
    """--set overrides that put every output of a run under `root` (quietly), and with
    `data_dir` read the data from there."""
    data = [f"data.dir={data_dir}"] if data_dir is not None else []
    return [
        *data,
        f"output.dir={root / 'saved_models'}",
        f"output.log_dir={root / 'logs'}",
        f"output.cache_dir={root / 'cache'}",
        "runtime.verbose=silent",
    ]


@pytest.fixture
def isolated(tmp_path, synthetic_dir) -> list[str]:
    """--set overrides that point data at the synthetic set and every output into tmp_path."""
    return outputs(tmp_path, synthetic_dir)


def one_line(text: str, *needles: str) -> str:
    """An error as the CLI must give it: no traceback, one non-empty line, every needle in it."""
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def expect_error(result, code: int, *needles: str) -> str:
    """A CliRunner result: exit `code` and `one_line`."""
    assert result.exit_code == code, result.output
    return one_line(result.output, *needles)


def cli_fails(args: list[str], code: int, *needles: str) -> str:
    """`fmnist ARGS` run in this process: exit `code` and `one_line`."""
    from fmnist_tl.cli import app

    return expect_error(CliRunner().invoke(app, args), code, *needles)


def snapshot(root: Path) -> dict[str, int]:
    """Every path under `root` with its mtime: compare two to show nothing was written."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def run_counting_cpu(cmd: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run cmd; return it with its CPU and wall seconds. CPU time bounds how much work a command
    did, barely moved by another test file on the other core; wall time, bounded loosely,
    catches a command that waits. (CPU counts every child of this process reaped meanwhile:
    after a passing test, only cmd.)"""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, cpu, wall


@pytest.fixture
def no_tf(tmp_path) -> dict[str, str]:
    """An environment whose `tensorflow` raises on import: a check after it would show."""
    fake = tmp_path / "no_tf"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text("raise ImportError('TensorFlow loaded')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path])}


def assert_png(path: Path) -> None:
    """A real, non-blank PNG of a sensible size (not a zero-byte or placeholder file)."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        w, h = img.size
        assert 300 <= w <= 4000 and 200 <= h <= 4000, img.size
        pixels = np.asarray(img.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1, "PNG is a single flat colour"
    assert not list(path.parent.glob(".*.png")), "temporary file left behind"


HISTORY_COLUMNS = [  # history.csv's, as a run writes it
    "stage",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
]


def write_history(path: Path, stages: dict[str, int]) -> None:
    """A history.csv of `stages` (name -> epochs) with plausible, falling losses."""
    rows, epoch = [], 0
    for stage, n in stages.items():
        for _ in range(n):
            epoch += 1
            rows.append(
                {
                    "stage": stage,
                    "epoch": epoch,
                    "loss": 1 / epoch,
                    "accuracy": 1 - 0.5 / epoch,
                    "val_loss": 1.2 / epoch + 0.01 * epoch,
                    "val_accuracy": 1 - 0.6 / epoch,
                    "learning_rate": 1e-3,
                    "seconds": 1.5,
                }
            )
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def epochs_in(run_dir: Path) -> list[tuple[str, int]]:
    with (run_dir / "history.csv").open() as f:
        return [(r["stage"], int(r["epoch"])) for r in csv.DictReader(f)]


@contextlib.contextmanager
def sigint_after_epoch(epoch: int):
    """Send ourselves SIGINT right after `epoch` is committed: the real handler, a known point."""
    from fmnist_tl.training import session

    commit = session.EpochCommit.on_epoch_end

    def on_epoch_end(self, e, logs=None):
        commit(self, e, logs)
        if e + 1 == epoch:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session.EpochCommit, "on_epoch_end", on_epoch_end)
        yield


def interrupted(run_fn, epoch: int) -> Path:
    with sigint_after_epoch(epoch), pytest.raises(Interrupted) as info:
        run_fn()
    message = str(info.value)
    assert message.startswith("SIGINT: stopped after epoch") and "resume with:" in message
    return Path(message.rsplit("fmnist train --resume ", 1)[1])


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """`folder` (made empty here) that this process cannot write to; yields how: "mount" (a
    read-only tmpfs, for root, who ignores permissions, when mounting is allowed), "chmod"
    (0o555, for a normal user) or None (root without mount: nothing makes it read-only, and a
    test skips only the assertions that need it)."""
    folder.mkdir(parents=True)
    how = None
    if os.geteuid() == 0:
        cmd = ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            how = "mount"
    else:
        folder.chmod(0o555)
        how = "chmod"
    try:
        yield how
    finally:
        if how == "mount":
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)
