"""What a result was measured with and on: package versions, the machine, this process's time."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    found = {
        "fmnist_tl": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    # the runtime of the frozen passes on a CPU (models/litert.py), when installed
    with contextlib.suppress(metadata.PackageNotFoundError):
        found["ai_edge_litert"] = metadata.version("ai-edge-litert")
    return found


def process_seconds() -> float | None:
    """Wall seconds since this process started (Linux /proc), or None where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat[19])  # field 22, starttime, counted after the ") " of the name
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    """The machine a run was measured on: CPU model, the cores this process may use, the
    accelerators TensorFlow sees. Times and speeds mean little without it."""
    import tensorflow as tf

    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "system": f"{platform.system()} {platform.machine()}",
        "tensorflow": tf.__version__,
    }


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> float:
    """CPU seconds this process has used, every thread, user and system: a cost that another
    job on the same cores barely moves, where wall time doubles."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Clock:
    """When a sitting of a run began: wall time (perf_counter) and this process's CPU seconds,
    so the run's own cost is known even when a process trains several runs (--repeat)."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> Clock:
        return cls(time.perf_counter(), cpu_seconds())


def project_commit() -> tuple[str, bool] | None:
    """The git commit of the fmnist-tl checkout this code runs from, and whether its tracked
    files differ from it; None for an installed copy (no checkout) or without git."""
    import subprocess

    root = Path(__file__).resolve().parents[2]  # src/fmnist_tl/machine.py -> the checkout
    if not (root / "pyproject.toml").is_file() or not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
        if done.returncode != 0:
            raise OSError(done.stderr.strip())
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, dirty
