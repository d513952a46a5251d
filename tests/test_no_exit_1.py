"""Issue 28, class 4: exit 1 only for a true bug. Inputs nested too deep, a run folder whose
config no longer fits its models, a full disk inside a library, stdout closed by its reader:
each is its documented code with one line (or, for stdout, quiet)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOKE, expect_error, interrupted, one_line, outputs, snapshot
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.training.trainer import train

runner = CliRunner()
FMNIST = [sys.executable, "-m", "fmnist_tl.cli"]
DEEP = 5_000  # far past Python's recursion limit in any recursive reader


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory, synthetic_dir) -> Path:
    """A run stopped after its first epoch (resumable), made once."""
    root = tmp_path_factory.mktemp("cut")
    cfg = load_config(SMOKE, [*outputs(root, synthetic_dir), "train.epochs=3"])
    return interrupted(lambda: train(cfg), 1)


@pytest.fixture
def run(cut_run, tmp_path) -> Path:
    """A copy of the stopped run, free to damage."""
    return Path(shutil.copytree(cut_run, tmp_path / cut_run.name))


def test_yaml_nested_too_deep_is_a_config_error(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * DEEP + "]" * DEEP + "\n")
    expect_error(runner.invoke(app, ["config", "show", str(deep)]), 2, str(deep),
                 "nested deeper than 64 levels at line 1")  # fmt: skip
    blocks = tmp_path / "blocks.yaml"  # block style: one level per line
    blocks.write_text("".join(f"{'  ' * i}k{i}:\n" for i in range(200)))
    expect_error(runner.invoke(app, ["config", "show", str(blocks)]), 2, "nested deeper than 64")
    value = "train.epochs=" + "[" * DEEP + "]" * DEEP
    expect_error(runner.invoke(app, ["config", "show", "--set", value]), 2, "--set",
                 "nested deeper than 64 levels")  # fmt: skip


def test_grid_values_and_records_nested_too_deep(tmp_path, synthetic_dir):
    """The other recursive readers: `--grid` values (a config error, exit 2, before any work),
    an ensemble's report and rows.yaml read by `fmnist results` (damaged files, exit 3)."""
    grid = "model.head.units=" + "[" * DEEP + "1" + "]" * DEEP
    sets = [a for o in outputs(tmp_path, synthetic_dir) for a in ("--set", o)]
    expect_error(runner.invoke(app, ["sweep", str(SMOKE), "--grid", grid, *sets]), 2,
                 "--grid model.head.units", "nested too deeply")  # fmt: skip
    assert not (tmp_path / "saved_models").exists()
    report = tmp_path / "deep.json"
    report.write_text("[" * 100_000 + "]" * 100_000)
    root = tmp_path / "results"
    add = ["results", "add", str(report), "--as", "ensembles/x.json", "--root", str(root)]
    expect_error(runner.invoke(app, add), 3, "deep.json", "nested too deeply to read")
    assert not root.exists()
    root.mkdir()
    (root / "rows.yaml").write_text("tables: " + "[" * DEEP + "]" * DEEP + "\n")
    table = ["results", "table", "t", "--root", str(root)]
    expect_error(runner.invoke(app, table), 3, "rows.yaml", "nested too deeply to read")


def test_a_run_folder_nested_too_deep_is_damaged(run, cut_run):
    """state.json and config.yaml are read by recursive parsers: exit 3, the file named."""
    (run / "state.json").write_text("[" * 100_000 + "]" * 100_000)
    expect_error(runner.invoke(app, ["train", "--resume", str(run)]), 3, "state.json",
                 "nested too deeply to read", "cannot be resumed")  # fmt: skip
    shutil.copy(cut_run / "state.json", run / "state.json")
    (run / "config.yaml").write_text("model: " + "[" * DEEP + "]" * DEEP + "\n")
    before = snapshot(run)
    expect_error(runner.invoke(app, ["train", "--resume", str(run)]), 3, "config.yaml: damaged",
                 "nested deeper than 64 levels")  # fmt: skip
    assert snapshot(run) == before


