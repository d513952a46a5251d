"""Atomic writes: the old file stays whole if writing fails; new files get normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from fmnist_tl import atomic


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    atomic.write_json(path, {"accuracy": 0.9})
    with pytest.raises(RuntimeError), atomic.atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("disk full")
    assert path.read_text() == '{\n  "accuracy": 0.9\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_artifacts_get_umask_permissions_not_0600(tmp_path):
    path = tmp_path / "config.yaml"
    atomic.write_text(path, "seed: 1\n")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_suffix_is_kept_for_keras(tmp_path):
    seen = []
    atomic.write_with(
        tmp_path / "best.keras", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"x"))
    )
    assert seen[0].name.endswith(".keras") and seen[0].parent == tmp_path
    assert (tmp_path / "best.keras").read_bytes() == b"x"
