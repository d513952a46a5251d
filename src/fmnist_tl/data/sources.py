"""Fashion-MNIST: find it, check it, split it (pipeline.py feeds it to Keras through tf.data).

Arrays stay uint8 (N, 28, 28, 1) in memory; casting happens per batch and resizing only inside
the model, so 224x224 experiments never hold a resized copy of the dataset.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import CLASS_NAMES
from ..errors import ConfigError, DataError, first_line
from ..paths import check_data_dir, expand_path

log = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
UPSTREAM_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
UPSTREAM_COUNT = {"train": 60000, "t10k": 10000}
IDX_NAMES = tuple(UPSTREAM_SHA256)  # train images, train labels, test images, test labels
CSV_NAMES = ("fashion-mnist_train.csv", "fashion-mnist_test.csv")
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801
_PIXELS = 28 * 28
_HOW_TO_FIX = (
    "Install it with `apt-get install dataset-fashion-mnist`, or set data.dir to a folder with "
    f"the IDX files ({', '.join(IDX_NAMES)}, plain or .gz) or the CSV files "
    f"({', '.join(CSV_NAMES)})."
)


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays elementwise has no truth value
class FashionMNIST:
    x_train: np.ndarray  # uint8 (N, 28, 28, 1)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    checksums: dict[str, str] = field(default_factory=dict)


def _default_dirs() -> list[tuple[str, Path]]:
    """Places searched when data.dir is unset, in order (tests point these at tmp folders)."""
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    return [
        ("Keras cache", keras_home / "datasets" / "fashion-mnist"),
        ("Debian package dataset-fashion-mnist", DEBIAN_DIR),
    ]


def sources_tried(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The places `load_fashion_mnist` looks, in order, for messages and `data info`."""
    if data_dir is not None:
        return [f"data.dir {expand_path(data_dir, 'data.dir')}"]
    return [f"{label} {d}" for label, d in _default_dirs()] + ["Keras download"]


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, allow_download: bool = True
) -> FashionMNIST:
    """Load and check Fashion-MNIST from data_dir, else the default places, else a download."""
    if data_dir is not None:  # an explicit folder is never silently replaced by another source
        d = check_data_dir(data_dir)  # expanded (~user too) and a folder
        assert d is not None
        ds, missing = _load_dir(d, "data.dir")
        if ds is None:
            raise DataError(
                f"{d}: no complete Fashion-MNIST here ({missing}); expected the IDX files "
                f"{', '.join(IDX_NAMES)} (each plain or .gz) "
                f"or the CSV files {', '.join(CSV_NAMES)}"
            )
        return ds
    tried = []
    for label, d in _default_dirs():
        if not d.is_dir():
            tried.append(f"{label} {d} (no such folder)")
            continue
        try:
            ds, missing = _load_dir(d, label)
        except DataError as e:  # a broken cache should not hide a good copy further down
            log.warning("skipping %s: %s", label, e)
            tried.append(f"{label} {d} ({e})")
            continue
        if ds is not None:
            return ds
        tried.append(f"{label} {d} ({missing})")
    if not allow_download:
        tried.append("Keras download (not allowed here)")
    else:
        try:
            return _keras_download()
        except Exception as e:  # no internet, proxy, disk full: all mean "not available"
            tried.append(f"Keras download (failed: {type(e).__name__}: {first_line(e)[:200]})")
    raise DataError(f"Fashion-MNIST not found; tried: {'; '.join(tried)}. {_HOW_TO_FIX}")


