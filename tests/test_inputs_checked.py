"""Inputs are checked before they are read (issue 28, class 2, and class 1's non-regular files).

Through the real CLI: a FIFO (or a device) where fmnist reads a file is refused at once with
"not a regular file", never opened (it would wait forever for a writer); compressed data is
inflated no further than its header promises; a grid past --max-runs stops before planning;
Pillow's decompression-bomb limit and NaN pixels are one exit-3 line. Each case: its exit code,
exactly one line, nothing written.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, cli_fails, learnable, one_line, run_counting_cpu, snapshot, write_idx
from PIL import Image
from test_error_messages import fake_model

from fmnist_tl import cache
from fmnist_tl.config import load_config
from fmnist_tl.data import sources as data
from fmnist_tl.errors import ConfigError
from fmnist_tl.experiments.sweep import MAX_RUNS, plan_sweep

FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]


def fails_at_once(env, args, code, *needles, cwd=None) -> str:
    """`fmnist ARGS` in a subprocess whose TensorFlow cannot load: `code`, one line, quickly
    (a FIFO opened for reading would block until the timeout)."""
    done, cpu_s, wall_s = run_counting_cpu([*FMNIST, *args], env=env, timeout=60, cwd=cwd)
    assert done.returncode == code, done.stderr
    assert "TensorFlow loaded" not in done.stderr
    assert cpu_s < 3.0 and wall_s < 20.0, (args, cpu_s, wall_s)
    return one_line(done.stderr, *needles)


@pytest.fixture
def fifo(tmp_path):
    """A FIFO with no writer: opening it for reading the usual way blocks forever."""

    def make(name: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        return path

    return make


# -- a FIFO where a file is read: refused at once, named as such ----------------------------


def test_a_fifo_config_is_not_a_regular_file(fifo, no_tf, tmp_path):
    config = fifo("fifo.yaml")
    before = snapshot(tmp_path)
    for command in (["config", "show"], ["train"], ["sweep"]):
        line = fails_at_once(no_tf, [*command, str(config)], 2, str(config))
        assert "not a regular file (a FIFO)" in line and "not found" not in line
    assert snapshot(tmp_path) == before


def test_a_fifo_image_model_or_data_file_is_refused_before_tensorflow(fifo, no_tf, tmp_path):
    model = fake_model(tmp_path / "m.keras")
    image = fifo("x.png")
    fails_at_once(no_tf, ["predict", str(model), str(image)], 3, "x.png", "not a regular file")
    keras_fifo = fifo("fifo.keras")
    for command in (["predict", str(keras_fifo), str(image)], ["evaluate", str(keras_fifo)]):
        fails_at_once(no_tf, command, 3, "fifo.keras", "not a regular file (a FIFO)")
    data_dir = write_idx(tmp_path / "data", (*learnable(20, 1), *learnable(10, 2)), gz=True)
    (data_dir / f"{data.IDX_NAMES[1]}.gz").unlink()
    fifo(f"data/{data.IDX_NAMES[1]}")
    line = fails_at_once(no_tf, ["data", "info", "--data-dir", str(data_dir)], 3)
    assert data.IDX_NAMES[1] in line and "not a regular file (a FIFO)" in line
    included = fifo("comparison.csv")
    args = ["compare", "--root", str(tmp_path), "--include", str(included)]
    fails_at_once(no_tf, args, 3, "comparison.csv", "not a regular file")


def test_a_fifo_weights_file_is_refused(fifo, isolated, tmp_path):
    weights = fifo("weights.h5")
    args = ["train", str(SMOKE), *[a for s in isolated for a in ("--set", s)]]
    line = cli_fails([*args, "--set", f"model.weights={weights}"], 3, "model.weights")
    assert "not a regular file (a FIFO)" in line and str(weights) in line
    assert not (tmp_path / "saved_models").exists()


def test_a_fifo_beside_a_cache_file_is_a_miss_never_a_wait(fifo, tmp_path):
    path = tmp_path / "features.npy"
    cache.save_array(path, np.arange(6, dtype=np.float32).reshape(2, 3))
    cache.meta_path(path).unlink()
    fifo("features.npy.meta.json")  # the sidecar: read before the array is trusted
    assert cache.load_array(path, 2) is None  # returns at once: rebuilt, not waited on
    assert cache.verify(path) == "its checksum record is unreadable"


def test_a_character_device_is_not_read(no_tf, tmp_path):
    """/dev/zero would never end: a config or image there is refused, not read."""
    fails_at_once(no_tf, ["config", "show", "/dev/zero"], 2, "not a regular file (a character")
    model = fake_model(tmp_path / "m.keras")
    fails_at_once(no_tf, ["predict", str(model), "/dev/zero"], 3, "a character device")


# -- compressed data: inflated no further than its header promises --------------------------


def gzip_bomb(path: Path, promised: int, inflated_mib: int) -> Path:
    """An IDX image file whose header promises `promised` images but whose gzip stream
    inflates to `inflated_mib` MiB (of zeros: a few hundred KiB on disk)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(">IIII", 0x803, promised, 28, 28))
        chunk = bytes(2**20)
        for _ in range(inflated_mib):
            f.write(chunk)
    return path


