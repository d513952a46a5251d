"""Fashion-MNIST: find it, check it, split it (pipeline.py feeds it to Keras through tf.data).

Arrays stay uint8 (N, 28, 28, 1) in memory; casting happens per batch and resizing only inside
the model, so 224x224 experiments never hold a resized copy of the dataset.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import CLASS_NAMES
from ..errors import ConfigError, DataError, first_line, short_path
from ..libdirs import user_keras_home
from ..paths import check_data_dir, expand_path, file_problem
from .csvfile import read_csv
from .idx import check_labels, idx_header, read_idx

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
    return [
        ("Keras cache", user_keras_home() / "datasets" / "fashion-mnist"),
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
    """Read the IDX layout (preferred) or the CSV layout; (None, what is missing) if neither.

    A name that exists but is no regular file (a FIFO, a folder) is an error naming it, never
    skipped as missing nor opened."""
    idx = {}
    for name in IDX_NAMES:
        found = [p for p in (d / name, d / f"{name}.gz") if _present(p)]
        if found:
            idx[name] = found[0]  # plain wins: no need to decompress
    if len(idx) == len(IDX_NAMES):
        arrays, checks = [], {}
        for name, path in idx.items():
            array, raw = read_idx(path, images="images" in name, limit=_count(name))
            arrays.append(array)
            checks[name] = _check_sha(path, name, raw, len(array))
        x_tr, y_tr, x_te, y_te = arrays
        _same_count(idx[IDX_NAMES[1]], y_tr, idx[IDX_NAMES[0]], x_tr)
        _same_count(idx[IDX_NAMES[3]], y_te, idx[IDX_NAMES[2]], x_te)
        n_gz = sum(p.suffix == ".gz" for p in idx.values())
        kind = {0: "IDX files", 4: "IDX files (gzipped)"}.get(n_gz, "IDX files (some gzipped)")
        return FashionMNIST(x_tr, y_tr, x_te, y_te, f"{label}: {kind} in {d}", checks), ""
    csvs = [d / n for n in CSV_NAMES]
    if all(_present(p) for p in csvs):
        (x_tr, y_tr), (x_te, y_te) = (read_csv(p, _count(p.name)) for p in csvs)
        checks = {p.name: "not available (CSV)" for p in csvs}
        return FashionMNIST(x_tr, y_tr, x_te, y_te, f"{label}: CSV files in {d}", checks), ""
    if not idx and not any(p.is_file() for p in csvs):
        return None, "no IDX or CSV files"
    missing = [n for n in IDX_NAMES if n not in idx] + [p.name for p in csvs if not p.is_file()]
    return None, f"missing {', '.join(missing)}"


def _present(path: Path) -> bool:
    """Whether a data file is there: False when nothing is; DataError when something that
    cannot be read as a file is (a FIFO, a folder, no permission)."""
    if not os.path.lexists(path):
        return False
    problem = file_problem(path, "data file")
    if problem is not None:
        raise DataError(f"{short_path(path)}: {problem}; give the data file itself")
    return True


def _count(name: str) -> int:
    """The most images a file of this name may hold: Fashion-MNIST's own count."""
    return UPSTREAM_COUNT["train" if name.startswith(("train", "fashion-mnist_train")) else "t10k"]


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


def _keras_download() -> FashionMNIST:
    """Keras checks the .gz hashes; we still hash the IDX bytes so `checksums` means the same."""
    import keras

    (x_tr, y_tr), (x_te, y_te) = keras.datasets.fashion_mnist.load_data()
    arrays, checks = [], {}
    for name, a in zip(IDX_NAMES, (x_tr, y_tr, x_te, y_te), strict=True):
        a = np.asarray(a, np.uint8)
        head = idx_header(a.ndim == 3, len(a))
        where = f"Keras download {name}"
        checks[name] = _check_sha(where, name, head + a.tobytes(), len(a))
        if a.ndim == 3:
            arrays.append(a.reshape(-1, 28, 28, 1))
        else:
            check_labels(where, a)
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
