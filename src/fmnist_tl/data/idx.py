"""IDX files (Fashion-MNIST's own format), plain or gzipped, read no further than they promise.

The header says how many images or labels follow, so a reader knows the exact size before it
reads the data: the header is read first and checked (magic number, a count that Fashion-MNIST
can have, 28x28), then exactly that many bytes plus one, the one telling a file that is too
long. A gzipped file is inflated through the same bounded read, so a small .gz that would
inflate to gigabytes costs at most what its header promises (47 MB for 60,000 images) before
it is refused. Only a regular file is opened (paths.open_regular): a FIFO never blocks.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import DataError, NotRegularFile, short_path
from ..paths import open_regular

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
PIXELS = 28 * 28


def read_idx(path: Path, *, images: bool, limit: int) -> tuple[np.ndarray, bytes]:
    """The checked uint8 images (N, 28, 28, 1) or int64 labels (N,) of an IDX file, and its
    (decompressed) bytes for the checksum. `limit`: the most items the header may promise."""
    try:
        with _open(path) as f:
            raw = _read_checked(path, f, images=images, limit=limit)
    except EOFError:
        raise DataError(f"{path}: gzip data is truncated (download or copy incomplete)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    except NotRegularFile as e:
        raise DataError(f"{short_path(path)}: {e.strerror}; give the IDX file itself") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    header = 16 if images else 8
    data = np.frombuffer(raw, np.uint8, offset=header)
    if images:
        return data.reshape(-1, 28, 28, 1).copy(), raw
    check_labels(path, data)
    return data.astype(np.int64), raw


@contextlib.contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes: as they are, or inflated as they are read (.gz)."""
    with open_regular(path, "rb") as f:
        if path.suffix != ".gz":
            yield f
            return
        with gzip.GzipFile(fileobj=f, mode="rb") as inflated:
            yield inflated  # type: ignore[misc]


def _read_checked(path: Path, f: IO[bytes], *, images: bool, limit: int) -> bytes:
    """The header, checked, then at most the bytes it promises plus one."""
    magic, size = (IMAGES_MAGIC, 16) if images else (LABELS_MAGIC, 8)
    what = "image" if images else "label"
    head = f.read(size)
    if not head:
        raise DataError(f"{path}: file is empty")
    if len(head) < size:
        raise DataError(f"{path}: only {len(head)} bytes, too short for an IDX {what} header")
    found, n = struct.unpack(">II", head[:8])
    if found != magic:
        raise DataError(
            f"{path}: bad magic number 0x{found:08X}, expected 0x{magic:08X} (IDX {what} file)"
        )
    if n == 0:
        raise DataError(
            f"{path}: the header says 0 {what}s: the file holds no data; use complete files"
        )
    if n > limit:
        raise DataError(
            f"{path}: the header says {n} {what}s, more than Fashion-MNIST's {limit}; "
            "not a Fashion-MNIST file (nothing past the header was read)"
        )
    if images and (dims := struct.unpack(">II", head[8:16])) != (28, 28):
        raise DataError(f"{path}: images are {dims[0]}x{dims[1]}, expected 28x28")
    expected = size + n * (PIXELS if images else 1)
    body = f.read(expected - size + 1)  # one more: a file that is too long shows it
    raw = head + body
    if len(raw) != expected:
        if len(raw) < expected:
            problem, has = "truncated", f"file has {len(raw)} bytes"
        else:
            problem, has = "too long", f"file has more{_size_note(path)}"
        raise DataError(f"{path}: {problem}: header says {n} {what}s = {expected} bytes, {has}")
    return raw


def _size_note(path: Path) -> str:
    """The file's size on disk, for a plain file (a gzipped one is not inflated to count)."""
    if path.suffix == ".gz":
        return " (not inflated further)"
    try:
        return f" ({os.stat(path).st_size} bytes)"
    except OSError:
        return ""


def check_labels(path: Path | str, labels: np.ndarray) -> None:
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..9")


def idx_header(images: bool, n: int) -> bytes:
    """The header of an IDX file of `n` images (28x28) or labels."""
    if images:
        return struct.pack(">IIII", IMAGES_MAGIC, n, 28, 28)
    return struct.pack(">II", LABELS_MAGIC, n)
