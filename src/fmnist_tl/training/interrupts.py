"""SIGINT/SIGTERM during training: stop at a safe point instead of dying mid-write."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

import keras

from ..tfenv import terminal


class StopRequested(Exception):
    """Raised between batches after SIGINT/SIGTERM: leave `fit` without finishing the epoch."""


class StopSignals:
    """While a run trains: the first SIGINT/SIGTERM asks for a stop at a safe point.

    While `defer` is set (fit.fit_stage sets it around `fit`; a tune keeps it set for the whole
    search) the handler only sets `requested` (never interrupting a write) and
    `StopAtSafePoint` acts on it between batches. Otherwise (loading, feature
    extraction, evaluation) there is nothing to wait for, and a second signal means "now":
    both raise KeyboardInterrupt at once, which atomic writes survive. Python drops an
    exception raised while a weakref callback or `__del__` runs (printing "Exception
    ignored"), so callers also check `requested` at their own safe points.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self.defer = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested or not self.defer:
            self.requested = self.requested or name
            raise KeyboardInterrupt
        self.requested = name
        # os.write, not print: a handler may run while the main thread is writing to stderr.
        message = f"\n{name}: stopping at the end of this batch (send it again to stop at once)\n"
        with contextlib.suppress(OSError, ValueError):
            os.write(_terminal_fd(), message.encode())


def _terminal_fd() -> int:
    """The user's stderr as a file descriptor (fd 2 where the stream has none, as in tests)."""
    try:
        return terminal().fileno()
    except (OSError, ValueError):
        return 2


class StopAtSafePoint(keras.callbacks.Callback):
    """Turn a pending stop request into a clean exit from `fit`."""

    def __init__(self, signals: StopSignals) -> None:
        super().__init__()
        self.signals = signals

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.signals.requested:
            raise StopRequested  # the unfinished epoch is dropped; resume runs it again

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.signals.requested:  # arrived during validation or saving: the epoch is done
            self.model.stop_training = True
