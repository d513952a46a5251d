"""Path checks that need no TensorFlow, with one wording for the CLI and the API.

The CLI runs them before importing TensorFlow (about 3.5 s), so a mistyped model path or an
output folder that cannot be written fails at once; the API runs the same functions, so the
two say the same thing.

Every file fmnist reads (config, model, weights, images, data, caches, a run's records) is
checked to be a regular file before it is opened (`check_file`, `check_regular`) or opened
so that it cannot block (`open_regular`): a FIFO would wait forever for a writer, a device
such as /dev/zero would never end.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .errors import (
    DataError,
    FmnistError,
    MissingFileError,
    NotRegularFile,
    os_failure,
    short_path,
    working_folder_gone,
)
from .layout import published_files

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


_OS_WORDS = {
    errno.ENOTDIR: "a file is on the way where a folder should be",
    errno.ENAMETOOLONG: "name too long",
}


def check_regular(path: str | os.PathLike[str]) -> Path:
    """`path` names a regular file (symbolic links followed), or the OSError opening it would
    give: FileNotFoundError, IsADirectoryError, PermissionError, ..., and NotRegularFile for
    a FIFO, socket or device. Stats only: nothing is opened."""
    p = Path(path)
    mode = os.stat(p).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(p))
    if not stat.S_ISREG(mode):
        raise NotRegularFile(p, _KINDS.get(stat.S_IFMT(mode), "not a file"))
    return p


def open_regular(path: str | os.PathLike[str], mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` for reading, refusing what is not a regular file without waiting:
    opened non-blocking (a FIFO opens at once), checked on the open descriptor (no race with
    a swap), then made blocking again. The errors are check_regular's."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, _KINDS.get(stat.S_IFMT(st.st_mode), "not a file"))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """A small text file (JSON, YAML, CSV records), through `open_regular`."""
    with open_regular(path, "r", encoding=encoding) as f:
        return f.read()


def file_problem(path: str | os.PathLike[str], what: str = "file") -> str | None:
    """Why `path` cannot be read as a `what` (e.g. "model file"), in words, or None when it
    is a readable regular file. Stats only. The words: "{what} not found", "is a folder, not
    a {what}", "not a regular file (a FIFO)", "permission denied", a file in the way, a name
    too long; a relative path in a deleted working folder says so."""
    try:
        check_regular(path)
    except FileNotFoundError:
        gone = working_folder_gone()
        if gone is not None and not os.path.isabs(path):
            return f"{what} not found: the working folder {short_path(gone)} no longer exists"
        broken = os.path.islink(path)
        return f"{what} not found" + (" (a symbolic link to nothing)" if broken else "")
    except IsADirectoryError:
        return f"is a folder, not a {what}"
    except NotRegularFile as exc:
        return f"{exc.strerror}, not a {what}"
    except PermissionError:
        return "permission denied"
    except OSError as exc:  # a file on the way where a folder should be, a name too long, ...
        return _OS_WORDS.get(exc.errno or 0, exc.strerror or str(exc))
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def check_file(
    path: str | os.PathLike[str],
    what: str,
    fix: str,
    error: type[FmnistError] = MissingFileError,
) -> Path:
    """`path` is a readable regular file, else `error` (exit 3 unless told) in one line:
    "PATH: <file_problem>; <fix>" ("fix its permissions" when that is the problem)."""
    problem = file_problem(path, what)
    if problem is not None:
        advice = "fix its permissions" if problem == "permission denied" else fix
        raise error(f"{short_path(path)}: {problem}; {advice}")
    return Path(path)


def check_model_file(path: str | os.PathLike[str], key: str | None = None) -> Path:
    """`path` is a file that looks like a .keras archive (a zip), or MissingFileError (its
    message starting with `key`, the config key that named the model, when there is one)."""
    try:
        return _check_model_file(path)
    except MissingFileError as exc:
        if key is None:
            raise
        raise MissingFileError(f"{key}: {exc}") from None


def _check_model_file(path: str | os.PathLike[str]) -> Path:
    p = check_file(
        path,
        "model file",
        "train one first (`fmnist train CONFIG`) or pass the path to a .keras file",
    )
    try:
        is_zip = zipfile.is_zipfile(p)
    except OSError as exc:
        raise os_failure(exc, p) from None
    if not is_zip:
        raise MissingFileError(
            f"{short_path(p)}: not a Keras model file (.keras zip archive expected)"
        )
    try:
        with zipfile.ZipFile(p) as archive:
            has_config = "config.json" in archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise MissingFileError(f"{short_path(p)}: unreadable zip archive ({exc})") from None
    if not has_config:
        raise MissingFileError(
            f"{short_path(p)}: not a Keras model file (no config.json in the archive); pass "
            "a .keras file saved by Keras or `fmnist train`"
        )
    return p


def expand_path(path: str | os.PathLike[str], key: str) -> Path:
    """`path` with a leading ~ or ~user expanded, or one exit-3 line naming `key`.

    Path.expanduser raises RuntimeError for an unknown user (~nosuchuser/x) or no home.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise MissingFileError(
            f"{key}: {short_path(path)}: cannot expand ~ (no such user, or no home folder); "
            f"write {key} in full"
        ) from None


