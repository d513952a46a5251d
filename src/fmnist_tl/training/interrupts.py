"""SIGINT, SIGTERM or SIGHUP during training: stop at a safe point instead of dying mid-write."""

from __future__ import annotations

from typing import Any

import keras

from .. import lifecycle


class StopRequested(Exception):
    """Raised between batches after a stop signal: leave `fit` without finishing the epoch."""


class StopSignals:
    """While a run trains: the first SIGINT/SIGTERM/SIGHUP asks for a stop at a safe point.

    The handler is lifecycle's, the same in every command (the CLI installs it for the whole
    process; here it is installed for the block if it is not yet). While `defer` is set
    (fit.fit_stage sets it around `fit`; a tune keeps it set for the whole search) a signal only
    sets `requested` (never interrupting a write) and `StopAtSafePoint` acts on it between
    batches. Otherwise (loading, feature extraction, evaluation) there is nothing to wait for,
    and a second signal means "now": both raise KeyboardInterrupt at once, which atomic writes
    survive. Python drops an exception raised while a weakref callback or `__del__` runs
    (printing "Exception ignored"), so callers also check `requested` at their own safe points.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self.defer = False
        self._installed = False

    def __enter__(self) -> StopSignals:
        self._installed = lifecycle.install()
        lifecycle.push(self)
        return self

    def __exit__(self, *exc: object) -> None:
        lifecycle.pop(self)
        if self._installed:
            lifecycle.uninstall()
            self._installed = False

    def act(self) -> None:
        """A pending request is acted on now: the clean stop begins, later signals wait."""
        if self.requested:
            lifecycle.begin(self.requested)


class StopAtSafePoint(keras.callbacks.Callback):
    """Turn a pending stop request into a clean exit from `fit`."""

    def __init__(self, signals: StopSignals) -> None:
        super().__init__()
        self.signals = signals

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.signals.requested:
            self.signals.act()
            raise StopRequested  # the unfinished epoch is dropped; resume runs it again

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.signals.requested:  # arrived during validation or saving: the epoch is done
            self.signals.act()
            self.model.stop_training = True
