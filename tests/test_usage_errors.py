"""CLI misuse through the real console script: one line on stderr, exit 2, no usage block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOKE

FMNIST = Path(sys.executable).with_name("fmnist")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FMNIST), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "args, needles",
    [
        (["train", str(SMOKE), "--bogus"], ["No such option: --bogus", "fmnist train -h"]),
        (["trian"], ["No such command 'trian'", "train"]),
        (["evaluate"], ["Missing argument", "fmnist evaluate -h"]),
        (["evaluate", "m.keras", "--limit", "abc"], ["--limit", "integer"]),
        (["train", str(SMOKE), "--set"], ["--set", "requires an argument"]),
        (["tune", str(SMOKE), "--trials", "0"], ["--trials", "greater than or equal to 1"]),
        (["export", "m.keras"], ["--format"]),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, needles):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "Usage:" not in lines[0] and "╭" not in lines[0] and "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_help_and_version_still_exit_0():
    assert run_cli("--help").returncode == 0
    assert run_cli("train", "-h").returncode == 0
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("fmnist-tl ")
    bare = run_cli()  # no command: the help, exit 2 as before
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr


def test_a_state_json_that_is_a_folder_or_a_broken_link_is_a_damaged_run(tmp_path):
    for kind in ("folder", "link"):
        run = tmp_path / kind
        run.mkdir()
        (run / "config.yaml").write_text("seed: 0\n")
        if kind == "folder":
            (run / "state.json").mkdir()
        else:
            (run / "state.json").symlink_to(tmp_path / "nowhere.json")
        result = run_cli("train", "--resume", str(run))
        assert result.returncode == 3, result.stderr
        (line,) = [x for x in result.stderr.splitlines() if x.strip()]
        assert "damaged run state" in line and "start it again" in line
        assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "state.json"]


def test_a_config_that_is_not_utf8_says_so(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("seed: 0\n# caf\xe9\n".encode("latin-1"))
    result = run_cli("config", "show", str(config))
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert "not UTF-8 text" in line and "save the config as UTF-8" in line
