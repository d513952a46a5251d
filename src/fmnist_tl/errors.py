"""Typed failures. The CLI turns each into a one-line message and its exit code.

The exit codes, one per class (README "Exit codes" lists the same; tests/test_exit_codes.py
checks both agree): 0 success, 1 anything unexpected, 2 `ConfigError`, 3 `DataError`,
`MissingFileError`, `Unreachable` (and any `OSError` the CLI meets), 4 `TrainingDiverged`, 130
`Interrupted` (and a stop signal anywhere), 141 stdout closed by its reader.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import unicodedata

SUCCESS = 0
UNEXPECTED = 1
OS_FAILURE = 3  # an OSError that reached the CLI: the disk, a path, a permission
STDOUT_CLOSED = 141  # the reader of stdout left early (`| head`): 128 + SIGPIPE, as for `cat`
PATH_SHOWN = 160  # characters of a path a message shows: head ... tail


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def printable(text: str) -> str:
    """`text` with every character a terminal would act on written as an escape: control
    characters (a newline in a file name: "a\\nb"), line and paragraph separators, the bidi
    overrides that reorder what follows, and the bytes a file name holds that are not UTF-8
    (as \\xff). Everything else, accents and scripts included, is left as it is."""
    return _UNPRINTABLE.sub(_escape, text) if _UNPRINTABLE.search(text) else text


# C0 and C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates,
# and the lone surrogates os.fsdecode makes of undecodable bytes.
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(char) == "Cc" and code < 0x100:
        return repr(char)[1:-1]  # \n, \t, \x1b, \x85
    return f"\\u{code:04x}"


def short_path(path: str | os.PathLike[str], limit: int = PATH_SHOWN) -> str:
    """`path` as a message shows it: control characters escaped (`printable`), then whole up
    to `limit` characters, else head...tail.

    A 5,000-character path would fill the terminal; the head and the tail (the file's name)
    are what tell a user which path it was. A newline in a file name never makes a second line.
    """
    text = printable(os.fsdecode(path))
    if len(text) <= limit:
        return text
    keep = limit - 3
    return f"{text[: keep // 2]}...{text[-(keep - keep // 2) :]}"


def shorten_paths(message: str) -> str:
    """`message` as one printable line: control characters escaped (`printable`) and every run
    of over PATH_SHOWN non-space characters (a path, in practice) shortened.

    The CLI's last guard: whatever built a message, it is one line and never echoes a
    5,000-character path.
    """
    one_line = printable(message)
    return re.sub(rf"\S{{{PATH_SHOWN + 1},}}", lambda m: short_path(m.group()), one_line)


def for_terminal(message: str) -> str:
    """A failure's message as the CLI prints it: `shorten_paths` (one printable line, long
    paths shortened) and, when the working folder was deleted under the process and the
    message does not name it, that first: every relative path then fails, in whatever words
    the failing check had ("saved_models: no runs found")."""
    gone = working_folder_gone()
    if gone is not None and short_path(gone) not in message:
        message = (
            f"the working folder {short_path(gone)} no longer exists, so relative paths "
            f"cannot be found: {message}"
        )
    return shorten_paths(message)


_WHAT_TO_DO = {  # errno name -> what a user can do about it
    "ENOSPC": "free space on that disk or write somewhere else",
    "EDQUOT": "free space within your disk quota or write somewhere else",
    "ENAMETOOLONG": "use a shorter path",
    "EACCES": "fix the permissions or choose a folder you can write to",
    "EPERM": "fix the permissions or choose a folder you can write to",
    "EROFS": "choose a folder on a writable disk",
    "ENOTDIR": "a file is in the way where a folder should be; move it or choose another path",
    "EISDIR": "that is a folder; give a file path",
    "ENOENT": "check the path",
    "EEXIST": "move the existing file or choose another path",
    "NOTREG": "give the path of a regular file",
    "SHORT": "check that disk: it may be full or over a quota",
}


def os_failure(
    exc: OSError, path: str | os.PathLike[str] | None = None, key: str | None = None
) -> MissingFileError:
    """An OSError as a one-line, exit-3 failure: "PATH: what went wrong; what to do".

    The one home of this wording. `key` (a config key or option such as output.dir) names
    what chose the path, so the advice says what to change. A file where a folder should be
    and a name too long are said in plain words, never as the raw errno text; so are a FIFO
    or device where a file is read, a write cut short by a full disk (NumPy reports only the
    bytes written), and a working folder deleted under the process, never "(unknown path)".
    """
    where = path if path is not None else exc.filename
    gone = working_folder_gone()
    if gone is not None and (where is None or not os.path.isabs(os.fsdecode(where))):
        return MissingFileError(
            f"the working folder {short_path(gone)} no longer exists (deleted or moved while "
            "fmnist ran); cd to an existing folder and run again"
        )
    name = os.fsdecode(where) if where is not None else "(unknown path)"
    code = "NOTREG" if isinstance(exc, NotRegularFile) else errno.errorcode.get(exc.errno or -1, "")
    prefix = f"{key}: " if key else ""
    choose = f"choose another {key}" if key else "move it or choose another path"
    if code in ("ENOTDIR", "EEXIST") and where is not None:
        blocker = _file_in_the_way(name)
        if blocker is not None:
            under = "" if blocker == name else f" (on the way to {short_path(name)})"
            return MissingFileError(
                f"{prefix}{short_path(blocker)} is a file where a folder should be{under}; {choose}"
            )
    if code == "ENAMETOOLONG":
        return MissingFileError(
            f"{prefix}{short_path(name)}: name too long; use a shorter {key or 'path'}"
        )
    reason = exc.strerror or first_line(exc)
    if exc.errno is None and (short := _SHORT_WRITE.search(str(exc))) is not None:
        code, reason = _short_write(name, int(short[1]), int(short[2]))
    fix = _WHAT_TO_DO.get(code, "check the path and the disk")
    return MissingFileError(f"{prefix}{short_path(name)}: {reason}; {fix}")


# NumPy's words for a write the OS cut short (ndarray.tofile, np.save): no errno comes with it.
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


def _short_write(name: str, requested: int, written: int) -> tuple[str, str]:
    """(errno name, reason) for a short write to `name`: a full disk when its disk has less
    free space than the bytes that were not written, else the counts as they are."""
    folder = os.path.dirname(name) or "."
    try:
        while not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < requested - written:
        return "ENOSPC", os.strerror(errno.ENOSPC)
    return "SHORT", f"a write stopped short ({written} of {requested} bytes)"


def working_folder_gone() -> str | None:
    """The working folder's name when it was deleted under the process, else None: every
    relative path then fails, and os.getcwd() itself raises an error that names no path."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return os.environ.get("PWD") or "(its name is unknown)"
    return None


