"""How an fmnist process stops: SIGINT, SIGTERM and SIGHUP lead to one clean stop, everywhere.

The CLI installs one handler for the three signals before anything else (`install`). The first
signal starts the clean stop: it raises KeyboardInterrupt where the main thread is, every
`finally` on the way runs (staging folders, a run's .tmp, the run folder's lock), atexit runs
(TensorFlow's autograph temp files), and the CLI prints one line and exits 130. From then on a
signal is ignored: a second one never half-undoes the stop.

While a fit runs, stopping mid-batch would lose nothing but stopping mid-write could, so a
`Deferrer` (training.interrupts.StopSignals) on top of the stack turns the first signal into a
request that the fit acts on at the end of the batch; a second signal then stops at once. A
thread that finds the process cannot go on (a chief that stopped answering) asks the main
thread to stop the same way (`fail`), and the CLI then says what that thread found.

A KeyboardInterrupt that Python drops (raised inside a `__del__` or weakref callback) is raised
again (`_unraisable`). At the end the CLI ignores the three signals (`ignore`): Python would put
their default back while it shuts down, and a late SIGTERM would change the exit code.

A native library may take a signal over (TensorFlow's multi-worker runtime installs a SIGTERM
handler that only takes note); `reinstall` puts ours back. A thread left blocked inside a
library call that cannot be cancelled (`abandon`) makes the CLI end with os._exit, after its
line, instead of waiting for that thread at interpreter exit.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from typing import Any, Protocol

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stack: list[Deferrer] = []  # innermost last
_state: dict[str, Any] = {
    "installed": False,
    "old": {},  # signal -> the handler before ours (a signal ignored at start is left alone)
    "stopping": None,  # what started the clean stop under way
    "reason": None,  # a thread's reason for the next simulated SIGINT
    "failure": None,  # what that thread found
    "said": False,  # the stop's one line was written
    "abandoned": False,  # a thread is stuck in a call that cannot be cancelled
    "hook": None,  # sys.unraisablehook before ours
    "again": False,  # the stop's KeyboardInterrupt was swallowed: raise it once more
}


class Deferrer(Protocol):
    """What the handler asks while a fit runs: whether to defer, and where to note a request."""

    requested: str | None
    defer: bool


def install() -> bool:
    """Our handler for SIGINT, SIGTERM and SIGHUP (main thread only). True if this call
    installed it, so the caller uninstalls it; False if it was already installed."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return False
    # A stop that ended in this process before (the API or CliRunner, without the CLI's own
    # install) is over: this block starts with no stop under way.
    _state.update(stopping=None, reason=None, failure=None, said=False, again=False)
    old = {}
    for sig in SIGNALS:
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue  # ignored by whoever started us (nohup's SIGHUP, a background SIGINT)
        with contextlib.suppress(OSError, ValueError):  # SIGHUP on a platform without it
            old[sig] = signal.signal(sig, _handle)
    _state.update(old=old, installed=True, hook=sys.unraisablehook)
    sys.unraisablehook = _unraisable
    return True


def ignore() -> None:
    """The process is ending (its line said, its code chosen): a signal now is ignored, also
    while the interpreter shuts down, when Python itself would put the default back (a late
    SIGTERM would then end it with 143 instead of its code)."""
    if threading.current_thread() is threading.main_thread():
        for sig in _state["old"]:
            signal.signal(sig, signal.SIG_IGN)


def uninstall() -> None:
    """The handlers that were there before `install`; a finished stop is forgotten."""
    for sig, old in _state["old"].items():
        signal.signal(sig, old)
    if _state["hook"] is not None:
        sys.unraisablehook = _state["hook"]
    _state.update(
        old={}, installed=False, stopping=None, reason=None, failure=None, said=False, hook=None
    )


def reinstall() -> None:
    """Ours again at the C level, after a native library replaced it (main thread only)."""
    if _state["installed"] and threading.current_thread() is threading.main_thread():
        for sig in _state["old"]:
            signal.signal(sig, _handle)


def push(deferrer: Deferrer) -> None:
    _stack.append(deferrer)


def pop(deferrer: Deferrer) -> None:
    with contextlib.suppress(ValueError):
        _stack.remove(deferrer)


def stopping() -> str | None:
    """What started the clean stop under way (a signal's name, or a thread's reason)."""
    return _state["stopping"]


def begin(reason: str) -> None:
    """The clean stop starts now (a deferred request is acted on): later signals are ignored."""
    _state["stopping"] = _state["stopping"] or reason


def stopped_line() -> str:
    """The one line of a clean stop outside a run: what stopped it, and that nothing is half
    written (every `finally` on the way has run)."""
    _state["said"] = True
    return f"{stopping() or 'interrupted'}: stopped; nothing was left half-written"


def said() -> bool:
    """Whether the stop's one line (or a failure's, which ends the process too) was written."""
    return bool(_state["said"])


def mark_said() -> None:
    _state["said"] = True


def fail(error: Exception) -> None:
    """From another thread: the process cannot go on. The main thread stops as for a signal
    (at the end of a batch while a fit runs), and the CLI says `error` instead of the stop."""
    _state.update(failure=error, reason=type(error).__name__)
    _interrupt_main()


def failure() -> Exception | None:
    """What a thread found that stopped the process (`fail`), or None."""
    return _state["failure"]


def abandon() -> None:
    """A thread is left inside a call that cannot be cancelled: the CLI ends with os._exit."""
    _state["abandoned"] = True


def abandoned() -> bool:
    return bool(_state["abandoned"])


def _handle(signum: int, frame: Any) -> None:
    if _state["again"]:  # from _unraisable: the stop under way goes on
        _state["again"] = False
        if not _state["said"]:
            raise KeyboardInterrupt
        return
    reason, _state["reason"] = _state["reason"], None
    name = reason or signal.Signals(signum).name
    if _state["stopping"]:
        return  # the clean stop is under way: a second signal never half-undoes it
    top = _stack[-1] if _stack else None
    if top is not None and top.defer and not top.requested:
        top.requested = name
        if reason is None:
            _note(f"\n{name}: stopping at the end of this batch (send it again to stop at once)\n")
        return
    if top is not None:
        top.requested = top.requested or name
    begin(name)
    raise KeyboardInterrupt


def _unraisable(info: Any) -> None:
    """Python drops an exception raised in a `__del__` or a weakref callback (the garbage
    collector runs them anywhere, often while modules load): when that was the stop's
    KeyboardInterrupt, it is raised again in the main thread, outside that callback."""
    if isinstance(info.exc_value, KeyboardInterrupt) and _state["stopping"]:
        _state["again"] = True
        _interrupt_main()
        return
    (_state["hook"] or sys.__unraisablehook__)(info)


def _interrupt_main() -> None:
    """Run the handler in the main thread as if a signal came: one of ours (SIGINT may be
    ignored, as in a background job), else SIGINT's, Python's KeyboardInterrupt."""
    _thread.interrupt_main(next(iter(_state["old"]), signal.SIGINT))


def _note(message: str) -> None:
    """os.write, not print: a handler may run while the main thread is writing to stderr."""
    from .tfenv import terminal

    try:
        fd = terminal().fileno()
    except (OSError, ValueError):
        fd = 2
    with contextlib.suppress(OSError, ValueError):
        os.write(fd, message.encode())