def test_a_gzip_larger_inflated_than_promised_stops_at_the_promise(tmp_path):
    folder = write_idx(tmp_path / "data", (*learnable(40, 1), *learnable(10, 2)), gz=True)
    bomb = gzip_bomb(folder / f"{data.IDX_NAMES[0]}.gz", 1000, 256)
    assert bomb.stat().st_size < 2 * 2**20  # 256 MiB inflated
    tracemalloc.start()
    try:
        line = cli_fails(["data", "info", "--data-dir", str(folder)], 3, str(bomb), "too long")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "header says 1000 images = 784016 bytes" in line
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated: inflated past the promise"


def test_a_header_promising_more_than_fashion_mnist_is_refused_unread(tmp_path):
    folder = write_idx(tmp_path / "data", (*learnable(40, 1), *learnable(10, 2)), gz=False)
    path = folder / data.IDX_NAMES[2]  # the test images: at most 10,000
    path.write_bytes(struct.pack(">IIII", 0x803, 2**32 - 1, 28, 28) + bytes(784))
    line = cli_fails(["data", "info", "--data-dir", str(folder)], 3, str(path))
    assert "4294967295 images, more than Fashion-MNIST's 10000" in line


# -- a grid past the bound stops before planning --------------------------------------------


def test_a_grid_past_max_runs_stops_before_planning(no_tf, tmp_path):
    values = ",".join(str(v) for v in range(1, 101))
    grid = [f"--grid=model.head.units={values}", f"--grid=train.batch_size={values}"]
    grid += [f"--grid=train.epochs={values}"]  # 1,000,000 cells
    out = ["--set", f"output.dir={tmp_path / 'runs'}", "--set", f"output.log_dir={tmp_path}/l"]
    line = fails_at_once(no_tf, ["sweep", str(SMOKE), *grid, *out], 2, "1,000,000 runs")
    assert f"more than --max-runs {MAX_RUNS:,}" in line and "if you mean it" in line
    small = ["--grid", "train.batch_size=8,16,32", "--grid", "model.head.units=8,16"]
    fails_at_once(no_tf, ["sweep", str(SMOKE), *small, "--max-runs", "5", *out], 2, "6 runs")
    fails_at_once(no_tf, ["sweep", str(SMOKE), *small, "--seeds", "2", "--max-runs", "11"], 2)
    assert [p.name for p in tmp_path.iterdir()] == ["no_tf"]  # no study, no logs
    config = load_config(SMOKE)
    assert plan_sweep(config, small[1::2], None, max_runs=6).total == 6
    with pytest.raises(ConfigError, match="12 runs, more than --max-runs 11"):
        plan_sweep(config, small[1::2], 2, max_runs=11)


# -- images: the decompression-bomb limit, NaN and inf pixels -------------------------------


def png_header_only(path: Path, side: int) -> Path:
    """A PNG that declares side x side pixels: Pillow checks the size when it opens it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b""))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b""))
    return path


def float_image(path: Path, bad: float) -> Path:
    pixels = np.full((40, 30), 100.0, np.float32)
    pixels[3, 4] = bad
    Image.fromarray(pixels, mode="F").save(path)
    return path


def test_images_past_the_bomb_limit_or_with_nan_pixels_are_one_line(no_tf, tmp_path):
    model = fake_model(tmp_path / "m.keras")
    for side, pixels in ((10_000, "100,000,000"), (20_000, "400,000,000")):  # warning; error
        image = png_header_only(tmp_path / f"big{side}.png", side)
        line = fails_at_once(no_tf, ["predict", str(model), str(image)], 3, str(image), pixels)
        assert "decompression-bomb limit of 89,478,485" in line
    for bad in (float("nan"), float("inf"), -float("inf")):
        image = float_image(tmp_path / "nan.tiff", bad)
        fails_at_once(no_tf, ["predict", str(model), str(image)], 3, "1 of 1200 pixels are NaN")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "big10000.png",
        "big20000.png",
        "m.keras",
        "nan.tiff",
        "no_tf",
    ]


def test_image_checks_hold_through_the_api(tmp_path):
    from fmnist_tl.data.images import load_images
    from fmnist_tl.errors import MissingFileError

    with pytest.raises(MissingFileError, match="NaN or infinite"):
        load_images([float_image(tmp_path / "nan.tiff", float("nan"))])
    with pytest.raises(MissingFileError, match="decompression-bomb limit"):
        load_images([png_header_only(tmp_path / "big.png", 10_000)])
