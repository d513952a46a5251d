"""TensorFlow's environment, set once before TensorFlow loads, and its start-up chatter held back.

- TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's C++ info and warning logs off the terminal once its
  logging is set up.
- TF_ENABLE_ONEDNN_OPTS=1 uses oneDNN's CPU kernels. TensorFlow enables them by default only on
  some x86 CPUs; on this project's 2-core AMD VM they trained cnn_best 1.5x faster (best of three
  alternating runs, scripts/bench_onednn.py; README, "Speed and memory").

A value already in the environment wins, so TF_ENABLE_ONEDNN_OPTS=0 still turns oneDNN off.

TF_CPP_MIN_LOG_LEVEL does not reach the lines TensorFlow prints before its logging is set up
(absl's "All log messages before absl::InitializeLog()", `I0000 ... port.cc] oneDNN custom
operations are on`, `cudart_stub.cc] Could not find cuda drivers`, each twice, while
`import tensorflow` runs) nor the `E0000 ... failed call to cuInit` of the first device probe.
They come from C++ straight to file descriptor 2, so the first `import tensorflow` (whoever asks
for it: `import keras` does) runs with fd 2 pointed at a temp file, and the device probe runs
inside the same window. What the window held is kept (`held()`) and written out only when the
load fails, or when verbose output is asked for (`fmnist --verbose`, FMNIST_VERBOSE=1 or
`runtime.verbose: debug`), which also leaves TensorFlow's own log level alone.

A command goes further (`quiet_process`, from the CLI's entry point): for the whole process,
fd 2 and Python's sys.stderr write to an anonymous temp file, and fmnist's own lines (its
messages, progress bars and errors) reach the terminal through `terminal()`. So nothing a
library prints, at any moment, on any CPU (a oneDNN line that only some CPUs print at the first
float16 op, the TFLite converter's MLIR lines, absl, Python warnings, TensorFlow's Python
logging) reaches the user unless asked for: the rule is who writes, not which lines. Verbose
mode hands fd 2 back and replays what was held; FMNIST_DEBUG=1 shows it after an unexpected
error.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import IO, Any

DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
_USER_SET = frozenset(name for name in DEFAULTS if name in os.environ)
VERBOSE_ENV = "FMNIST_VERBOSE"

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)

_held: list[str] = []  # what fd 2 received while TensorFlow loaded
_quiet: dict[str, Any] = {}  # while the process is quiet: "terminal" (a stream), "held" (a file)


def onednn() -> bool:
    """Whether TensorFlow's oneDNN CPU kernels are on."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") not in ("0", "false", "False")


def verbose() -> bool:
    """Whether the user asked to see everything TensorFlow, Keras and Python warn about."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false", "False")


def set_verbose() -> None:
    """Verbose from here on (and in child processes): TensorFlow's default log level when it has
    not loaded yet (and the user set none), fd 2 handed back, and what was held replayed."""
    os.environ[VERBOSE_ENV] = "1"
    if "tensorflow" not in sys.modules and "TF_CPP_MIN_LOG_LEVEL" not in _USER_SET:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    _release()
    replay()


def quiet_process() -> None:
    """From now on, the process's fd 2 and sys.stderr go to an anonymous temp file (deleted by
    the system when the process ends, however it ends); `terminal()` is the user's stderr.
    Nothing when verbose, already quiet, or without an fd 2."""
    if verbose() or _quiet:
        return
    try:
        real = os.dup(2)
    except OSError:
        return
    sys.stderr.flush()
    held = tempfile.TemporaryFile()  # noqa: SIM115  (held for the rest of the process)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    terminal = open(real, "w", encoding=encoding, errors="backslashreplace", buffering=1)  # noqa: SIM115
    # `terminal()` names the user's stderr before fd 2 moves: a stop signal in between still
    # says its line where the user sees it.
    _quiet.update(terminal=terminal, held=held)
    os.dup2(held.fileno(), 2)


def terminal() -> IO[str]:
    """Where fmnist's own stderr lines go: the user's stderr (sys.stderr unless quiet)."""
    return _quiet.get("terminal") or sys.stderr


def held_output() -> str:
    """Everything libraries wrote to stderr while the process was quiet ("" otherwise)."""
    held = _quiet.get("held")
    if held is None:
        return ""
    sys.stderr.flush()
    size = os.fstat(held.fileno()).st_size
    return os.pread(held.fileno(), size, 0).decode(errors="replace")


def _release() -> None:
    """Hand fd 2 back to the user's stderr and write out what was held."""
    if not _quiet:
        return
    text = held_output()
    terminal, held = _quiet.pop("terminal"), _quiet.pop("held")
    sys.stderr.flush()
    terminal.flush()
    os.dup2(terminal.fileno(), 2)
    terminal.close()
    held.close()
    sys.stderr.write(text)
    sys.stderr.flush()


class TerminalStream:
    """A file-like view of `terminal()`, resolved at every call: for consoles made before the
    process went quiet, or while a test swaps sys.stderr."""

    def write(self, text: str) -> int:
        return terminal().write(text)

    def flush(self) -> None:
        terminal().flush()

    def isatty(self) -> bool:
        return bool(getattr(terminal(), "isatty", lambda: False)())

    def fileno(self) -> int:
        return terminal().fileno()

    @property
    def encoding(self) -> str:
        return getattr(terminal(), "encoding", None) or "utf-8"


def held() -> str:
    """What TensorFlow printed to fd 2 while it loaded ("" before it loads, or when verbose)."""
    return "".join(_held)


def replay() -> None:
    """Write the held start-up lines to stderr, once."""
    text = held()
    _held.clear()
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()


@contextlib.contextmanager
def hold_stderr() -> Iterator[None]:
    """Point fd 2 at a temp file for the block; keep what it got, write it out if the block
    fails (not when a stop signal ends it). A no-op when verbose, or without an fd 2."""
    if verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        failed = False
        try:
            yield
        except Exception:  # not a stop signal's KeyboardInterrupt: that is no failure to show
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            _held.append(tmp.read().decode("utf-8", errors="replace"))
            if failed:
                replay()


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader inside `hold_stderr`, then its first device probe."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with hold_stderr():
            self.inner.exec_module(module)
            # The CUDA probe (cuInit) prints at the first device use, not at import.
            module.config.list_physical_devices()
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner

    def __getattr__(self, name: str) -> Any:  # resource readers etc. of the real loader
        return getattr(self.inner, name)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` the usual way, once, and wraps its loader in `_QuietLoader`."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Hold back TensorFlow's start-up lines, unless it is loaded already."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())


if verbose():
    set_verbose()
install()
