"""`fmnist train`'s stage 1 and a `fmnist tune` trial are the same stage unit and the same fit.

Both run `training.stage.run_stage`, which calls `training.fit.fit_stage`; with the same seed
and values they give the same stage summary, filled by the stage itself (its feature cache
too), on cached features (frozen backbone) and on streamed images (backbone training).
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
import yaml
from conftest import SMOKE

from fmnist_tl.config import load_config
from fmnist_tl.experiments.tune import search as tuning
from fmnist_tl.experiments.tune import trial as trial_module
from fmnist_tl.training import fit, session, stage
from fmnist_tl.training.trainer import train

# Timings differ between any two fits; everything else in a summary must match.
TIMED = {"wall_time_s", "images_per_s", "feature_seconds"}


def spy(monkeypatch, module, calls: list) -> None:
    """Record every fit_stage call `module` makes, with the stage summary it returned."""
    real = module.fit_stage
    assert real is fit.fit_stage  # the same function object, not a copy

    def recording(*args, **kwargs):
        outcome = real(*args, **kwargs)
        calls.append((args[2], outcome.summary))
        return outcome

    monkeypatch.setattr(module, "fit_stage", recording)


def test_runs_and_trials_run_their_stages_through_one_unit():
    assert session.run_stage is stage.run_stage
    assert trial_module.run_stage is stage.run_stage


@pytest.mark.parametrize("frozen", [True, False], ids=["cached", "streaming"])
def test_tune_trial_and_train_stage1_share_the_fit_and_its_summary(
    tmp_path, isolated, monkeypatch, frozen
):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["model"]["freeze_backbone"] = frozen
    raw["train"]["epochs"] = 3
    raw["tune"] = {"space": {"model.head.units": [24]}}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path, isolated)

    trial_calls: list = []
    train_calls: list = []
    spy(monkeypatch, trial_module, trial_calls)
    spy(monkeypatch, session, train_calls)
    result = tuning.tune(config, 1)
    (record,) = result.leaderboard["trials"]
    run = train(load_config(path, [*isolated, "model.head.units=24"]))

    assert [stage for stage, _ in trial_calls] == ["head"]
    assert [stage for stage, _ in train_calls] == ["head"]
    (_, trial), (_, trained) = trial_calls[0], train_calls[0]
    a = {k: v for k, v in asdict(trial).items() if k not in TIMED}
    b = {k: v for k, v in asdict(trained).items() if k not in TIMED}
    # The stage fills its feature cache's status, for a trial and a run alike: the trial
    # computed the features, the run read them from the cache the trial wrote.
    assert a.pop("feature_cache") == ("miss" if frozen else None)
    assert b.pop("feature_cache") == ("hit" if frozen else None)
    assert a == b
    assert trial.epochs_run == 3 and trained.best_epoch == record["best_epoch"]
    assert record["val_accuracy"] == pytest.approx(trained.best_val_accuracy, abs=1e-6)
    assert record["val_loss"] == pytest.approx(trained.best_val_loss, abs=1e-6)
    assert (record["feature_cache"] is not None) == frozen
    assert (run.metrics.stages[0].feature_cache is not None) == frozen
