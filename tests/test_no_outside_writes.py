"""No writes outside the run, no library warnings on the terminal (issue 28, class 6).

With HOME missing or read-only, Keras and matplotlib keep their config and caches in a folder of
fmnist's own that is removed at exit (libdirs.py): nothing appears under HOME or in the temp
folder, and nothing is printed. Pillow's and NumPy's warnings never reach stderr unless verbose,
through the real CLI and through the API, in real subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, read_only_folder, snapshot
from PIL import Image

from fmnist_tl import libdirs

FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]


def env_with(home: Path | None, tmp: Path) -> dict[str, str]:
    """This environment with HOME as given (None: unset), an empty TMPDIR of the test's own,
    and neither KERAS_HOME nor MPLCONFIGDIR set."""
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_HOME", "MPLCONFIGDIR")}
    env.pop("HOME", None)
    if home is not None:
        env["HOME"] = str(home)
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    return env


def test_a_run_with_home_missing_writes_only_its_own_folders(tmp_path, synthetic_dir):
    home, tmp = tmp_path / "no-such-home", tmp_path / "tmp"
    out = tmp_path / "out"
    sets = [
        f"data.dir={synthetic_dir}",
        f"output.dir={out / 'runs'}",
        f"output.log_dir={out / 'logs'}",
        f"output.cache_dir={out / 'cache'}",
        "train.epochs=1",
    ]
    args = ["train", str(SMOKE), *[a for s in sets for a in ("--set", s)]]
    done = subprocess.run(
        [*FMNIST, *args], env=env_with(home, tmp), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no library line, matplotlib's included
    assert not home.exists()  # a root process would have made it (matplotlib, Keras)
    assert list(tmp.iterdir()) == []  # no /tmp/.keras-like or matplotlib-* folder left
    (run,) = (out / "runs").iterdir()
    assert (run / "history.png").is_file()  # matplotlib did draw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tmp"]


SCRIPT = """
import os, fmnist_tl, keras, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.figure().savefig({out!r})
print(os.environ.get("KERAS_HOME", "unset"), matplotlib.get_configdir(), matplotlib.get_cachedir())
"""


@pytest.mark.parametrize("home", ["unset", "read-only"])
def test_keras_and_matplotlib_through_the_api_write_nothing_outside(home, tmp_path):
    folder = tmp_path / "home"
    with read_only_folder(folder) as how:
        env = env_with(None if home == "unset" else folder, tmp_path / "tmp")
        before = snapshot(folder)
        code = SCRIPT.format(out=str(tmp_path / "fig.png"))
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        # Keras's and matplotlib's folders were fmnist's own, in the temp folder (an unset
        # HOME would otherwise mean the account's home: /root for root).
        used = done.stdout.split()
        assert len(used) == 3 and all(u.startswith(str(tmp_path / "tmp")) for u in used), used
        if how is None and home == "read-only":
            pytest.skip("root without mount: no folder is read-only for this process")
        assert done.stderr == ""  # matplotlib's two lines about a temporary cache are gone
        assert snapshot(folder) == before
        assert list((tmp_path / "tmp").iterdir()) == []  # our folder removed at exit


def test_home_usable(tmp_path, monkeypatch):
    monkeypatch.delenv("HOME", raising=False)
    assert not libdirs.home_usable()
    monkeypatch.setenv("HOME", str(tmp_path / "missing"))
    assert not libdirs.home_usable()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert libdirs.home_usable()
    with read_only_folder(tmp_path / "ro") as how:
        monkeypatch.setenv("HOME", str(tmp_path / "ro"))
        if how is not None:  # root without mount can write anywhere: usable, rightly
            assert not libdirs.home_usable()


# -- library warnings: never on stderr unless verbose ---------------------------------------


def corrupt_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF block is cut short: Pillow warns 'Corrupt EXIF data'."""
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00"
    Image.new("RGB", (60, 40), (250, 250, 250)).save(path, exif=exif)
    return path


def float_tiff(path: Path) -> Path:
    pixels = np.linspace(-1e30, 1e30, 1200, dtype=np.float32).reshape(40, 30)
    Image.fromarray(pixels, mode="F").save(path)
    return path


def test_pillow_and_numpy_warnings_stay_off_stderr_through_the_api(tmp_path):
    images = [str(corrupt_exif_jpeg(tmp_path / "exif.jpg")), str(float_tiff(tmp_path / "f.tif"))]
    code = f"from fmnist_tl.data.images import load_images; print(load_images({images}).shape)"
    env = {**os.environ}
    env.pop("FMNIST_VERBOSE", None)
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(2, 28, 28, 1)\n" and done.stderr == ""
    verbose = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env={**env, "FMNIST_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Corrupt EXIF data" in verbose.stderr  # asked for: shown


def test_pillow_warnings_are_not_raised_in_the_callers_process(tmp_path, monkeypatch):
    from fmnist_tl.data.images import load_images

    monkeypatch.delenv("FMNIST_VERBOSE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail here
        assert load_images([corrupt_exif_jpeg(tmp_path / "exif.jpg")]).shape == (1, 28, 28, 1)
