"""Bad paths, run counts and seeds, through the real CLI.

Each case: the documented exit code, exactly one line naming what was wrong and what to do, no
traceback, and nothing created, changed or deleted (the tmp tree, by size and mtime).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SMOKE, cli_fails
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import load_config
from fmnist_tl.layout import LAST, STATE
from fmnist_tl.training.runfolder import RunFolder
from fmnist_tl.training.state import RunState

runner = CliRunner()
NOBODY = "~nosuchuser-fmnist-review"  # a user no machine has: expanduser raises RuntimeError
SPACE = "tune.space={train.learning_rate: [0.001, 0.01]}"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@contextlib.contextmanager
def unchanged(root: Path) -> Iterator[None]:
    before = tree(root)
    yield
    assert tree(root) == before


def sets(isolated: list[str], *extra: str) -> list[str]:
    return [a for s in [*isolated, *extra] for a in ("--set", s)]


def with_key(isolated: list[str], key: str, value: str) -> list[str]:
    """The isolated overrides with `key` replaced by `value`."""
    return [s for s in isolated if not s.startswith(f"{key}=")] + [f"{key}={value}"]


# -- run counts are bounded before anything is built ---------------------------------


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("train", "--repeat", "99999999999999999999"),
        ("train", "--repeat", "4294967295"),
        ("train", "--repeat", "101"),
        ("sweep", "--seeds", "99999999999999999999"),
        ("sweep", "--seeds", "101"),
    ],
)
def test_run_counts_past_the_bound_exit_2(command, option, value, isolated, tmp_path):
    grid = ["--grid", "train.batch_size=8,16"] if command == "sweep" else []
    with unchanged(tmp_path):
        cli_fails(
            [command, str(SMOKE), *sets(isolated), *grid, option, value], 2, option, "100", value
        )


def test_seeds_past_the_largest_seed_exit_2(isolated, tmp_path):
    with unchanged(tmp_path):
        for command, option in (("train", "--repeat"), ("sweep", "--seeds")):
            grid = ["--grid", "train.batch_size=8,16"] if command == "sweep" else []
            args = [command, str(SMOKE), *sets(isolated, "seed=4294967295"), *grid, option, "2"]
            cli_fails(args, 2, option, "4294967295", "lower seed")


def test_too_many_named_seeds_exit_2(isolated, tmp_path):
    with unchanged(tmp_path):
        seeds = ",".join(str(s) for s in range(101))
        cli_fails(["train", str(SMOKE), *sets(isolated), "--seeds", seeds], 2, "--seeds", "100")


# -- a --grid key given twice ----------------------------------------------------------


def test_grid_key_twice_exit_2(isolated, tmp_path):
    args = ["sweep", str(SMOKE), *sets(isolated)]
    args += ["--grid", "train.batch_size=8,16", "--grid", "train.batch_size=32,64"]
    with unchanged(tmp_path):
        cli_fails(args, 2, "train.batch_size", "twice")


# -- output folders that are files, for every command that writes them -----------


@pytest.mark.parametrize("key", ["output.dir", "output.log_dir", "output.cache_dir"])
@pytest.mark.parametrize("command", ["train", "sweep", "tune"])
def test_output_folder_that_is_a_file(command, key, isolated, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    extra = {
        "train": [],
        "sweep": ["--grid", "train.batch_size=8,16"],
        "tune": ["--trials", "1"],
    }[command]
    overrides = with_key(isolated, key, str(blocker)) + ([SPACE] if command == "tune" else [])
    args = [command, str(SMOKE), *sets(overrides), *extra]
    with unchanged(tmp_path):
        cli_fails(args, 3, f"{key}: {blocker} is a file where a folder should be", f"another {key}")


def test_finetune_with_a_cache_folder_that_is_a_file(isolated, tmp_path):
    from fmnist_tl.models.assembly import build_model

    config = load_config(SMOKE, isolated)
    models = tmp_path / "models"
    models.mkdir()
    build_model(config).model.save(models / "m.keras")
    (models / "m.config.yaml").write_text(config.to_yaml())
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    args = ["finetune", str(models / "m.keras"), "--epochs", "1"]
    with unchanged(tmp_path):
        cli_fails(
            [*args, "--set", f"output.cache_dir={blocker}"],
            3,
            "output.cache_dir",
            "is a file where a folder should be",
        )


def run_folder(tmp_path: Path, overrides: list[str], **state: object) -> Path:
    """A hand-made interrupted run: config.yaml, state.json and a last.keras placeholder."""
    run = tmp_path / "saved_models" / "smoke-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(load_config(SMOKE, overrides).to_yaml())
    RunFolder(run).save_state(RunState("train", ["head"], "head", **state))  # type: ignore[arg-type]
    (run / LAST).write_bytes(b"the model of the last committed epoch")
    return run


def test_resume_with_a_log_folder_that_is_a_file(isolated, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    run = run_folder(tmp_path, with_key(isolated, "output.log_dir", str(blocker)))
    with unchanged(tmp_path):
        cli_fails(["train", "--resume", str(run)], 3, "output.log_dir", "a file where")


# -- run states that cannot be true ----------------------------------------------


@pytest.mark.parametrize("epochs_done", [10**30, 2**62])
def test_resume_epoch_count_that_fits_no_run(epochs_done, isolated, tmp_path):
    run = run_folder(tmp_path, isolated, epochs_done=epochs_done)
    with unchanged(tmp_path):
        cli_fails(["train", "--resume", str(run)], 3, STATE, "damaged run state", "epochs_done")


def test_resume_complete_without_metrics_deletes_nothing(isolated, tmp_path):
    run = run_folder(tmp_path, isolated, complete=True)
    with unchanged(tmp_path):
        line = cli_fails(["train", "--resume", str(run)], 3, "damaged run state", "metrics.json")
    assert "its results are in" not in line
    assert (run / LAST).is_file()


# -- ~user that does not exist -----------------------------------------------------------


@pytest.mark.parametrize("key", ["output.dir", "data.dir", "output.log_dir", "output.cache_dir"])
def test_unknown_user_home_in_a_path(key, isolated, tmp_path):
    with unchanged(tmp_path):
        args = ["train", str(SMOKE), *sets(with_key(isolated, key, f"{NOBODY}/x"))]
        cli_fails(args, 3, key, NOBODY, "cannot expand ~")


# -- every file a command writes is checked before the first is -------------


@pytest.fixture
def model(isolated, tmp_path) -> Path:
    from fmnist_tl.models.assembly import build_model

    config = load_config(SMOKE, isolated)
    path = tmp_path / "models" / "m.keras"
    path.parent.mkdir()
    build_model(config).model.save(path)
    (path.parent / "m.config.yaml").write_text(config.to_yaml())
    return path


def test_evaluate_data_dir_of_unknown_user(model, tmp_path):
    with unchanged(tmp_path):
        cli_fails(["evaluate", str(model), "--data-dir", f"{NOBODY}/x"], 3, "--data-dir", NOBODY)


@pytest.mark.parametrize("picture", ["e_confusion.png", "e_misclassified.png"])
def test_evaluate_picture_path_that_is_a_folder(picture, model, synthetic_dir, tmp_path):
    out = tmp_path / "reports"
    (out / picture).mkdir(parents=True)
    args = [
        "evaluate",
        str(model),
        "--data-dir",
        str(synthetic_dir),
        "--output",
        str(out / "e.json"),
    ]
    with unchanged(tmp_path):
        line = cli_fails(args, 3, str(out / picture), "remove that folder", "another --output")
    assert "give a file path" not in line
    assert not (out / "e.json").exists()


def test_evaluate_default_report_picture_that_is_a_folder(model, synthetic_dir, tmp_path):
    """Without --output the report goes beside the model: checked there too, before writing."""
    (model.parent / "evaluation_confusion.png").mkdir()
    with unchanged(tmp_path):
        cli_fails(
            ["evaluate", str(model), "--data-dir", str(synthetic_dir)], 3, "remove that folder"
        )
    assert not (model.parent / "evaluation.json").exists()


@pytest.mark.parametrize("name", ["best.keras", "best.config.yaml", "latest.json"])
def test_train_publish_target_that_is_a_folder(name, isolated, tmp_path):
    target = tmp_path / "saved_models" / name
    target.mkdir(parents=True)
    with unchanged(tmp_path):
        line = cli_fails(
            ["train", str(SMOKE), *sets(isolated, "output.update_best=true")],
            3,
            str(target),
            "remove that folder",
            "another output.dir",
        )
    assert "give a file path" not in line


def test_train_without_publishing_ignores_a_best_folder(isolated, tmp_path):
    """output.update_best false publishes nothing, so a best.keras folder is no obstacle."""
    target = tmp_path / "saved_models" / "best.keras"
    target.mkdir(parents=True)
    result = runner.invoke(app, ["train", str(SMOKE), *sets(isolated, "output.update_best=false")])
    assert result.exit_code == 0, result.output
    runs = [d for d in target.parent.iterdir() if d.name.startswith("smoke-")]
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()
    assert target.is_dir() and not any(target.iterdir())
    assert json.loads((runs[0] / "metrics.json").read_text())["test"]["accuracy"] >= 0.0
