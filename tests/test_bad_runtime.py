"""Issue 19, classes 4, 7 and 8 and corrupt caches, through the real CLI.

Each family: the documented exit code, one line naming the path or the data and what to do,
no traceback, and nothing outside the run's own folder changed (the tmp tree and a good
saved_models/best.keras, by hash).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SMOKE, expect_error, learnable, run_counting_cpu, write_idx
from typer.testing import CliRunner

from fmnist_tl import atomic, cache
from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.data import sources as data
from fmnist_tl.data.images import save_png
from fmnist_tl.errors import PATH_SHOWN, MissingFileError
from fmnist_tl.models.assembly import build_model

runner = CliRunner()
FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]


def tree(root: Path, *skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (but `skip` and what is inside them) with its size and mtime."""
    found = {}
    for p in sorted(root.rglob("*")):
        if any(p == s or s in p.parents for s in skip):
            continue
        st = p.lstat()
        found[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return found


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A user's tree: data, a good saved_models/best.keras, and the folders a run writes to."""
    x, y = learnable(400, 1)
    xt, yt = learnable(100, 2)
    write_idx(tmp_path / "data", (x, y, xt, yt), gz=False)
    models = tmp_path / "saved_models"
    models.mkdir()
    config = load_config(SMOKE, [f"data.dir={tmp_path / 'data'}"])
    build_model(config).model.save(models / "best.keras")
    (models / "best.config.yaml").write_text(config.to_yaml())
    return {"root": tmp_path, "data": tmp_path / "data", "models": models}


def sets(world: dict[str, Path], *extra: str) -> list[str]:
    root = world["root"]
    base = [
        f"data.dir={world['data']}",
        f"output.dir={world['models']}",
        f"output.log_dir={root / 'logs'}",
        f"output.cache_dir={root / 'cache'}",
        "runtime.verbose=silent",
        *extra,
    ]
    return [a for o in base for a in ("--set", o)]


@contextlib.contextmanager
def unchanged(world: dict[str, Path], *own: Path) -> Iterator[None]:
    """Nothing outside the run's `own` folders changes in the block; best.keras keeps its hash."""
    best = world["models"] / "best.keras"
    before, digest = tree(world["root"], *own), atomic.sha256_file(best)
    yield
    assert tree(world["root"], *own) == before
    assert atomic.sha256_file(best) == digest


# -- class 4: operating-system failures name the path and what to do (exit 3) ---------------


def test_log_folder_that_is_a_file(world):
    blocker = world["root"] / "logs_file"
    blocker.write_text("not a folder")
    with unchanged(world):
        args = ["train", str(SMOKE), *sets(world, f"output.log_dir={blocker}")]
        expect_error(runner.invoke(app, args), 3, "output.log_dir", str(blocker), "a file where")


@pytest.mark.parametrize("kind, what", [("missing", "not found"), ("folder", "is a folder")])
def test_weights_path_that_is_no_file(world, kind, what):
    weights = world["root"] / "weights.h5"
    if kind == "folder":
        weights.mkdir()
    with unchanged(world):
        args = ["train", str(SMOKE), *sets(world, f"model.weights={weights}")]
        needles = ("model.weights", str(weights), what, "give an existing weights file")
        expect_error(runner.invoke(app, args), 3, *needles)


def test_a_path_too_long_is_shortened_in_the_message(world):
    long = world["root"] / "/".join(["d" * 200] * 25)  # 5,000 characters
    with unchanged(world):
        args = ["train", str(SMOKE), *sets(world, f"output.dir={long}")]
        line = expect_error(runner.invoke(app, args), 3, "output.dir", "too long", "shorter path")
    assert len(line) < 2 * PATH_SHOWN + 100 and "..." in line


def test_json_report_path_that_is_a_folder(world):
    folder = world["root"] / "reports"
    folder.mkdir()
    model = str(world["models"] / "best.keras")
    # The report's option: --output, or --json before it was renamed.
    option = (
        "--output" if "--output" in runner.invoke(app, ["evaluate", "--help"]).output else "--json"
    )
    with unchanged(world):
        args = ["evaluate", model, option, f"{folder}/", "--data-dir", str(world["data"])]
        expect_error(runner.invoke(app, args), 3, str(folder), "is a folder", "give a file path")
    with pytest.raises(MissingFileError, match="is a folder"):  # the API's write, too
        atomic.write_json(folder, {"accuracy": 1.0})
    assert list(folder.iterdir()) == []


def test_a_model_path_that_is_a_folder(world):
    with unchanged(world):
        for command in ("evaluate", "finetune", "predict"):
            extra = [str(world["root"] / "x.png")] if command == "predict" else []
            result = runner.invoke(app, [command, str(world["models"]), *extra])
            expect_error(result, 3, str(world["models"]), "is a folder, not a model file")


@contextlib.contextmanager
def full_disk(folder: Path, monkeypatch) -> Iterator[str]:
    """`folder` on a 64 KiB tmpfs (root with mount); else every .keras write fails ENOSPC."""
    folder.mkdir(parents=True)
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        real = atomic.os.replace

        def replace(src, dst):
            if str(dst).endswith(".keras"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
            real(src, dst)

        monkeypatch.setattr(atomic.os, "replace", replace)
    try:
        yield "tmpfs" if mounted else "injected"
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_names_the_file_and_what_to_do(world, monkeypatch):
    disk = world["root"] / "disk"
    with full_disk(disk, monkeypatch):
        out = disk / "runs"
        out.mkdir()
        (world["root"] / "logs").mkdir()
        with unchanged(world, out, world["root"] / "logs"):  # the run's folder, its TB logs
            args = ["train", str(SMOKE), *sets(world, f"output.dir={out}")]
            line = expect_error(
                runner.invoke(app, args), 3, "No space left on device", "free space"
            )
        (run_dir,) = out.iterdir()
        assert str(run_dir) in line
        # What is left in the run's folder is whole: no temporary file of the failed write.
        assert not [p.name for p in run_dir.rglob(".*") if p.is_file()]


# -- class 7: empty or degenerate data is about the data, before any run folder -------------


def write_csv(folder: Path, n_train: int) -> Path:
    folder.mkdir()
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    x, y = learnable(max(n_train, 1), 3)
    rows = [f"{c}," + ",".join(map(str, img.ravel())) for img, c in zip(x, y, strict=True)]
    (folder / data.CSV_NAMES[0]).write_text("\n".join([header, *rows[:n_train]]) + "\n")
    (folder / data.CSV_NAMES[1]).write_text("\n".join([header, *rows[:1]]) + "\n")
    return folder


@pytest.mark.parametrize(
    ("case", "code", "needles"),
    [
        ("idx_zero_images", 3, ["train-images-idx3-ubyte", "0 images", "no data"]),
        ("csv_header_only", 3, ["fashion-mnist_train.csv", "no data rows"]),
        ("class_missing", 3, ["class 9 (Ankle boot)", "lacks it"]),
        ("no_validation_example", 2, ["none in the validation split", "data.val_split"]),
        ("no_training_example", 2, ["none left for training", "data.train_limit"]),
    ],
)
def test_degenerate_data(world, case, code, needles):
    x, y = learnable(400, 1)
    xt, yt = learnable(100, 2)
    extra = []
    if case == "idx_zero_images":
        folder = write_idx(world["root"] / case, (x[:0], y[:0], xt, yt), gz=False)
    elif case == "csv_header_only":
        folder = write_csv(world["root"] / case, 0)
    elif case == "class_missing":
        keep = y != 9
        folder = write_idx(world["root"] / case, (x[keep], y[keep], xt, yt), gz=True)
    else:
        folder = world["data"]
        # The first 38 examples hold every class, class 4 and 6 once: 20% of one rounds to
        # no validation example, 60% to no training example.
        assert np.bincount(y[:38], minlength=10).tolist() == [4, 5, 3, 3, 1, 7, 1, 3, 5, 6]
        split = "0.2" if case == "no_validation_example" else "0.6"
        extra = ["data.train_limit=38", f"data.val_split={split}"]
    with unchanged(world):
        args = ["train", str(SMOKE), *sets(world, f"data.dir={folder}", *extra)]
        expect_error(runner.invoke(app, args), code, *needles)


# -- class 8: a missing model is found before TensorFlow loads ------------------------------


def test_missing_model_fails_before_tensorflow_loads(tmp_path, no_tf):
    """A `tensorflow` that cannot be imported: the commands must answer without it."""
    image = tmp_path / "x.png"
    save_png(np.zeros((28, 28), "uint8"), image)
    missing = str(tmp_path / "nope.keras")
    for args in (["evaluate", missing], ["finetune", missing], ["predict", missing, str(image)]):
        done, cpu_s, wall_s = run_counting_cpu([*FMNIST, *args], env=no_tf, timeout=60)
        assert done.returncode == 3, done.stderr
        assert "nope.keras: model file not found" in done.stderr
        assert "TensorFlow loaded" not in done.stderr and "Traceback" not in done.stderr
        assert cpu_s < 3.0 and wall_s < 20.0, (args[0], cpu_s, wall_s)


# -- corrupt caches: detected, never loaded, rebuilt, reported in one line ------------------


def test_cache_round_trip_and_memory_map(tmp_path):
    a = np.arange(60, dtype=np.float32).reshape(20, 3)
    path = tmp_path / "k.npy"
    assert cache.load_array(path, 20) is None  # a plain miss
    cache.save_array(path, a)
    np.testing.assert_array_equal(cache.load_array(path, 20), a)
    mapped = cache.load_array(path, 20, mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, a)
    record = json.loads(cache.meta_path(path).read_text())
    assert record["sha256"] == atomic.sha256_file(path) and record["shape"] == [20, 3]


def damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "altered":  # same size, one byte of the data changed
        path.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:])
    elif how == "no_record":
        cache.meta_path(path).unlink()
    elif how == "other_rows":  # a whole, valid file for different data under this key
        cache.save_array(path, np.zeros((3, 3), np.float32))


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("truncated", "truncated"),
        ("altered", "SHA-256 mismatch"),
        ("no_record", "no checksum record"),
        ("other_rows", "3 rows, expected 20"),
    ],
)
def test_a_damaged_cache_file_is_never_loaded(tmp_path, capsys, how, why):
    path = tmp_path / "k.npy"
    a = np.ones((20, 3), np.float32)
    cache.save_array(path, a)
    damage(path, how)
    capsys.readouterr()
    assert cache.load_array(path, 20) is None
    assert capsys.readouterr().err == ""  # said once it is rebuilt, not before
    cache.save_array(path, a)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"feature cache {path} was corrupt ({err[0].split('(', 1)[1]}"]
    assert why in err[0] and err[0].endswith("; rebuilt")
    np.testing.assert_array_equal(cache.load_array(path, 20), a)


