"""What a result was measured with: package versions and this process's age."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._version import __version__


def versions() -> dict[str, str]:
    import platform

    import keras
    import tensorflow as tf

    return {
        "fmnist_tl": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def process_seconds() -> float | None:
    """Wall seconds since this process started (Linux /proc), or None where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat[19])  # field 22, starttime, counted after the ") " of the name
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - ticks / os.sysconf("SC_CLK_TCK")
