"""scripts/transfer_study.sh: its steps are wired to the commands they name, and bad usage is
a one-line error with the tool's exit codes (2 usage, 3 a missing file), before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "transfer_study.sh"


def study(tmp_path: Path, *steps: str, **env: str) -> subprocess.CompletedProcess:
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"")  # only its presence is checked before a step runs
    full = {**os.environ, "OUT": str(tmp_path / "out"), "WEIGHTS": str(weights), **env}
    full["FMNIST"] = str(Path(sys.executable).parent / "fmnist")  # the installed command
    return subprocess.run(
        ["bash", str(SCRIPT), *steps], capture_output=True, text=True, env=full, timeout=120
    )


def test_an_unknown_step_is_exit_2_naming_the_steps(tmp_path: Path) -> None:
    done = study(tmp_path, "resize-everything")
    assert done.returncode == 2, done.stderr
    assert "unknown step resize-everything" in done.stderr and "plot)" in done.stderr
    assert not (tmp_path / "out").exists()


def test_missing_weights_are_exit_3_before_any_step(tmp_path: Path) -> None:
    done = study(tmp_path, "seeds", WEIGHTS=str(tmp_path / "nope.h5"))
    assert done.returncode == 3, done.stderr
    assert "nope.h5 is missing (the shared ImageNet weights)" in done.stderr


def test_the_plot_step_compares_what_out_holds(tmp_path: Path) -> None:
    (tmp_path / "out" / "runs").mkdir(parents=True)
    done = study(tmp_path, "plot")
    assert "== plot:" in done.stdout
    assert done.returncode == 3, done.stderr  # compare's own exit code, passed on
    assert "no runs found" in done.stderr and str(tmp_path / "out" / "runs") in done.stderr