def _load_dir(d: Path, label: str) -> tuple[FashionMNIST | None, str]:
    """Read the IDX layout (preferred) or the CSV layout; (None, what is missing) if neither."""
    idx = {}
    for name in IDX_NAMES:
        found = [p for p in (d / name, d / f"{name}.gz") if p.is_file()]
        if found:
            idx[name] = found[0]  # plain wins: no need to decompress
    if len(idx) == len(IDX_NAMES):
        arrays, checks = [], {}
        for name, path in idx.items():
            raw = _read_bytes(path)
            arrays.append(_parse_idx(path, raw, images="images" in name))
            checks[name] = _check_sha(path, name, raw, len(arrays[-1]))
        x_tr, y_tr, x_te, y_te = arrays
        _same_count(idx[IDX_NAMES[1]], y_tr, idx[IDX_NAMES[0]], x_tr)
        _same_count(idx[IDX_NAMES[3]], y_te, idx[IDX_NAMES[2]], x_te)
        n_gz = sum(p.suffix == ".gz" for p in idx.values())
        kind = {0: "IDX files", 4: "IDX files (gzipped)"}.get(n_gz, "IDX files (some gzipped)")
        return FashionMNIST(x_tr, y_tr, x_te, y_te, f"{label}: {kind} in {d}", checks), ""
    csvs = [d / n for n in CSV_NAMES]
    if all(p.is_file() for p in csvs):
        (x_tr, y_tr), (x_te, y_te) = (_read_csv(p) for p in csvs)
        checks = {p.name: "not available (CSV)" for p in csvs}
        return FashionMNIST(x_tr, y_tr, x_te, y_te, f"{label}: CSV files in {d}", checks), ""
    if not idx and not any(p.is_file() for p in csvs):
        return None, "no IDX or CSV files"
    missing = [n for n in IDX_NAMES if n not in idx] + [p.name for p in csvs if not p.is_file()]
    return None, f"missing {', '.join(missing)}"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz" and raw:
            raw = gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: gzip data is truncated (download or copy incomplete)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if not raw:
        raise DataError(f"{path}: file is empty")
    return raw


