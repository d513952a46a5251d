"""fmnist_tl.data: sources, checks, splits and the tf.data pipeline, on real files in tmp_path."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import idx_bytes, write_idx

from fmnist_tl.classes import CLASS_NAMES
from fmnist_tl.data import pipeline
from fmnist_tl.data import sources as data
from fmnist_tl.errors import ConfigError, DataError

IDX = data.IDX_NAMES  # train images, train labels, test images, test labels
REAL = pytest.mark.skipif(
    not all((data.DEBIAN_DIR / f"{n}.gz").is_file() for n in IDX),
    reason="dataset-fashion-mnist is not installed",
)


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    x_te = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    y_tr = rng.permutation(np.arange(50) % 10).astype(np.int64)
    y_te = rng.permutation(np.arange(20) % 10).astype(np.int64)
    return x_tr, y_tr, x_te, y_te


def write_csv(folder: Path, arrays, header: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = arrays
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        rows = [",".join(["label"] + [f"pixel{i}" for i in range(1, 785)])] if header else []
        rows += [",".join(map(str, [yy, *xx.ravel()])) for xx, yy in zip(x, y, strict=True)]
        (folder / f"fashion-mnist_{name}.csv").write_text("\n".join(rows) + "\n")
    return folder


def error_of(folder: Path) -> str:
    with pytest.raises(DataError) as info:
        data.load_fashion_mnist(folder, allow_download=False)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert info.value.exit_code == 3
    return msg


@pytest.mark.parametrize("layout", ["idx", "idx.gz", "csv", "csv+header"])
def test_every_layout_loads_the_same_arrays(tmp_path, arrays, layout):
    if layout.startswith("idx"):
        folder = write_idx(tmp_path / layout, arrays, gz=layout == "idx.gz")
    else:
        folder = write_csv(tmp_path / layout, arrays, header=layout == "csv+header")
    ds = data.load_fashion_mnist(folder, allow_download=False)
    for got, want in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), arrays, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype and got.shape == want.shape
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert str(folder) in ds.source
    if layout.startswith("idx"):
        assert ("gzipped" in ds.source) == (layout == "idx.gz")
        assert ds.checksums == dict.fromkeys(IDX, "not checked (not the upstream size)")
    else:
        assert set(ds.checksums.values()) == {"not available (CSV)"}


def _flip_magic(raw: bytes) -> bytes:
    return raw[:3] + bytes([raw[3] ^ 0x01]) + raw[4:]


@pytest.mark.parametrize(
    ("file", "corrupt", "expected"),
    [
        (IDX[0], _flip_magic, ["bad magic number 0x00000802", "expected 0x00000803"]),
        (IDX[1], _flip_magic, ["bad magic number 0x00000800", "expected 0x00000801"]),
        (IDX[2], lambda r: r[:-100], ["truncated", "15696 bytes", "15596 bytes"]),
        (IDX[3], lambda r: r[:8] + bytes([12]) + r[9:], ["label 12 at index 0", "0..9"]),
        (IDX[1], lambda r: r[:-1], ["truncated"]),
        (IDX[0], lambda r: r[:8] + struct.pack(">I", 27) + r[12:], ["27x28", "expected 28x28"]),
        (IDX[0], lambda r: b"", ["file is empty"]),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_broken_idx_file_is_named_with_its_problem(tmp_path, arrays, file, corrupt, expected, gz):
    folder = write_idx(tmp_path, arrays, gz=gz)
    path = folder / (f"{file}.gz" if gz else file)
    raw = corrupt(idx_bytes(arrays[IDX.index(file)]))
    path.write_bytes(gzip.compress(raw) if gz and raw else raw)
    msg = error_of(folder)
    assert msg.startswith(str(path))
    for part in expected:
        assert part in msg


def test_count_mismatch_and_bad_gzip(tmp_path, arrays):
    folder = write_idx(tmp_path, arrays, gz=True)
    (folder / f"{IDX[1]}.gz").write_bytes(gzip.compress(idx_bytes(arrays[1][:49])))
    assert "49 labels but" in error_of(folder) and "has 50 images" in error_of(folder)
    good = gzip.compress(idx_bytes(arrays[3]))
    (folder / f"{IDX[3]}.gz").write_bytes(good[: len(good) // 2])
    (folder / f"{IDX[1]}.gz").write_bytes(gzip.compress(idx_bytes(arrays[1])))
    assert error_of(folder).startswith(f"{folder / IDX[3]}.gz: gzip data is truncated")
    (folder / f"{IDX[3]}.gz").write_bytes(b"this is not gzip")
    assert "not a valid gzip file" in error_of(folder)


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize(
    ("row", "col", "value", "expected"),
    [
        (3, 500, None, "has 784 columns, expected 785"),
        (4, 10, "abc", "column 10: 'abc' is not a number"),
        (2, 100, "300", "column 100: pixel 300 is outside 0..255"),
        (5, 1, "12", "column 1: label 12 is outside 0..9"),
        (1, 3, "-1", "column 3: pixel -1 is outside 0..255"),
    ],
)
def test_broken_csv_names_line_and_problem(tmp_path, arrays, header, row, col, value, expected):
    folder = write_csv(tmp_path, arrays, header=header)
    path = folder / "fashion-mnist_test.csv"
    lines = path.read_text().splitlines()
    cells = lines[row - 1 + header].split(",")
    if value is None:
        del cells[col - 1]
    else:
        cells[col - 1] = value
    lines[row - 1 + header] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    msg = error_of(folder)
    assert msg.startswith(f"{path}: line {row + header}")
    assert expected in msg


def test_empty_csv_and_header_only(tmp_path, arrays):
    folder = write_csv(tmp_path, arrays, header=True)
    path = folder / "fashion-mnist_train.csv"
    path.write_text("")
    assert error_of(folder) == f"{path}: file is empty"
    path.write_text("label," + ",".join(f"pixel{i}" for i in range(1, 785)) + "\n")
    assert error_of(folder) == f"{path}: no data rows"


def test_data_dir_without_either_layout_never_falls_back(tmp_path, arrays, monkeypatch):
    good = write_idx(tmp_path / "good", arrays, gz=True)
    monkeypatch.setattr(data, "_default_dirs", lambda: [("Keras cache", good)])
    folder = write_idx(tmp_path / "partial", arrays, gz=False)
    (folder / IDX[3]).unlink()
    msg = error_of(folder)
    assert msg.startswith(str(folder))
    assert f"missing {IDX[3]}" in msg
    for name in (*IDX, *data.CSV_NAMES):
        assert name in msg
    assert "does not exist" in error_of(tmp_path / "nowhere")


def test_nothing_found_lists_every_place_tried(tmp_path, monkeypatch):
    empty, absent = tmp_path / "empty", tmp_path / "absent"
    empty.mkdir()
    monkeypatch.setattr(data, "_default_dirs", lambda: [("Keras cache", absent), ("Deb", empty)])
    with pytest.raises(DataError) as info:
        data.load_fashion_mnist(allow_download=False)
    msg = str(info.value)
    assert "\n" not in msg
    for part in (
        str(absent),
        str(empty),
        "Keras download",
        "apt-get install dataset-fashion-mnist",
        "data.dir",
    ):
        assert part in msg
    assert data.sources_tried(None) == [f"Keras cache {absent}", f"Deb {empty}", "Keras download"]


def test_default_places_in_order_and_a_broken_one_is_skipped(tmp_path, arrays, monkeypatch):
    first = write_idx(tmp_path / "first", arrays, gz=True)
    second = write_csv(tmp_path / "second", arrays, header=False)
    dirs = [("Keras cache", first), ("Deb", second)]
    monkeypatch.setattr(data, "_default_dirs", lambda: dirs)
    assert data.load_fashion_mnist(allow_download=False).source.startswith("Keras cache")
    (first / f"{IDX[0]}.gz").write_bytes(b"")
    assert data.load_fashion_mnist(allow_download=False).source.startswith("Deb: CSV")


def test_keras_download_is_checked_and_its_failure_reported(tmp_path, arrays, monkeypatch):
    import keras

    x_tr, y_tr, x_te, y_te = arrays
    fake = ((x_tr[..., 0], y_tr.astype(np.uint8)), (x_te[..., 0], y_te.astype(np.uint8)))
    monkeypatch.setattr(data, "_default_dirs", lambda: [("Keras cache", tmp_path)])
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: fake)
    ds = data.load_fashion_mnist()
    assert ds.source.startswith("Keras download") and ds.x_train.shape == (50, 28, 28, 1)
    np.testing.assert_array_equal(ds.x_test, x_te)
    assert ds.y_test.dtype == np.int64

    def offline():
        raise Exception("URL fetch failure on https://example.invalid: no network\nmore")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DataError) as info:
        data.load_fashion_mnist()
    msg = str(info.value)
    assert "Keras download (failed: Exception: URL fetch failure" in msg and "\n" not in msg
    assert f"Keras cache {tmp_path} (no IDX or CSV files)" in msg


def test_split_is_stratified_seeded_disjoint_and_complete():
    y = np.repeat(np.arange(10), [30, 31, 32, 33, 34, 35, 36, 37, 38, 39])
    x = np.arange(len(y)).reshape(-1, 1, 1, 1).astype(np.int64)  # x holds each row's index
    (x_tr, y_tr), (x_val, y_val) = data.split_train_val(x, y, 0.2, seed=1)
    for c in range(10):
        assert abs((y_val == c).sum() - 0.2 * (y == c).sum()) <= 1
    ids_tr, ids_val = x_tr.ravel(), x_val.ravel()
    assert not set(ids_tr) & set(ids_val)
    np.testing.assert_array_equal(np.sort(np.concatenate([ids_tr, ids_val])), np.arange(len(y)))
    np.testing.assert_array_equal(y[ids_val], y_val)
    again = data.split_train_val(x, y, 0.2, seed=1)[1][0]
    other = data.split_train_val(x, y, 0.2, seed=2)[1][0]
    np.testing.assert_array_equal(again, x_val)
    assert not np.array_equal(other, x_val)


def test_split_zero_gives_typed_empty_val_and_bad_fraction_is_config_error(arrays):
    x, y = arrays[0], arrays[1]
    (x_tr, y_tr), (x_val, y_val) = data.split_train_val(x, y, 0.0, seed=0)
    np.testing.assert_array_equal(x_tr, x)
    assert x_val.shape == (0, 28, 28, 1) and x_val.dtype == np.uint8
    assert y_val.shape == (0,) and y_val.dtype == np.int64
    with pytest.raises(ConfigError):
        data.split_train_val(x, y, 1.0, seed=0)


def test_limit(arrays):
    x, y = arrays[0], arrays[1]
    assert data.limit(x, y, None)[0] is x
    lx, ly = data.limit(x, y, 7)
    np.testing.assert_array_equal(lx, x[:7])
    np.testing.assert_array_equal(ly, y[:7])


def test_make_dataset_casts_per_batch_and_shuffles_reproducibly(arrays):
    x, y = arrays[0], arrays[1]
    ds = pipeline.make_dataset(x, y, batch_size=16, shuffle=False, seed=0)
    batches = list(ds.as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    assert batches[0][0].dtype == np.float32 and batches[0][0].shape == (16, 28, 28, 1)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)

    def labels(seed):
        ds = pipeline.make_dataset(
            x, y, batch_size=16, shuffle=True, seed=seed, drop_remainder=True
        )
        return [np.concatenate([b[1] for b in ds.as_numpy_iterator()]) for _ in range(2)]

    first, second = labels(3), labels(3)
    assert len(first[0]) == 48
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # reshuffled each epoch
    assert not np.array_equal(first[0], labels(4)[0])
    assert len(list(pipeline.make_dataset(x[:0], y[:0], batch_size=4, shuffle=True, seed=0))) == 0


def test_describe_and_format(arrays):
    ds = data.FashionMNIST(*arrays, source="test arrays", checksums={"a": "ok"})
    info = data.describe(ds)
    assert info["source"] == "test arrays" and info["checksums"] == {"a": "ok"}
    assert info["splits"]["train"]["count"] == 50
    assert info["splits"]["test"]["per_class"] == dict.fromkeys(CLASS_NAMES, 2)
    text = data.format_description(info)
    assert "test arrays" in text
    assert any(line.split()[-3:] == ["boot", "5", "2"] for line in text.splitlines())
    assert any(line.split()[-2:] == ["50", "20"] for line in text.splitlines())


@REAL
def test_real_debian_data_loads_with_upstream_checksums():
    ds = data.load_fashion_mnist(data.DEBIAN_DIR, allow_download=False)
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert len(ds.y_train) == 60000 and len(ds.y_test) == 10000
    assert ds.checksums == dict.fromkeys(IDX, "ok (upstream SHA-256)")
    assert data.describe(ds)["splits"]["test"]["per_class"] == dict.fromkeys(CLASS_NAMES, 1000)


@REAL
def test_one_flipped_pixel_in_real_data_is_a_checksum_error(tmp_path):
    for name in IDX[:2] + IDX[3:]:
        (tmp_path / f"{name}.gz").symlink_to(data.DEBIAN_DIR / f"{name}.gz")
    with gzip.open(data.DEBIAN_DIR / f"{IDX[2]}.gz") as f:
        raw = bytearray(f.read())
    raw[16 + 5000 * 784 + 400] ^= 0xFF
    (tmp_path / IDX[2]).write_bytes(bytes(raw))
    msg = error_of(tmp_path)
    assert msg.startswith(str(tmp_path / IDX[2]))
    assert "SHA-256 mismatch: file is corrupt or not the upstream Fashion-MNIST" in msg


def test_data_info_command(synthetic_dir, tmp_path):
    from typer.testing import CliRunner

    from fmnist_tl.cli import app

    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(synthetic_dir)])
    assert result.exit_code == 0, result.output
    assert str(synthetic_dir) in result.output
    assert "400" in result.output and "100" in result.output  # train / test counts
    assert "Ankle boot" in result.output
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 3
    assert str(tmp_path / "none") in result.output