def check_data_dir(path: str | os.PathLike[str] | None, key: str = "data.dir") -> Path | None:
    """data.dir (or --data-dir), when given, is a folder: else DataError, before any import."""
    if path is None:
        return None
    d = expand_path(path, key)
    if not d.is_dir():
        raise DataError(f"{short_path(d)}: {key} does not exist or is not a folder")
    return d


def check_output_file(path: str | os.PathLike[str] | None, what: str = "output file") -> None:
    """A file about to be written: not a folder, and its folder can be made and written."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir() or os.fspath(path).endswith(os.sep):
        raise MissingFileError(
            f"{short_path(p)}: is a folder; give a file path for the {what}, "
            f"e.g. {short_path(p / 'evaluation.json')}"
        )
    why = unwritable(p.parent)
    if why is not None:
        raise MissingFileError(
            f"{short_path(p)}: cannot write here: {why}; choose a writable folder for the {what}"
        )


def report_paths(out_json: str | os.PathLike[str]) -> list[Path]:
    """The files an evaluation report writes: its JSON and, beside it, its two pictures."""
    p = Path(out_json)
    stem = p.parent / p.stem
    return [p, Path(f"{stem}_confusion.png"), Path(f"{stem}_misclassified.png")]


def check_report_outputs(out_json: str | os.PathLike[str] | None, option: str = "--output") -> None:
    """Every file of a report can be written, before any is: no half-written report."""
    if out_json is None:
        return
    check_output_file(out_json, "JSON report")
    for picture in report_paths(out_json)[1:]:
        check_not_folder(picture, option)


def check_not_folder(path: Path, option: str) -> None:
    """A file about to be replaced is not a folder (os.replace cannot put a file there)."""
    if path.is_dir():
        raise MissingFileError(
            f"{short_path(path)}: is a folder where fmnist writes a file; remove that folder "
            f"or choose another {option}"
        )


def check_writable_dir(path: str | os.PathLike[str], key: str) -> None:
    """`path` is, or can be made as, a folder this process may write to, or MissingFileError
    naming `key` (the config key or option that chose the path)."""
    why = unwritable(path)
    if why is not None:
        raise MissingFileError(f"{key}: {why}; choose another {key}")


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be made or written as a folder, or None. Creates nothing.

    Walks up to the nearest existing part: a file there (where a folder should be), a name or
    path too long, or a folder without write permission (never for root) is the reason.
    """
    try:
        p = Path(path).expanduser().absolute()
    except RuntimeError:  # ~nosuchuser/x
        return f"{short_path(path)}: cannot expand ~ (no such user, or no home folder)"
    try:
        _check_lengths(p)
        existing = p
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:
        return f"{short_path(p)}: {exc.strerror or exc}, use a shorter path"
    if not existing.is_dir():
        under = "" if existing == p else f" (on the way to {short_path(p)})"
        return f"{short_path(existing)} is a file where a folder should be{under}"
    if read_only(existing):  # before os.access, which says "no" here for everyone
        return f"{short_path(existing)}: read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{short_path(existing)}: permission denied"
    return None


def read_only(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` sits on a file system mounted read-only (no one may write there)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_run_outputs(output: Any, *, publish: bool | None = None) -> None:
    """output.dir, output.log_dir and output.cache_dir (the config's `output` section) can be
    written and, when the run publishes (default output.update_best), its best.* and latest.*
    are not folders.

    Before any data is loaded or run folder made: TensorBoard, the feature cache or publish
    would otherwise fail only once training has started or ended, in their own words.
    """
    for key in ("dir", "log_dir", "cache_dir"):
        check_writable_dir(getattr(output, key), f"output.{key}")
    if output.update_best if publish is None else publish:
        root = expand_path(output.dir, "output.dir")
        for target in published_files(root):
            check_not_folder(target, "output.dir")


def fresh_folder(root: Path, name: str, what: str = "run") -> Path:
    """A new folder <root>/<name>-<timestamp>[-k] for a run, a repeat group, a study or a tune.

    `mkdir` without exist_ok is the claim, so two processes never share a folder.
    """
    base = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_failure(exc, root, key="output.dir") from None
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise os_failure(exc, folder, key="output.dir") from None
    raise MissingFileError(f"output.dir: too many {what}s named {base} in {root}")


def _check_lengths(p: Path) -> None:
    """ENAMETOOLONG before anything is created: a part over NAME_MAX or the whole over PATH_MAX."""
    anchor = next((q for q in [p, *p.parents] if q.exists()), Path(p.anchor))
    name_max = os.pathconf(anchor, "PC_NAME_MAX")
    path_max = os.pathconf(anchor, "PC_PATH_MAX")
    too_long = len(os.fsencode(p)) >= path_max or any(
        len(os.fsencode(part)) > name_max for part in p.parts
    )
    if too_long:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), os.fspath(p))