def _parse_idx(path: Path, raw: bytes, *, images: bool) -> np.ndarray:
    """Check an IDX header against the bytes and return uint8 images or int64 labels."""
    magic, header = (_IMAGES_MAGIC, 16) if images else (_LABELS_MAGIC, 8)
    what = "image" if images else "label"
    if len(raw) < header:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX {what} header")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise DataError(
            f"{path}: bad magic number 0x{found:08X}, expected 0x{magic:08X} (IDX {what} file)"
        )
    n = struct.unpack(">I", raw[4:8])[0]
    if n == 0:
        raise DataError(
            f"{path}: the header says 0 {what}s: the file holds no data; use complete files"
        )
    if images:
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (28, 28):
            raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28")
    expected = header + n * (_PIXELS if images else 1)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "too long"
        raise DataError(
            f"{path}: {problem}: header says {n} {what}s = {expected} bytes, "
            f"file has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, np.uint8, offset=header)
    if images:
        return data.reshape(n, 28, 28, 1).copy()
    _check_labels(path, data)
    return data.astype(np.int64)


def _check_labels(path: Path | str, labels: np.ndarray) -> None:
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..9")


def _check_sha(path: Path | str, name: str, raw: bytes, count: int) -> str:
    """Files with the upstream count must be upstream bytes: a flipped pixel fails here."""
    if count != UPSTREAM_COUNT[name.split("-")[0]]:
        return "not checked (not the upstream size)"
    got = hashlib.sha256(raw).hexdigest()
    if got != UPSTREAM_SHA256[name]:
        raise DataError(
            f"{path}: SHA-256 mismatch: file is corrupt or not the upstream Fashion-MNIST; "
            f"expected {UPSTREAM_SHA256[name]}, got {got} (of the decompressed bytes); "
            "reinstall dataset-fashion-mnist or fetch the files again"
        )
    return "ok (upstream SHA-256)"


def _same_count(labels_path: Path, y: np.ndarray, images_path: Path, x: np.ndarray) -> None:
    if len(y) != len(x):
        raise DataError(f"{labels_path}: {len(y)} labels but {images_path} has {len(x)} images")


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle layout: label then 784 pixels per row, optional header; numpy's C parser is fast."""
    try:
        with path.open(encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as a text CSV file ({e})") from None
    if not first:
        raise DataError(f"{path}: file is empty")
    header = not _is_int(first.split(",")[0])
    try:
        kw: dict[str, Any] = {"delimiter": ",", "ndmin": 2, "encoding": "utf-8-sig"}
        with warnings.catch_warnings():  # "input contained no data": reported below instead
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, dtype=np.uint8, skiprows=int(header), **kw)
    except ValueError as e:  # numpy's message is terse; find the exact cell ourselves
        raise _csv_problem(path, header) or DataError(f"{path}: {e}") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: no data rows")
    if table.shape[1] != 1 + _PIXELS:
        raise _csv_problem(path, header) or DataError(f"{path}: {table.shape[1]} columns")
    if (table[:, 0] > 9).any():
        raise _csv_problem(path, header) or DataError(f"{path}: label outside 0..9")
    return table[:, 1:].reshape(-1, 28, 28, 1).copy(), table[:, 0].astype(np.int64)


def _csv_problem(path: Path, header: bool) -> DataError | None:
    """Slow, exact scan (only after the fast parse failed) for the first bad line and cell."""
    try:
        return _scan_csv(path, header)
    except UnicodeDecodeError as e:
        return DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")


def _scan_csv(path: Path, header: bool) -> DataError | None:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        for row in rows:
            line = rows.line_num
            if (header and line == 1) or not any(c.strip() for c in row):
                continue
            if len(row) != 1 + _PIXELS:
                return DataError(
                    f"{path}: line {line} has {len(row)} columns, expected {1 + _PIXELS} "
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


def _keras_download() -> FashionMNIST:
    """Keras checks the .gz hashes; we still hash the IDX bytes so `checksums` means the same."""
    import keras

    (x_tr, y_tr), (x_te, y_te) = keras.datasets.fashion_mnist.load_data()
    arrays, checks = [], {}
    for name, a in zip(IDX_NAMES, (x_tr, y_tr, x_te, y_te), strict=True):
        a = np.asarray(a, np.uint8)
        if a.ndim == 3:
            head = struct.pack(">IIII", _IMAGES_MAGIC, len(a), 28, 28)
        else:
            head = struct.pack(">II", _LABELS_MAGIC, len(a))
        where = f"Keras download {name}"
        checks[name] = _check_sha(where, name, head + a.tobytes(), len(a))
        if a.ndim == 3:
            arrays.append(a.reshape(-1, 28, 28, 1))
        else:
            _check_labels(where, a)
            arrays.append(a.astype(np.int64))
    return FashionMNIST(
        *arrays, source="Keras download (keras.datasets.fashion_mnist)", checksums=checks
    )


def describe(ds: FashionMNIST) -> dict[str, Any]:
    """Counts per split and class, plus provenance: what `fmnist data info` prints."""
    splits = {}
    for split, y in (("train", ds.y_train), ("test", ds.y_test)):
        counts = np.bincount(y, minlength=len(CLASS_NAMES))
        per_class = {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}
        splits[split] = {"count": int(len(y)), "per_class": per_class}
    return {"source": ds.source, "splits": splits, "checksums": dict(ds.checksums)}


def format_description(info: dict[str, Any]) -> str:
    """describe()'s output as a plain-text table, one row per class."""
    splits = info["splits"]
    names = list(splits)
    width = max(len(n) for n in CLASS_NAMES)
    lines = [f"Source: {info['source']}", ""]
    lines.append(f"{'label':>5}  {'class':<{width}}" + "".join(f"  {s:>7}" for s in names))
    for i, cls in enumerate(CLASS_NAMES):
        counts = "".join(f"  {splits[s]['per_class'].get(cls, 0):>7}" for s in names)
        lines.append(f"{i:>5}  {cls:<{width}}{counts}")
    totals = "".join(f"  {splits[s]['count']:>7}" for s in names)
    lines.append(f"{'':>5}  {'total':<{width}}{totals}")
    if info.get("checksums"):
        lines += ["", "Checksums:"]
        key_w = max(len(k) for k in info["checksums"])
        lines += [f"  {k:<{key_w}}  {v}" for k, v in info["checksums"].items()]
    return "\n".join(lines)


def split_train_val(
    x: np.ndarray, y: np.ndarray, val_split: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Stratified, seeded split; both parts keep the original order so runs are comparable."""
    if not 0.0 <= val_split < 1.0:
        raise ConfigError(f"data.val_split must be in [0, 1), got {val_split}")
    rng = np.random.default_rng(seed)
    val_parts = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n_val = int(round(len(members) * val_split))
        val_parts.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else np.empty(0, np.int64)
    is_val = np.zeros(len(y), bool)
    is_val[val_idx] = True
    return (x[~is_val], y[~is_val]), (x[is_val], y[is_val])


def limit(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first n examples, for quick runs (None keeps everything)."""
    if n is None:
        return x, y
    if n < 0:
        raise ConfigError(f"limit must be >= 0, got {n}")
    return x[:n], y[:n]
