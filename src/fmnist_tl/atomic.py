"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or a crash) never sees a half-written artifact: the old file stays whole
until `os.replace` swaps in the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import MissingFileError, os_failure, short_path
from .paths import open_regular


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    Any OSError on the way (a folder where the file should be, a file where a folder should
    be, no permission, a name too long, a full disk while the block writes) becomes one
    exit-3 line naming `path`; the temporary file is removed and the old file stays whole.
    """
    path = Path(path)
    if path.is_dir():
        raise MissingFileError(
            f"{short_path(path)}: is a folder; give a file path, e.g. {short_path(path / 'name')}"
        )
    # Keep the suffix: Keras decides the format from it (".keras", ".weights.h5").
    suffix = "".join(path.suffixes) or ".tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:100]}.", suffix=suffix, dir=path.parent)
    except OSError as exc:  # a file where a folder should be, no permission, read-only disk
        raise os_failure(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give artifacts the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:  # ENOSPC while writing, EISDIR on the rename, ...
        raise _write_failure(exc, path, tmp_path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_failure(exc: OSError, path: Path, tmp: Path) -> MissingFileError:
    """Name the file being written, not its temporary name (or the other file named)."""
    named = exc.filename
    if named is not None and Path(os.fsdecode(named)) not in (tmp, path):
        return os_failure(exc)  # e.g. copy_file's source is missing
    return os_failure(exc, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def loads_json(text: str) -> Any:
    """JSON as every reader here parses it: a document nested too deep for Python's parser
    (RecursionError) is a ValueError like any malformed one, so each reader's `except
    ValueError` (a damaged file: exit 3, or a file to replace) covers it."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Let `writer` fill a temporary path (e.g. `model.save`), then rename it into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file (hashlib reads it in large chunks, GIL released); a
    FIFO or device is refused (NotRegularFile, an OSError), never read."""
    with open_regular(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; make them plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