def _file_in_the_way(name: str) -> str | None:
    """The path itself or its nearest existing parent, when that is not a folder."""
    current = os.path.abspath(name)
    while True:
        if os.path.lexists(current):
            return None if os.path.isdir(current) else _as_given(name, current)
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _as_given(name: str, found: str) -> str:
    """`found` written the way the user wrote `name` (relative stays relative)."""
    if os.path.isabs(name):
        return found
    return os.path.relpath(found)


class NotRegularFile(OSError):
    """A FIFO, socket or device where a file is read: opening a FIFO waits for a writer,
    reading a device may never end. Raised before it is opened (paths.check_regular)."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(None, f"not a regular file ({kind})", os.fsdecode(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class FmnistError(Exception):
    """Base class: an expected failure with a message meant for the user (exit 1)."""

    exit_code = UNEXPECTED


class ConfigError(FmnistError):
    """Bad usage or a bad config: wrong key, type, value or option (exit 2)."""

    exit_code = 2


class DataError(FmnistError):
    """Fashion-MNIST missing, truncated, corrupt, empty or too small to split (exit 3)."""

    exit_code = 3


class MissingFileError(FmnistError):
    """A model, weights, run folder, image or output path that is missing, unreadable or
    unwritable: a full disk, a file where a folder should be, a name too long (exit 3)."""

    exit_code = 3


class Unreachable(FmnistError):
    """A chief, worker or peer that did not answer within its bound or stopped answering, or a
    port already in use (exit 3)."""

    exit_code = 3


class TrainingDiverged(FmnistError):
    """The loss became NaN or infinite; the last good checkpoint is kept (exit 4)."""

    exit_code = 4


class Interrupted(FmnistError):
    """SIGINT/SIGTERM stopped a run at a safe point; it can be resumed (exit 130)."""

    exit_code = 130


def exit_codes() -> dict[int, list[str]]:
    """Every code the CLI can return, with the failure classes (or cases) behind it."""
    codes: dict[int, list[str]] = {SUCCESS: ["success"], UNEXPECTED: ["unexpected"]}
    classes = (ConfigError, DataError, MissingFileError, Unreachable, TrainingDiverged, Interrupted)
    for cls in classes:
        codes.setdefault(cls.exit_code, []).append(cls.__name__)
    codes[OS_FAILURE].append("OSError")
    codes[STDOUT_CLOSED] = ["stdout closed"]
    return codes


_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # the disk's failures a library may wrap
_PATH_IN_TEXT = re.compile(r"(?<![\w.])(/[^\s:;,'\"()\[\]{}]+)")


def disk_failure(
    exc: BaseException, path: str | os.PathLike[str] | None = None
) -> MissingFileError | None:
    """A library's failure that is the disk's (full, over quota, read-only), worded as
    `os_failure` words an OSError and naming `path` (else the path the message names); None
    for any other failure.

    Libraries wrap the OSError (h5py, Keras's saving) or keep only its text (TensorFlow's C++
    file writers raise tf.errors.*Error "...: No space left on device"), so the cause chain
    and the messages are both read.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK:
            return os_failure(current, path)
        text = str(current)
        for code in _DISK:
            if os.strerror(code).lower() in text.lower():
                found = _PATH_IN_TEXT.search(text)
                where = path if path is not None else (found.group(1) if found else None)
                return os_failure(OSError(code, os.strerror(code), where), where)
        current = current.__cause__ or current.__context__
    return None
