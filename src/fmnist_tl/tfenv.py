"""TensorFlow's environment, set once, before TensorFlow loads (the package imports this first).

- TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's C++ start-up chatter off the terminal.
- TF_ENABLE_ONEDNN_OPTS=1 uses oneDNN's CPU kernels. TensorFlow enables them by default only on
  some x86 CPUs; on this project's 2-core AMD VM they trained cnn_best 1.5x faster (best of three
  alternating runs, scripts/bench_onednn.py; README, "Speed and memory").

A value already in the environment wins, so TF_ENABLE_ONEDNN_OPTS=0 still turns oneDNN off.
"""

from __future__ import annotations

import os

DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)


def onednn() -> bool:
    """Whether TensorFlow's oneDNN CPU kernels are on."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") not in ("0", "false", "False")
