"""comparison.csv: a comparison's rows as plain data, written by `fmnist compare` and read back
by `fmnist compare --include`.

Run folders hold models and caches and stay on the machine that trained them; this file is
what travels. Rows measured on another machine, or on one whose run folders are gone, join a
new comparison's table and plots as recorded, beside the runs found on disk.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import MissingFileError, short_path
from ..paths import read_text
from .rows import RunRow

PathLike = str | os.PathLike[str]

# One column per RunRow field, then what the comparison adds per row.
COLUMNS = (
    "run",
    "backbone",
    "input_size",
    "resize_method",
    "weights",
    "stages",
    "epochs",
    "accuracy",
    "accuracy_std",
    "loss",
    "loss_std",
    "n",
    "wall_time_s",
    "data",
    "val_accuracy",
    "path",
)
_REQUIRED = ("run", "backbone", "stages", "accuracy", "n", "wall_time_s")


def write_rows(
    path: PathLike, rows: list[RunRow], data: list[str], val: list[float | None]
) -> None:
    """comparison.csv: one line per row, empty cells for what is unknown (a single run's std)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r, d, v in zip(rows, data, val, strict=True):
        fields = {**vars(r), "data": d, "val_accuracy": v}
        writer.writerow(["" if fields[c] is None else fields[c] for c in COLUMNS])
    atomic.write_text(path, buf.getvalue())


def read_rows(path: PathLike) -> tuple[list[RunRow], list[str], list[float | None]]:
    """The rows of a comparison.csv, its data counts and validation accuracies.

    A missing file, a missing column or a value that is not a number is one exit-3 line that
    names the file and the line, so a hand-edited file is fixed where it is wrong.
    """
    path = Path(path)
    name = short_path(path)
    try:  # utf-8-sig: a file saved by a spreadsheet starts with a byte-order mark
        text = read_text(path, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        what = "no such file" if isinstance(exc, FileNotFoundError) else exc
        raise MissingFileError(
            f"{name}: cannot be included ({what}); give a comparison.csv that "
            "`fmnist compare` wrote"
        ) from None
    reader = csv.DictReader(io.StringIO(text))
    rows, data, val = [], [], []
    try:
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise MissingFileError(
                f"{name}: not a comparison.csv (no column {', '.join(missing)}); give one that "
                "`fmnist compare` wrote"
            )
        for raw in reader:
            cell = {c: (raw.get(c) or "").strip() for c in COLUMNS}
            rows.append(_row(cell))
            data.append(_counts(cell))
            val.append(_fraction(cell, "val_accuracy", optional=True))
    except (ValueError, csv.Error) as exc:
        # line_num counts the file's lines, blank ones too: the record just read, or the
        # lines before one the csv module could not read.
        line = reader.line_num + (1 if isinstance(exc, csv.Error) else 0)
        raise MissingFileError(f"{name}: line {line}: {exc}; fix or remove that line") from None
    if not rows:
        raise MissingFileError(f"{name}: holds no rows; give a comparison.csv with runs in it")
    return rows, data, val


def _row(cell: dict[str, str]) -> RunRow:
    if not cell["run"]:
        raise ValueError("run is empty")
    wall = _number(cell, "wall_time_s")
    if wall <= 0:  # the cost plot's time axis is logarithmic
        raise ValueError(f"wall_time_s {cell['wall_time_s']!r} is not above 0")
    return RunRow(
        run=cell["run"],
        backbone=cell["backbone"],
        input_size=_size(cell["input_size"]),
        resize_method=cell["resize_method"] or None,
        weights=cell["weights"] or None,
        stages=cell["stages"],
        epochs=_epochs(cell),
        accuracy=_fraction(cell, "accuracy"),
        accuracy_std=_number(cell, "accuracy_std", optional=True),
        loss=_number(cell, "loss", optional=True),
        loss_std=_number(cell, "loss_std", optional=True),
        n=_count(cell),
        wall_time_s=wall,
        path=cell["path"],
    )


def _counts(cell: dict[str, str]) -> str:
    """ "train/val/test" image counts, or "" when not recorded."""
    text = cell["data"]
    parts = text.split("/")
    if text and (len(parts) != 3 or not all(p.isdigit() for p in parts)):
        raise ValueError(f"data {text!r} is not train/val/test image counts, e.g. 54000/6000/10000")
    return text


def _fraction(cell: dict[str, str], key: str, optional: bool = False) -> Any:
    value = _number(cell, key, optional)
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} {cell[key]!r} is not an accuracy between 0 and 1")
    return value


def _number(cell: dict[str, str], key: str, optional: bool = False) -> Any:
    text = cell[key]
    if not text:
        if optional:
            return None
        raise ValueError(f"{key} is empty")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{key} {text!r} is not a finite number")
    return value


def _size(text: str) -> int | str | None:
    # A group whose runs differ in size records "96/128".
    return int(text) if text.isdigit() else (text or None)


def _epochs(cell: dict[str, str]) -> int | float | None:
    # A group whose runs stopped at different epochs records their mean, "3.5".
    value = _number(cell, "epochs", optional=True)
    if value is None or "." in cell["epochs"]:
        return value
    return int(value)


def _count(cell: dict[str, str]) -> int:
    value = _number(cell, "n")
    if not value.is_integer() or value < 1:
        raise ValueError(f"n {cell['n']!r} is not a count of runs (1 or more)")
    return int(value)
