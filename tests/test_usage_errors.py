"""CLI misuse through the real console script: one line on stderr, exit 2, no usage block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOKE

FMNIST = Path(sys.executable).with_name("fmnist")


def run(*args: str) -> subprocess.CompletedProcess:
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
    result = run(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "Usage:" not in lines[0] and "╭" not in lines[0] and "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_help_and_version_still_exit_0():
    assert run("--help").returncode == 0
    assert run("train", "-h").returncode == 0
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("fmnist-tl ")
    bare = run()  # no command: the help, exit 2 as before
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr
