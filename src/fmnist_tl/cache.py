"""Verified cache files: the one home of every cache file (features, activations, the converted
frozen passes of models/frozen.py).

`save_array` writes `NAME.npy` atomically, then a sidecar `NAME.npy.meta.json` (atomically too)
with the file's SHA-256, size, shape and dtype. `load_array` checks all four before it trusts
a file: a truncated, altered or unrecorded file is never loaded. It is reported in one line on
stderr ("feature cache PATH was corrupt (why); rebuilt") once the caller has saved the
rebuilt array, and until then it is simply a miss.

Verifying costs one sequential read of the file and its SHA-256, measured on this project's
2-core VM for a 307 MB float32 array (60,000 x 1280, MobileNetV2's pooled features): SHA-256
alone about 0.5-0.7 s, a verified memory-mapped load about 0.45 s, a verified full load
0.6-1.5 s (warm page cache, other work on the machine; README "Caches"). After it, an array
may be memory-mapped (`mmap=True`): the pages just read are the ones mapped, so a large
activation cache need not be copied into the process.

`save_bytes` and `load_bytes` do the same for a file of bytes (a converted model): the sidecar
records its SHA-256 and size, both checked before it is read.

Two processes writing the same key write the same bytes; if their files and sidecars cross,
the next load sees a mismatch and rebuilds once: a cache can cost time, never a wrong array.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, progress
from .errors import short_path
from .paths import open_regular, read_text

META_SUFFIX = ".meta.json"
FORMAT = 1  # the sidecar's layout; another value is "not verifiable", so rebuilt

_pending: dict[Path, tuple[str, str]] = {}  # path -> (what, why): corrupt, rebuild not saved yet


def meta_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar that records `path`'s checksum, size, shape and dtype."""
    path = Path(path)
    return path.with_name(path.name + META_SUFFIX)


def save_array(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` to `path` (.npy) and its sidecar, each atomically.

    When `load_array` found this path corrupt, this is the rebuild: one line says so.
    """
    path = Path(path)
    record: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        np.save(tmp, array, allow_pickle=False)
        record.update(
            format=FORMAT,
            sha256=atomic.sha256_file(tmp),
            bytes=tmp.stat().st_size,
            shape=list(array.shape),
            dtype=str(array.dtype),
        )

    atomic.write_with(path, write)
    atomic.write_json(meta_path(path), record)
    pending = _pending.pop(path.absolute(), None)
    if pending is not None:
        what, why = pending
        progress.say(f"{what} {short_path(path)} was corrupt ({why}); rebuilt")


def load_array(
    path: str | os.PathLike[str],
    expect_rows: int | None = None,
    *,
    what: str | None = None,
    mmap: bool = False,
) -> np.ndarray | None:
    """The array at `path` if it is exactly what `save_array` wrote, else None.

    None for a missing file (a plain miss) and for a damaged one, whose reason is kept for
    the one line `save_array` prints when the rebuilt array is saved. `expect_rows`: the
    number of rows the caller needs (a stale file for other data is damaged too). `what`
    names the cache in that line (default: "feature cache", or "activation cache" for files
    named activations-*). `mmap`: map the verified file read-only instead of reading it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    why = verify(path, expect_rows)
    if why is None:
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:  # changed between the check and the load
            why = f"unreadable: {exc}"
    _pending[path.absolute()] = (what or _what(path), why)
    return None


def verify(path: Path, expect_rows: int | None = None) -> str | None:
    """Why the array at `path` cannot be trusted (a short reason), or None when it checks out."""
    record, why = _checked(path)
    if why is not None:
        return why
    try:
        shape, dtype = tuple(record["shape"]), np.dtype(record["dtype"])
    except (KeyError, TypeError, ValueError):
        return "its checksum record is unreadable"
    header = _header(path)
    if header != (shape, dtype):
        return f"its header says {header}, the record {shape} {dtype}"
    if expect_rows is not None and (not shape or shape[0] != expect_rows):
        return f"{shape[0] if shape else 0} rows, expected {expect_rows}"
    return None


def _checked(path: Path, data: bytes | None = None) -> tuple[dict[str, Any], str | None]:
    """The sidecar's record of `path`, and why the file (or `data`, its bytes already read)
    does not match it; None when it does."""
    try:
        record = atomic.loads_json(read_text(meta_path(path)))  # a FIFO: unreadable, not a wait
        size, digest = int(record["bytes"]), str(record["sha256"])
        if record.get("format") != FORMAT:
            return {}, "its checksum record has an unknown format"
    except FileNotFoundError:
        return {}, "no checksum record beside it"
    except (OSError, ValueError, KeyError, TypeError):
        return {}, "its checksum record is unreadable"
    actual = path.stat().st_size if data is None else len(data)
    if actual != size:
        return record, f"{'truncated' if actual < size else 'too long'}: {actual} of {size} bytes"
    found = atomic.sha256_file(path) if data is None else hashlib.sha256(data).hexdigest()
    if found != digest:
        return record, "SHA-256 mismatch: the file was altered"
    return record, None


def save_bytes(path: str | os.PathLike[str], data: bytes, *, what: str) -> None:
    """Write `data` to `path` and its sidecar (SHA-256 and size), each atomically; after a
    corrupt file, the one line that says it was rebuilt names it `what`."""
    path = Path(path)
    atomic.write_with(path, lambda tmp: tmp.write_bytes(data))
    record = {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    atomic.write_json(meta_path(path), record)
    pending = _pending.pop(path.absolute(), None)
    if pending is not None:
        progress.say(f"{what} {short_path(path)} was corrupt ({pending[1]}); rebuilt")


def load_bytes(path: str | os.PathLike[str], *, what: str) -> bytes | None:
    """The bytes at `path` if they are exactly what `save_bytes` wrote, else None (a damaged
    file's reason is kept for `save_bytes`'s line, as for `load_array`)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open_regular(path, "rb") as f:  # read once, then checked: what is returned is
            data = f.read()  # what matched
    except OSError as exc:
        why: str | None = f"unreadable: {exc}"
    else:
        _, why = _checked(path, data)
        if why is None:
            return data
    _pending[path.absolute()] = (what, why or "")
    return None


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype] | str:
    """The .npy header's shape and dtype, read without loading the data."""
    fmt = np.lib.format
    try:
        with open_regular(path, "rb") as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError) as exc:
        return f"an unreadable header ({exc})"
    return tuple(shape), dtype


def _what(path: Path) -> str:
    return "activation cache" if path.name.startswith("activations-") else "feature cache"