def test_resume_after_config_yaml_was_edited_to_another_architecture(run):
    """Keras's ValueError (layers that do not fit) is a damaged run folder: exit 3, one line."""
    config = run / "config.yaml"
    raw = config.read_text()
    assert "- 16\n" in raw
    config.write_text(raw.replace("- 16\n", "- 24\n", 1))  # the second conv block's filters
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = expect_error(runner.invoke(app, ["train", "--resume", str(run)]), 3,
                        "do not fit the model the run's config.yaml describes",
                        "was config.yaml edited?")  # fmt: skip
    assert "block2_conv1" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing lost or added


@pytest.mark.parametrize("args", [["config", "keys"], ["config", "keys", "--json"], ["--help"]])
def test_stdout_closed_by_its_reader_is_quiet(args):
    """`fmnist config keys | head -1`: the reader leaves at once; no message, 0 or 141."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: EPIPE for sure
    with os.fdopen(write, "wb") as closed:
        done = subprocess.run([*FMNIST, *args], stdout=closed, stderr=subprocess.PIPE,
                              text=True, timeout=60)  # fmt: skip
    assert done.returncode in (0, 141), done.stderr
    assert done.stderr == ""


def test_head_reads_one_line(tmp_path):
    """Through a shell, as a user types it."""
    script = f"{sys.executable} -m fmnist_tl.cli config keys | head -1; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    first, code = done.stdout.strip().splitlines()
    assert "config keys" in first and code in ("0", "141") and done.stderr == "", done


class FullDisk:
    """A 100 KiB tmpfs at `folder`, and how to run a command with it mounted: mounted here as
    root; else in a user namespace of the command's own (`unshare -rm`: no root needed), where
    what the command left on the disk is listed into `left.txt` before the namespace ends."""

    def __init__(self, folder: Path, in_namespace: bool) -> None:
        self.folder, self.in_namespace = folder, in_namespace
        self.listing = folder.parent / "left.txt"

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        if self.in_namespace:
            mount = shlex.join(MOUNT + [str(self.folder)])
            listing = f"ls -A {shlex.quote(str(self.folder))} > {shlex.quote(str(self.listing))}"
            script = f'{mount} || exit 99; "$@"; code=$?; {listing}; exit $code'
            cmd = ["unshare", "-rm", "sh", "-c", script, "sh", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    def left(self) -> list[str]:
        """What the command left on the full disk."""
        if self.in_namespace:
            return self.listing.read_text().split()
        return [p.name for p in self.folder.iterdir()]


MOUNT = ["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs"]


@pytest.fixture
def full_disk(tmp_path):
    """A real full disk (the point of the test): a tmpfs, as root or in a user namespace;
    skipped only where neither can mount one."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if (
        os.geteuid() == 0
        and subprocess.run([*MOUNT, str(folder)], capture_output=True).returncode == 0
    ):
        try:
            yield FullDisk(folder, in_namespace=False)
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    probe = ["unshare", "-rm", *MOUNT, str(folder)]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here: neither root nor a user namespace")
    yield FullDisk(folder, in_namespace=True)


def test_a_full_disk_during_a_savedmodel_export_names_the_target(cut_run, synthetic_dir,
                                                                 full_disk):  # fmt: skip
    """TensorFlow's SaveV2 keeps only the errno's words ("...; No space left on device
    [Op:SaveV2]"): exit 3 naming the target, not the hidden staging file, and nothing left."""
    target = full_disk.folder / "model_savedmodel"
    args = ["export", str(cut_run / "best.keras"), "--format", "savedmodel", "--output",
            str(target), "--data-dir", str(synthetic_dir)]  # fmt: skip
    done = full_disk.run([*FMNIST, *args])
    assert done.returncode == 3, done.stderr
    one_line(done.stderr, f"{target}: No space left on device", "free space")
    assert full_disk.left() == []  # no staging folder, no partial export


def test_the_exit_code_table_names_the_new_cases():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    for words in ("| 141 |", "runtime.peer_wait_s", "TF_CONFIG", "nested too deep", "SIGHUP"):
        assert words in table, words
