"""No silent acceptance (issue 28, class 5), through the real CLI.

A section given a scalar is an error whether or not --set touches it; a float that is 0 or inf
in the dtype it is used in is refused naming its key, for every float key; grid values are
compared after they are typed. Each case: exit 2, exactly one line naming the key, nothing
written.
"""

from __future__ import annotations

import pytest
from conftest import SMOKE, cli_fails
from pydantic import BaseModel
from typer.testing import CliRunner

from fmnist_tl.cli import app
from fmnist_tl.config import fields
from fmnist_tl.config.schema import Config

# Floats Python uses as they are (a share of the data, epochs of warmup, GiB of memory): no
# float32 round trip. Every other float key goes to TensorFlow in float32.
PYTHON_FLOATS = {
    "data.val_split",
    "train.warmup_epochs",
    "finetune.warmup_epochs",
    "runtime.cache_memory_gb",
}


def float_keys(model: type[BaseModel] = Config, at: str = "") -> dict[str, bool]:
    """Every float key of the schema -> whether it is checked in float32 (fields.Float32)."""
    found = {}
    for name, field in model.model_fields.items():
        key = f"{at}.{name}" if at else name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found |= float_keys(field.annotation, key)
        elif field.annotation is float:
            found[key] = any(getattr(m, "func", None) is fields._in_float32 for m in field.metadata)
    return found


def test_every_float_key_says_the_dtype_it_is_used_in():
    """A new float key must choose: float32 (checked) or a Python float listed above."""
    keys = float_keys()
    assert {k for k, float32 in keys.items() if not float32} == PYTHON_FLOATS
    assert "train.learning_rate" in keys and keys["train.learning_rate"]


@pytest.mark.parametrize("key", sorted(k for k, float32 in float_keys().items() if float32))
def test_a_float_that_is_zero_in_float32_is_refused_with_its_key(key, tmp_path):
    args = ["config", "show", str(SMOKE), "--set", f"output.dir={tmp_path / 'runs'}"]
    for tiny in ("1e-50", "1.0e-40", "-1e-39"):  # 0 in float32; flushed to 0 by TensorFlow
        line = cli_fails([*args, "--set", f"{key}={tiny}"], 2, f"{key}: ")
        assert "0 in float32" in line or "greater than" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_tiny_learning_rate_is_refused_in_a_file_a_grid_and_a_search(tmp_path):
    config = tmp_path / "lr.yaml"
    config.write_text("train:\n  learning_rate: 1.0e-50\n")
    cli_fails(["config", "show", str(config)], 2, f"{config}: train.learning_rate", "float32")
    out = ["--set", f"output.dir={tmp_path / 'runs'}", "--set", f"output.log_dir={tmp_path}/l"]
    cli_fails(
        ["sweep", str(SMOKE), "--grid", "finetune.learning_rate=1e-5,1e-50", *out],
        2,
        "finetune.learning_rate",
        "0 in float32",
    )
    space = "tune.space={train.learning_rate: {min: 1.0e-50, max: 0.1, log: true}}"
    cli_fails(["tune", str(SMOKE), "--set", space, *out], 2, "train.learning_rate", "float32")
    ok = CliRunner().invoke(
        app, ["config", "show", str(SMOKE), "--set", "train.learning_rate=2e-38"]
    )
    assert ok.exit_code == 0, ok.output  # float32's smallest normal is 1.18e-38
    assert [p.name for p in tmp_path.iterdir()] == ["lr.yaml"]


@pytest.mark.parametrize(
    ("yaml_text", "section"),
    [
        ("model: 3\n", "model"),
        ("train: fast\n", "train"),
        ("model:\n  head: [1, 2]\n", "model.head"),
        ("model:\n", "model"),
    ],
)
def test_a_section_given_a_scalar_is_an_error_with_or_without_set(yaml_text, section, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    overrides = [
        [],
        ["--set", f"{section}.epochs=2" if section == "train" else "model.head.units=8"],
    ]
    for extra in overrides:
        line = cli_fails(["config", "show", str(config), *extra], 2, f"{config}: {section}: ")
        assert "is a section" in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


def test_a_section_given_a_scalar_through_the_api():
    from fmnist_tl.config import load_config
    from fmnist_tl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.head: is a section"):
        load_config(None, {"model": {"head": 3}})


@pytest.mark.parametrize(
    ("grid", "same"),
    [
        ("train.learning_rate=0.1,1e-1", "0.1 and '1e-1' are the same value (0.1)"),
        ("train.learning_rate=1e-3,0.001", "'1e-3' and 0.001 are the same value"),
        ("model.input_size=32,32.0", "32 and 32.0 are the same value (32)"),
        ("model.resize_method=nearest, nearest", "'nearest' is the same value"),
        ("model.cnn.filters=[8, 16],[8,16]", "[8, 16] is the same value"),
    ],
)
def test_grid_duplicates_are_found_after_typing(grid, same, tmp_path):
    out = ["--set", f"output.dir={tmp_path / 'runs'}", "--set", f"output.log_dir={tmp_path}/l"]
    line = cli_fails(["sweep", str(SMOKE), "--grid", grid, *out], 2, grid.split("=")[0], same)
    assert "given twice" in line
    assert list(tmp_path.iterdir()) == []


def test_grid_duplicates_in_the_config_file_are_found_after_typing(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text("sweep:\n  grid:\n    train.learning_rate: [0.01, 1.0e-2]\n")
    out = ["--set", f"output.dir={tmp_path / 'runs'}"]
    cli_fails(["sweep", str(config), *out], 2, "train.learning_rate", "the same value (0.01)")
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.yaml"]


@pytest.mark.parametrize("stage", ["train", "finetune"])
def test_a_warmup_that_rounds_to_no_step_is_refused_before_any_work(stage, tmp_path, isolated):
    """The smoke config on the synthetic set trains in 5 steps an epoch (batches of 64), so
    0.05 epochs of warmup is no step: refused with its key (exit 2) before a run folder or a
    log exists."""
    sets = [*isolated, "finetune.epochs=2", "finetune.unfreeze_from=block2"]
    sets += ["model.backbone=cnn", "train.schedule=cosine", "finetune.schedule=cosine"]
    args = ["train", str(SMOKE), *(a for s in sets for a in ("--set", s))]
    line = cli_fails([*args, "--set", f"{stage}.warmup_epochs=0.05"], 2)
    assert line == (
        f"error: {stage}.warmup_epochs (0.05) is no optimizer step at 5 steps per epoch; set "
        "at least 0.2 (one step), or 0 for no warmup"
    )
    assert not list(tmp_path.glob("saved_models/*")) and not list(tmp_path.glob("logs/*"))
