"""Where the libraries below keep their config and caches when HOME cannot hold them.

Keras writes `keras.json` into ~/.keras when it is imported (into /tmp/.keras when HOME is not
writable), and matplotlib keeps its config and font cache under ~/.config and ~/.cache (else
it makes a /tmp/matplotlib-* folder and says so in two lines). With HOME missing (unset, or no
such folder, which a root process would create) or not writable (no permission, a read-only
disk), fmnist gives both libraries one folder of its own instead: made in the temp folder once
per process, before either library loads, and removed when the process exits. KERAS_HOME and
MPLCONFIGDIR that the user set are left alone; so is a usable HOME.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from .paths import read_only

ENV = ("KERAS_HOME", "MPLCONFIGDIR")  # Keras's folder; matplotlib's config and cache
_owned: list[Path] = []  # the folder this process made, removed at exit


def home_usable() -> bool:
    """Whether HOME names an existing folder this process may write to."""
    home = os.environ.get("HOME")
    if not home:
        return False
    path = Path(home)
    return path.is_dir() and not read_only(path) and os.access(path, os.W_OK | os.X_OK)


def install() -> Path | None:
    """Point KERAS_HOME and MPLCONFIGDIR (those the user left unset) at a folder of fmnist's
    own when HOME is not usable; the folder, or None when nothing was needed or possible.
    Call before Keras or matplotlib is imported; a second call returns the same folder."""
    if _owned:
        return _owned[0]
    unset = [name for name in ENV if not os.environ.get(name)]
    if not unset or home_usable():
        return None
    try:
        root = Path(tempfile.mkdtemp(prefix="fmnist-libs-"))
    except OSError:  # no writable temp folder either: the libraries fall back on their own
        return None
    _owned.append(root)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name in unset:
        os.environ[name] = str(root / name.lower())
    return root


def user_keras_home() -> Path:
    """The Keras folder the user has, for reading what it holds (the Keras cache of
    Fashion-MNIST): their KERAS_HOME, else ~/.keras, even while Keras writes to ours."""
    set_by_us = bool(_owned) and os.environ.get("KERAS_HOME") == str(_owned[0] / "keras_home")
    home = None if set_by_us else os.environ.get("KERAS_HOME")
    try:
        return Path(home or Path.home() / ".keras").expanduser()
    except RuntimeError:  # no home folder at all
        return Path("~/.keras")