def test_corrupt_feature_cache_is_rebuilt_through_the_cli(world, tmp_path):
    """A frozen 'pretrained' backbone trains the head on cached features; cut the cache."""
    cnn = ["model.cnn.dropout=0"]
    built = build_model(load_config(SMOKE, [*cnn, "model.weights=none"]))
    weights = tmp_path / "backbone.weights.h5"
    built.backbone.save_weights(weights)
    args = ["train", str(SMOKE), *sets(world, *cnn, f"model.weights={weights}", "train.epochs=1")]
    first = subprocess.run([*FMNIST, *args], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    # The pool's features (400 images); the test images' (100) sit beside them.
    (path,) = [p for p in (world["root"] / "cache").glob("*.npy") if cache.verify(p, 400) is None]
    damage(path, "truncated")
    again = subprocess.run([*FMNIST, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if "feature cache" in line]
    assert notes == [f"feature cache {path} was corrupt (truncated: {notes[0].split(': ')[1]}"]
    assert notes[0].endswith("; rebuilt") and "Traceback" not in again.stderr
    runs = sorted(p for p in world["models"].iterdir() if p.is_dir())
    stage = json.loads((runs[-1] / "metrics.json").read_text())["stages"][0]
    assert stage["feature_cache"] == "miss"
    assert cache.verify(path, 400) is None  # the rebuilt file checks out: one row per pool image
    assert keras.models.load_model(world["models"] / "best.keras", compile=False)


# As root, permissions do not bite: the child drops to nobody once the CLI is imported (the
# interpreter's own files may sit where nobody cannot read them, e.g. under /root).
AS_NOBODY = """
import os, sys
import fmnist_tl.cli.app, fmnist_tl.config, fmnist_tl.paths, fmnist_tl.tracking
from fmnist_tl.cli import main
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
sys.argv = ["fmnist", *sys.argv[1:]]
main()
"""


def test_a_folder_without_write_permission():
    base = Path(tempfile.mkdtemp(prefix="fmnist-perm-", dir="/tmp"))  # reachable for nobody
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        before = tree(base)
        args = ["train", str(SMOKE), "--set", f"output.dir={locked / 'runs'}"]
        done = subprocess.run(
            [sys.executable, "-c", AS_NOBODY, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 3, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines == [
            f"error: output.dir: {locked}: permission denied; choose another output.dir"
        ]
        assert tree(base) == before
    finally:
        shutil.rmtree(base)


def test_an_os_error_inside_an_atomic_write_names_the_file(tmp_path):
    path = tmp_path / "best.keras"
    path.write_bytes(b"old")

    def fill(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(MissingFileError) as caught:
        atomic.write_with(path, fill)
    assert str(caught.value) == (
        f"{path}: No space left on device; free space on that disk or write somewhere else"
    )
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["best.keras"]
