"""scripts/get_data.sh and the loader's last resort, Keras's download, on machines unlike this
one: a normal user, no apt, data already somewhere. Each case runs the real script with fake
`apt-get`, `sudo` and `id` first on PATH (they record what was asked), never the real ones."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, learnable, write_idx

from fmnist_tl.data import sources as data

SCRIPT = REPO / "scripts" / "get_data.sh"
BASH = shutil.which("bash") or "/bin/bash"


def fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path) -> dict:
    """A machine of our own making: an empty home, no data, tools that only record."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "CALLS": str(tmp_path / "calls"),
        "FMNIST_DEBIAN_DIR": str(tmp_path / "debian"),
    }
    return {"bin": bin_dir, "env": env, "calls": tmp_path / "calls", "tmp": tmp_path}


def run(machine: dict, *args: str, **env: str) -> tuple[int, str, list[str]]:
    done = subprocess.run(
        [BASH, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**machine["env"], **env},
        timeout=60,
    )
    calls = machine["calls"].read_text().splitlines() if machine["calls"].exists() else []
    return done.returncode, done.stderr, [c for c in calls if not c.startswith("id ")]


def small_set(folder: Path) -> Path:
    x, y = learnable(20, 1)
    return write_idx(folder, (x, y, x, y), gz=True)


def test_data_already_there_needs_nothing(machine):
    fake(machine["bin"], "apt-get", "exit 1")
    given = small_set(machine["tmp"] / "mine")
    assert run(machine, DATA_DIR=str(given)) == (0, "", [])
    keras_home = machine["tmp"] / "kh"
    small_set(keras_home / "datasets" / "fashion-mnist")
    assert run(machine, KERAS_HOME=str(keras_home)) == (0, "", [])


def test_a_data_dir_without_data_is_one_line_exit_3(machine):
    (machine["tmp"] / "empty").mkdir()
    code, said, calls = run(machine, str(machine["tmp"] / "empty"))
    assert code == 3 and said.count("\n") == 1 and "holds no Fashion-MNIST" in said
    assert calls == []


def test_a_normal_user_without_sudo_is_left_to_keras(machine):
    fake(machine["bin"], "apt-get", "exit 1")
    fake(machine["bin"], "id", "echo 1000")
    fake(machine["bin"], "sudo", "exit 1")  # a password would be needed
    code, said, calls = run(machine)
    assert code == 0 and said.count("\n") == 1, said
    assert "downloads it through Keras" in said and "sudo apt-get install" in said
    assert not [c for c in calls if c.startswith("apt-get")]


def test_no_apt_is_left_to_keras(machine):
    code, said, calls = run(machine, PATH=str(machine["bin"]))  # no apt-get, no sudo, no id
    assert code == 0 and "no apt-get here" in said and said.count("\n") == 1, said


def test_root_with_apt_installs_the_package(machine):
    debian = machine["env"]["FMNIST_DEBIAN_DIR"]
    body = f"mkdir -p {debian}" + "".join(f" && touch {debian}/{n}.gz" for n in data.IDX_NAMES)
    fake(machine["bin"], "apt-get", body)
    fake(machine["bin"], "id", "echo 0")
    code, said, calls = run(machine)
    assert code == 0 and said == "", said
    assert calls == ["apt-get install -y -q dataset-fashion-mnist"]


def test_the_loaders_keras_download_from_a_local_origin(tmp_path, monkeypatch):
    """The last resort, Keras's own fashion_mnist.load_data, with its origin a local folder
    (file://) instead of the network: the files are fetched into Keras's cache, checked as
    every source is, and found there the next time."""
    from keras.src.datasets import fashion_mnist

    origin = small_set(tmp_path / "origin")
    home = tmp_path / "keras_home"
    home.mkdir()  # Keras falls back to /tmp/.keras for a cache folder it cannot write
    real = fashion_mnist.get_file

    def local(fname, origin_url=None, **kwargs):
        url = kwargs.pop("origin", origin_url)
        local_url = f"file://{origin}/{url.rsplit('/', 1)[1]}"
        return real(fname, origin=local_url, cache_dir=str(home), **kwargs)

    monkeypatch.setattr(fashion_mnist, "get_file", local)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no_debian")
    monkeypatch.setenv("KERAS_HOME", str(home))
    ds = data.load_fashion_mnist()
    assert ds.source.startswith("Keras download")
    x, y = learnable(20, 1)
    np.testing.assert_array_equal(ds.x_train, x)
    np.testing.assert_array_equal(ds.y_test, y)
    assert sorted(os.listdir(home / "datasets" / "fashion-mnist")) == sorted(
        f"{n}.gz" for n in data.IDX_NAMES
    )
    again = data.load_fashion_mnist(allow_download=False)
    assert again.source.startswith("Keras cache")
