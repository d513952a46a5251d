"""Fashion-MNIST as CSV (Kaggle's layout): a label then 784 pixels per row, an optional header.

NumPy's C parser reads a well-formed file fast; only when it fails does a slow scan find the
first bad line and cell, so a message names them in our words, never NumPy's advice. The read
is bounded before it starts: a file larger than Fashion-MNIST's rows can be is refused by its
size, and at most the rows Fashion-MNIST has, plus one to tell a file that has more, are
parsed. Only a regular file is opened (paths.open_regular): a FIFO never blocks.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import DataError, NotRegularFile, short_path
from ..paths import open_regular
from .idx import PIXELS

CELLS = 1 + PIXELS  # the label, then the pixels
# The longest row a Fashion-MNIST CSV can have, with room: 785 cells of "255, " (5 bytes)
# plus a line ending. A file over (rows + 1 for a header) x this is not Fashion-MNIST.
MAX_ROW_BYTES = CELLS * 5 + 2


def read_csv(path: Path, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 28, 28, 1) uint8 and labels (N,) int64 of a CSV of at most `limit` rows."""
    try:
        size = os.stat(path).st_size
        with open_regular(path, "r", encoding="utf-8-sig") as f:
            first = next((line for line in _lines(f) if line.strip()), "")
    except NotRegularFile as e:
        raise DataError(f"{short_path(path)}: {e.strerror}; give the CSV file itself") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as a text CSV file ({e})") from None
    if not first:
        raise DataError(f"{path}: file is empty")
    if size > (limit + 1) * MAX_ROW_BYTES:
        raise DataError(
            f"{path}: {size} bytes, more than a CSV of Fashion-MNIST's {limit} rows can hold "
            f"({(limit + 1) * MAX_ROW_BYTES}); not a Fashion-MNIST CSV"
        )
    header = not _is_int(first.split(",")[0])
    try:
        with open_regular(path, "r", encoding="utf-8-sig") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": below
            table = np.loadtxt(
                f, dtype=np.uint8, delimiter=",", ndmin=2, skiprows=int(header), max_rows=limit + 1
            )
    except (ValueError, UnicodeDecodeError):  # NumPy's message is terse; find the exact cell
        raise _problem(path, header) from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    if table.shape[0] > limit:
        raise DataError(f"{path}: more than {limit} rows, Fashion-MNIST's count for this file")
    if table.shape[1] != CELLS or (table[:, 0] > 9).any():
        raise _problem(path, header)
    return table[:, 1:].reshape(-1, 28, 28, 1).copy(), table[:, 0].astype(np.int64)


def _lines(f: IO[str]) -> Iterator[str]:
    """The file's lines, each cut at MAX_ROW_BYTES characters: a line without an end is not
    read whole into memory to find the header."""
    while line := f.readline(MAX_ROW_BYTES):
        yield line


def _problem(path: Path, header: bool) -> DataError:
    """Slow, exact scan (only after the fast parse failed) for the first bad line and cell."""
    try:
        found = _scan(path, header)
    except UnicodeDecodeError as e:
        return DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
    return found or DataError(
        f"{path}: not a CSV of a label and {PIXELS} pixels per line; check the file"
    )


def _scan(path: Path, header: bool) -> DataError | None:
    with open_regular(path, "r", encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        for row in rows:
            line = rows.line_num
            if (header and line == 1) or not row:  # an empty line: NumPy skips it too
                continue
            if not any(c.strip() for c in row):
                return DataError(
                    f"{path}: line {line} is blank but not empty (only spaces or commas); "
                    "delete that line"
                )
            if len(row) != CELLS:
                return DataError(
                    f"{path}: line {line} has {len(row)} columns, expected {CELLS} "
                    "(a label then 784 pixels)"
                )
            for col, cell in enumerate(row, start=1):
                if not _is_int(cell):
                    return DataError(f"{path}: line {line}, column {col}: {cell!r} is not a number")
                value, (top, what) = int(cell), ((9, "label") if col == 1 else (255, "pixel"))
                if not 0 <= value <= top:
                    return DataError(
                        f"{path}: line {line}, column {col}: {what} {value} is outside 0..{top}"
                    )
    return None


def _is_int(text: str) -> bool:
    try:
        int(text.strip())
    except ValueError:
        return False
    return True
