"""Hostile configs through the real CLI: exit 2, one line naming the key, nothing on disk.

Classes of bad config (issue 19): values the libraries below cannot take, YAML accepted too
kindly (duplicates, booleans as numbers), names that are really paths, and limits one key sets
on another. Each class is tested with several members, and the bounds-wide classes with every
key the schema has, read from `key_table`, so a new key cannot skip them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SMOKE, cli_fails, snapshot
from typer.testing import CliRunner

from fmnist_tl.config import Config, key_table, load_config
from fmnist_tl.errors import ConfigError

runner = CliRunner()
KEYS = key_table()


def train_refused(tmp_path: Path, isolated: list[str], sets: list[str], *needles: str) -> str:
    """`fmnist train` refuses the config, and nothing under tmp_path was created or changed."""
    before = snapshot(tmp_path)
    args = ["train", str(SMOKE)]
    for item in [*isolated, *sets]:
        args += ["--set", item]
    line = refused(args, *needles)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "saved_models").exists()
    return line


# ------------------------------------------------------------- class 1: values out of range


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("train.batch_size=99999999999999999999999", ["train.batch_size", "1..8192"]),
        ("train.batch_size=0", ["train.batch_size", "(got 0)", "1..8192"]),
        ("train.epochs=100000", ["train.epochs", "100000", "1..1000"]),
        ("finetune.epochs=-1", ["finetune.epochs", "-1", "0..1000"]),
        ("seed=-1", ["seed", "-1", "0..4294967295"]),
        ("seed=4294967296", ["seed", "4294967296", "0..4294967295"]),
        ("model.input_size=100000", ["model.input_size", "100000", "1..512"]),
        ("model.head.units=10000000000", ["model.head.units", "10000000000", "0..8192"]),
        ("model.cnn.filters=[8, 99999999999]", ["model.cnn.filters[1]", "99999999999", "1024"]),
        ("model.cnn.filters=[]", ["model.cnn.filters", "1 to 8 items"]),
        ("model.dense.units=[0]", ["model.dense.units[0]", "(got 0)", "1..8192"]),
        ("runtime.steps_per_execution=100000", ["runtime.steps_per_execution", "1..1024"]),
        ("train.patience=0", ["train.patience", "1..1000 or null"]),
        ("tune.trials=1000000", ["tune.trials", "1000000", "1..1000"]),
        ("data.train_limit=70000", ["data.train_limit", "70000", "1..60000"]),
        ("data.test_limit=10001", ["data.test_limit", "10001", "1..10000"]),
        ("sweep.seeds=0", ["sweep.seeds", "1..100"]),
    ],
)
def test_integers_out_of_range(tmp_path, isolated, item, needles):
    train_refused(tmp_path, isolated, [item], *needles)


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("train.learning_rate=.inf", ["train.learning_rate", "inf", "(0, 1e+38]"]),
        ("train.learning_rate=.nan", ["train.learning_rate", "nan", "(0, 1e+38]"]),
        ("finetune.learning_rate=1e39", ["finetune.learning_rate", "1e39", "(0, 1e+38]"]),
        ("train.weight_decay=inf", ["train.weight_decay", "inf", "[0, 1]"]),
        ("model.cnn.l2=.inf", ["model.cnn.l2", "[0, 1]"]),
        ("train.warmup_epochs=.inf", ["train.warmup_epochs", "[0, 1000)"]),
        ("train.min_learning_rate=.nan", ["train.min_learning_rate", "nan"]),
        ("augment.translate=.nan", ["augment.translate", "[0, 0.5]"]),
        ("data.val_split=-.inf", ["data.val_split", "[0, 1)"]),
    ],
)
def test_floats_finite_and_bounded(tmp_path, isolated, item, needles):
    train_refused(tmp_path, isolated, [item], *needles)


@pytest.mark.parametrize(
    "row", [r for r in KEYS if r.type.startswith("number")], ids=lambda r: r.key
)
def test_every_float_key_refuses_infinity(row):
    for value in (".inf", "-.inf", ".nan"):
        refused(["config", "show", "--set", f"{row.key}={value}"], row.key, "allowed: number")


def test_largest_seed_is_accepted():
    assert load_config(SMOKE, ["seed=4294967295"]).seed == 2**32 - 1


# ------------------------------------------------------------- class 1b: limits across keys


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (["data.train_limit=10", "data.val_split=0.95"], ["data.val_split", "no training"]),
        (["data.train_limit=4", "data.val_split=0.1"], ["data.val_split", "no validation"]),
        (
            ["model.backbone=mobilenet_v2", "model.input_size=224", "train.batch_size=8192"],
            ["train.batch_size", "4.6 GiB", "224x224x3"],
        ),
        (
            ["tune.epochs=2", "train.epochs=5", "train.warmup_epochs=2"],
            ["tune.epochs", "warmup_epochs"],
        ),
        (["seed=4294967290", "sweep.seeds=10"], ["sweep.seeds", "4294967295"]),
        (
            ["train.schedule=cosine", "train.min_learning_rate=0.01"],
            ["train.min_learning_rate", "below learning_rate"],
        ),
        (["train.epochs=2", "train.warmup_epochs=2"], ["train.warmup_epochs", "shorter"]),
    ],
)
def test_cross_key_limits_before_any_work(tmp_path, isolated, sets, needles):
    train_refused(tmp_path, isolated, sets, *needles)


# ------------------------------------------------------------- class 2: YAML too kindly


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            "train:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n",
            ["'train.epochs'", "lines 2 and 4"],
        ),
        ("train:\n  epochs: 2\nseed: 1\ntrain:\n  batch_size: 8\n", ["section 'train'", "1 and 4"]),
        ("seed: 1\nseed: 2\n", ["key 'seed'", "lines 1 and 2"]),
        (
            "model:\n  cnn:\n    filters: [8]\n    dropout: 0.1\n    filters: [16]\n",
            ["'model.cnn.filters'", "3 and 5"],
        ),
        ("tune:\n  space:\n    model.head.units: [8]\n    model.head.units: [16]\n", ["3 and 4"]),
    ],
)
def test_duplicate_keys_name_both_lines(tmp_path, isolated, text, needles):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    for command in (["config", "show", str(path)], ["train", str(path)]):
        refused(command, str(path), "written twice", *needles)
    assert not (tmp_path / "saved_models").exists()


def test_yaml_merge_key_is_not_a_duplicate(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("train: &t\n  epochs: 2\nfinetune:\n  <<: *t\n  epochs: 1\n")
    config = load_config(path)
    assert (config.train.epochs, config.finetune.epochs) == (2, 1)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("train:\n  epochs: true\n", "train.epochs"),
        ("train:\n  learning_rate: false\n", "train.learning_rate"),
        ("seed: yes\n", "seed"),
        ("model:\n  cnn:\n    filters: [true, 8]\n", "model.cnn.filters[0]"),
        ("model:\n  cnn:\n    convs_per_block: true\n", "model.cnn.convs_per_block"),
        ("train:\n  patience: on\n", "train.patience"),
        ("augment:\n  flip: 1\n", "augment.flip"),
    ],
)
def test_booleans_are_not_numbers(tmp_path, text, key):
    path = tmp_path / "bool.yaml"
    path.write_text(text)
    refused(["train", str(path)], str(path), key)


@pytest.mark.parametrize("row", [r for r in KEYS if r.type.startswith("int")], ids=lambda r: r.key)
def test_every_integer_key_refuses_true(row):
    refused(["config", "show", "--set", f"{row.key}=true"], row.key, "not true/false")


def test_numbers_still_accepted_as_written(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("train:\n  learning_rate: 1\n  weight_decay: 1e-5\n  epochs: 3\n")
    config = load_config(path)
    assert config.train.learning_rate == 1.0 and config.train.weight_decay == 1e-5
    assert load_config(None, ["train.feature_cache=off"]).train.feature_cache == "off"


# ------------------------------------------------------------- class 3: names, not paths


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("../outside", ["output.name", "'../outside'", "output.dir"]),
        ("a/b", ["output.name", "not a path", "output.dir"]),
        ("a\\b", ["output.name", "not a path", "output.dir"]),
        ("..", ["output.name", "output.dir"]),
        (".", ["output.name", "output.dir"]),
        ("", ["output.name", "empty"]),
        (".hidden", ["output.name", "hidden"]),
        ("x" * 300, ["output.name", "100 bytes"]),
        ("tab\there", ["output.name", "control"]),
    ],
)
def test_run_names_are_names(tmp_path, isolated, name, needles):
    line = train_refused(tmp_path, isolated, [f"output.name={name}"], *needles)
    assert len(line) < 400  # a long value is cut short, not echoed whole
    assert not (tmp_path.parent / "outside").exists()


def test_a_file_stem_that_is_no_name(tmp_path):
    path = tmp_path / ".hidden.yaml"
    path.write_text("seed: 1\n")
    refused(["config", "show", str(path)], "output.name", "'.hidden'", "set output.name")
    assert load_config(path, ["output.name=plain"]).output.name == "plain"


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("finetune.unfreeze_from=", ["finetune.unfreeze_from", "empty"]),
        ("finetune.unfreeze_from=block/1", ["finetune.unfreeze_from", "'/'"]),
        ("data.dir=", ["data.dir", "empty"]),
        ("output.dir=", ["output.dir", "empty"]),
        ("model.weights=", ["model.weights", "empty"]),
    ],
)
def test_other_names_and_paths(tmp_path, isolated, item, needles):
    train_refused(tmp_path, isolated, [item], *needles)


# ------------------------------------------------------------- the Python API


def test_overrides_as_a_dict():
    config = load_config(SMOKE, {"train.epochs": 5, "model.head.units": 16, "seed": 3})
    assert (config.train.epochs, config.model.head.units, config.seed) == (5, 16, 3)
    assert config.train.batch_size == 64  # the file's other keys stay
    merged = load_config(SMOKE, {"train": {"epochs": 4}})  # a section dict merges
    assert (merged.train.epochs, merged.train.learning_rate) == (4, 0.003)
    as_strings = load_config(SMOKE, ["train.epochs=5", "model.head.units=16", "seed=3"])
    assert as_strings.to_dict() == config.to_dict()
    assert load_config(None).to_dict() == load_config(None, {}).to_dict()
    assert load_config(None).output.name == "default"


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"train.epochs": True}, ["train.epochs", "not true/false"]),
        ({"train.batch_size": 10**23}, ["train.batch_size", "1..8192"]),
        ({"train.epoch": 3}, ["unknown key 'train.epoch'", "epochs"]),
        ({"output.name": "../x"}, ["output.name", "output.dir"]),
        ({"train.learning_rate": float("inf")}, ["train.learning_rate"]),
    ],
)
def test_dict_overrides_are_validated_alike(overrides, needles):
    with pytest.raises(ConfigError) as info:
        load_config(SMOKE, overrides)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_key_table_covers_every_leaf():
    def leaves(tree: dict, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for key, value in tree.items():
            if isinstance(value, dict) and value and key not in ("space", "grid"):
                out |= leaves(value, f"{prefix}{key}.")
            else:
                out.add(f"{prefix}{key}")
        return out

    defaults = Config().to_dict()
    assert [r.key for r in KEYS] == sorted({r.key for r in KEYS}, key=[r.key for r in KEYS].index)
    assert {r.key for r in KEYS} == leaves(defaults)
    resolved_by_backbone = {"model.input_size", "finetune.unfreeze_from"}
    for row in KEYS:
        assert row.meaning.strip() and "\n" not in row.meaning, row
        assert row.type.strip(), row
        if row.key not in resolved_by_backbone:
            node = defaults
            for part in row.key.split("."):
                node = node[part]
            assert node == row.default, row
    by_key = {r.key: r for r in KEYS}
    assert by_key["train.batch_size"].type == "int in 1..8192"
    assert by_key["model.head.pooling"].type == "one of: avg, max, flatten"
    assert by_key["data.val_split"].type == "number in [0, 1)"
    assert by_key["seed"].default == 42


def test_tune_trials_bounded_before_any_work(tmp_path, isolated):
    before = snapshot(tmp_path)
    args = ["tune", str(SMOKE), "--trials", "5000"]
    for item in [*isolated, "tune.space={model.head.units: [8, 16]}"]:
        args += ["--set", item]
    refused(args, "--trials 5000", "1 to 1000")
    assert snapshot(tmp_path) == before


def refused(args: list[str], *needles: str) -> str:
    """Exit 2, one line, no traceback, every needle in it."""
    return cli_fails(args, 2, *needles)
