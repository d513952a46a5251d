"""Silent on every CPU and in every command: nothing a library prints reaches the terminal.

Each command runs as a real subprocess with a sitecustomize that makes the libraries talk the
way they do on other machines: every batched inference writes a oneDNN-style line straight to
fd 2 (as the DT_HALF line does on a CPU with AVX-512 but no FP16, at a float16 cache's first
op), prints to Python's sys.stderr, warns and logs through TensorFlow's logger. The rule under
test is who writes, not which lines: none of it may show without --verbose, while fmnist's own
lines (stage headers, notes, the one-line error) still do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SMOKE, outputs
from test_terminal import NOISE, PY_WARNING, user_env

FMNIST = str(Path(sys.executable).parent / "fmnist")
NATIVE = "E0000 00:00:1 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512"
CHATTER = (NATIVE, "a library printed this", "LibraryWarning", "WARNING:tensorflow:")

SITECUSTOMIZE = textwrap.dedent(
    f'''
    """Make every batched inference talk as libraries do on other machines."""
    import importlib.abc, importlib.util, logging, os, sys, warnings

    class LibraryWarning(UserWarning):
        pass

    def talk():
        os.write(2, b"{NATIVE}\\n")
        print("a library printed this", file=sys.stderr)
        warnings.warn("a library warned", LibraryWarning)
        logging.getLogger("tensorflow").warning("a library logged this")

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "fmnist_tl.models.inference":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                infer = module.infer

                def talking(*args, **kwargs):
                    talk()
                    return infer(*args, **kwargs)

                module.infer = talking

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hook())
    if os.environ.get("FAIL_EXPORT_CHECK"):  # a parity check nothing passes
        import fmnist_tl.evaluation.export_check as export

        export.TOLERANCE["none"] = -1.0
    '''
)


def fmnist(*args: str, cwd: Path, hooks: Path, code: int = 0, **env: str) -> str:
    """Run the command as a user would; return its stderr, after checking its exit code."""
    environ = {**user_env(), "PYTHONPATH": os.pathsep.join([str(hooks), *sys.path]), **env}
    proc = subprocess.run(
        [FMNIST, *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=300
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    heard = [c for c in CHATTER if c in proc.stdout + proc.stderr]
    noise = [ln for ln in proc.stderr.splitlines() if NOISE.match(ln) or PY_WARNING.search(ln)]
    assert not heard and not noise, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic_dir) -> dict:
    """The hooks, and one two-stage run whose stage 2 trains on a float16 activation cache."""
    root = tmp_path_factory.mktemp("quiet")
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    sets = [*outputs(root, synthetic_dir), "train.epochs=1", "finetune.epochs=1"]
    sets += ["finetune.activation_dtype=float16", "model.freeze_backbone=true"]
    sets += ["runtime.verbose=epoch"]  # the stage headers: fmnist's own lines
    args = [a for s in sets for a in ("--set", s)]
    said = fmnist("train", str(SMOKE), *args, cwd=root, hooks=hooks)
    assert "stage 2/2 finetune" in said  # fmnist's own lines still show
    (run,) = (root / "saved_models").glob("smoke-*")
    metrics = (run / "metrics.json").read_text()
    assert '"activation_cache": "miss"' in metrics  # stage 2 really ran on the cache
    return {"root": root, "hooks": hooks, "run": run, "args": args, "data": synthetic_dir}


def test_every_command_is_silent(world):
    root, hooks, run = world["root"], world["hooks"], world["run"]
    data = ["--data-dir", str(world["data"])]
    fmnist("finetune", str(run / "best.keras"), "--epochs", "1", cwd=root, hooks=hooks)
    fmnist("evaluate", str(run / "best.keras"), *data, cwd=root, hooks=hooks)
    picture = run / "evaluation_confusion.png"
    fmnist("predict", str(run / "best.keras"), str(picture), cwd=root, hooks=hooks)
    out = root / "model.tflite"
    said = fmnist("export", str(run / "best.keras"), "--format", "tflite", "--output", str(out),
                  *data, cwd=root, hooks=hooks)  # fmt: skip
    assert said == ""  # the converter's MLIR and absl lines included
    grid = ["--grid", "model.head.units=8", "--seeds", "1"]
    fmnist("sweep", str(SMOKE), *world["args"], *grid, cwd=root, hooks=hooks)
    said = fmnist("train", "--resume", str(run), cwd=root, hooks=hooks, code=2)
    assert said.count("\n") == 1 and "complete" in said


def test_a_failing_export_is_its_one_line(world):
    root, run = world["root"], world["run"]
    args = ["export", str(run / "best.keras"), "--format", "savedmodel", "--data-dir"]
    said = fmnist(*args, str(world["data"]), cwd=root, hooks=world["hooks"], code=1,
                  FAIL_EXPORT_CHECK="1")  # fmt: skip
    assert said.count("\n") == 1 and "failed its check" in said, said
    assert not list(run.glob(".*partial"))


def test_a_search_is_silent(world, tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text(SMOKE.read_text() + "\ntune:\n  space:\n    model.head.units: [8]\n")
    fmnist("tune", str(config), *world["args"], "--trials", "1", cwd=world["root"],
           hooks=world["hooks"])  # fmt: skip


def test_verbose_lets_the_libraries_talk(world):
    environ = {**user_env(), "PYTHONPATH": os.pathsep.join([str(world["hooks"]), *sys.path])}
    args = ["--verbose", "evaluate", str(world["run"] / "best.keras")]
    proc = subprocess.run(
        [FMNIST, *args, "--data-dir", str(world["data"])],
        capture_output=True,
        text=True,
        env=environ,
        cwd=world["root"],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert NATIVE in proc.stderr and "a library printed this" in proc.stderr
