"""Messages say what happened (issue 28, class 7), through the real CLI.

A full disk is "No space left on device" with the path, and the stage-2 note never announces a
stage 2 that a full disk stops first; a deleted working folder is named; control characters in
paths are escaped (one line); a CSV's blank line is ours to word, not NumPy's advice; a
read-only file system is called that. Each case: its exit code, exactly one line, nothing left.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, cli_fails, one_line, read_only_folder, run_counting_cpu, sets
from test_error_messages import fake_model

from fmnist_tl import errors

FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]


# -- a full disk under output.cache_dir -----------------------------------------------------


def full_cache_disk(folder: Path, monkeypatch) -> str:
    """`folder` on a 64 KiB tmpfs (root with mount); else NumPy's short write into it, on a
    disk that reports 16 KiB free: what np.save says on a full disk (no errno)."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
    if os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0:
        return "tmpfs"
    import shutil

    from fmnist_tl import cache

    usage = shutil.disk_usage(folder)._replace(free=16 * 2**10)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage)
    real_save = np.save

    def save(file, array, **kwargs):
        if str(folder) in str(file):
            Path(file).write_bytes(b"\x93NUMPY" + bytes(16346))
            raise OSError(f"{array.nbytes} requested and 16352 written")
        real_save(file, array, **kwargs)

    monkeypatch.setattr(cache.np, "save", save)
    return "injected"


def test_a_full_cache_disk_is_named_and_never_announced_as_stage_2(isolated, tmp_path, monkeypatch):
    cache_dir = tmp_path / "disk"
    how = full_cache_disk(cache_dir, monkeypatch)
    try:
        overrides = [*isolated, f"output.cache_dir={cache_dir / 'cache'}"]
        overrides += ["model.freeze_backbone=true", "train.epochs=1", "finetune.epochs=1"]
        line = cli_fails(["train", str(SMOKE), *sets(overrides)], 3, "No space left on device")
        assert str(cache_dir / "cache") in line and "free space" in line
        assert "requested and" not in line  # NumPy's count, not what happened
        assert not [p for p in (cache_dir / "cache").iterdir()], "a partial cache file left"
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", str(cache_dir)], check=True)


def test_a_short_write_with_room_left_says_so():
    exc = OSError("640000 requested and 16352 written")
    message = str(errors.os_failure(exc, "/tmp/cache/x.npy"))
    assert message.startswith("/tmp/cache/x.npy: a write stopped short (16352 of 640000 bytes)")


# -- a deleted working folder ---------------------------------------------------------------

IN_A_DELETED_FOLDER = """
import os, sys
folder = sys.argv.pop(1)
os.mkdir(folder)
os.chdir(folder)
os.rmdir(folder)
os.environ["PWD"] = folder
from fmnist_tl.cli import main
sys.argv = ["fmnist", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["train", str(SMOKE)], 3, "no longer exists (deleted or moved while fmnist ran)"),
        (["config", "show", "smoke.yaml"], 2, "config file not found: the working folder"),
        (["compare"], 3, "no longer exists, so relative paths cannot be found: saved_models"),
    ],
)
def test_a_deleted_working_folder_is_named(args, code, needle, tmp_path, no_tf):
    gone = tmp_path / "gone"
    cmd = [sys.executable, "-c", IN_A_DELETED_FOLDER, str(gone), *args]
    done, cpu_s, _ = run_counting_cpu(cmd, env=no_tf, timeout=60)
    assert done.returncode == code, done.stderr
    line = one_line(done.stderr, needle, str(gone))
    assert "unknown path" not in line and "TensorFlow loaded" not in done.stderr
    assert not gone.exists()


# -- control characters in paths ------------------------------------------------------------


def test_a_newline_in_a_file_name_never_makes_a_second_line(tmp_path, no_tf):
    bad = tmp_path / "two\nlines.yaml"
    cli_fails(["config", "show", str(bad)], 2, "two\\nlines.yaml: config file not found")
    bad.write_text("train: [\n")  # a YAML error names the file too
    cli_fails(["config", "show", str(bad)], 2, "two\\nlines.yaml: YAML syntax error")
    model = fake_model(tmp_path / "m.keras")
    image = tmp_path / "x\x1b[31m\ny.png"
    cli_fails(["predict", str(model), str(image)], 3, "x\\x1b[31m\\ny.png", "no such file")
    cli_fails(["evaluate", str(tmp_path / "a\rb.keras")], 3, "a\\rb.keras: model file not found")
    # The real terminal writer, in a process of its own.
    done = subprocess.run(
        [*FMNIST, "config", "show", str(bad)], env=no_tf, capture_output=True, timeout=60
    )
    assert done.returncode == 2 and done.stderr.count(b"\n") == 1, done.stderr
    undecodable = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.yaml")
    cli_fails(["config", "show", undecodable], 2, "caf\\xe9.yaml")


def test_printable_leaves_text_and_escapes_controls():
    assert errors.printable("données/été 夏.png") == "données/été 夏.png"
    assert errors.printable("a\nb\tc\x7f\u2028\u202e") == "a\\nb\\tc\\x7f\\u2028\\u202e"
    assert "\n" not in errors.shorten_paths("x" * 500 + "\n" + "y")


# -- a CSV with a blank line ----------------------------------------------------------------


@pytest.mark.parametrize("blank", ["   ", ",,,", "\t"])
def test_a_csv_with_a_blank_line_says_so_in_our_words(blank, tmp_path):
    from conftest import learnable
    from test_data import write_csv

    arrays = (*learnable(30, 1), *learnable(20, 2))
    folder = write_csv(tmp_path / "csv", arrays, header=True)
    path = folder / "fashion-mnist_test.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:5], blank, *lines[5:]]) + "\n")
    line = cli_fails(["data", "info", "--data-dir", str(folder)], 3, str(path), "line 6 is blank")
    assert "usecols" not in line and "delete that line" in line


# -- a read-only file system ----------------------------------------------------------------


def test_a_read_only_file_system_is_named_as_such(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    with read_only_folder(folder) as how:
        if how != "mount":  # stand in for the mount: statvfs reports the read-only flag
            real = os.statvfs

            def statvfs(path):
                result = real(path)
                if str(path).startswith(str(folder)):
                    return os.statvfs_result(
                        (*result[:8], result.f_flag | os.ST_RDONLY, *result[9:])
                    )
                return result

            monkeypatch.setattr(os, "statvfs", statvfs)
        line = cli_fails(
            ["train", str(SMOKE), "--set", f"output.dir={folder / 'runs'}"],
            3,
            f"output.dir: {folder}: read-only file system",
        )
        assert "permission denied" not in line
        model = fake_model(tmp_path / "m.keras")
        args = ["evaluate", str(model), "--output", str(folder / "e.json")]
        cli_fails(args, 3, f"{folder}: read-only file system")
        if how == "mount":  # the OS's own EROFS, worded by os_failure
            with pytest.raises(errors.MissingFileError, match="Read-only file system"):
                from fmnist_tl import atomic

                atomic.write_text(folder / "x.txt", "x")
    exc = OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/x")
    assert "writable disk" in str(errors.os_failure(exc))
