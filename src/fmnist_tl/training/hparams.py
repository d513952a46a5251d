"""TensorBoard's HParams dashboard: every run and every tune trial logs its settings and scores.

Each run's TensorBoard folder (`<output.log_dir>/<run_id>`) gets one hparams session
(`tensorboard.plugins.hparams.api.hparams`) with the headline settings (backbone, size, resize,
weights, learning rate, batch size, optimizer, epochs, seed) plus the keys the run varies:
a sweep's grid keys (saved in the run's `sweep.grid`) and a tune trial's sampled keys; and the
final scores as scalars beside it. `tensorboard --logdir logs/fit` then lists the runs of a
study, or the trials of a search, side by side in its HPARAMS tab. No experiment summary
(`hparams_config`) is written: TensorBoard then infers the columns from every session under the
log dir, so runs of different studies and plain runs list together.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import Config
from ..records import RunMetrics

HEADLINE = (
    "model.backbone",
    "model.input_size",
    "model.resize_method",
    "model.weights",
    "train.learning_rate",
    "train.batch_size",
    "train.optimizer",
    "train.epochs",
    "finetune.epochs",
    "seed",
)
METRIC_PREFIX = "final/"  # scalar tags of the scores, e.g. final/test_accuracy


def hparam_values(config: Config, keys: Iterable[str] = ()) -> dict[str, bool | int | float | str]:
    """The headline settings and `keys`, as the values TensorBoard takes (lists as text)."""
    raw = config.to_dict()
    out: dict[str, bool | int | float | str] = {}
    for key in (*HEADLINE, *config.sweep.grid, *keys):
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[key] = node if isinstance(node, bool | int | float | str) else str(node)
    return out


def log_hparams(
    log_dir: str | Path,
    config: Config,
    scores: dict[str, float | None],
    *,
    keys: Iterable[str] = (),
    trial_id: str | None = None,
) -> None:
    """Write one hparams session and its final scores into `log_dir` (flushed, closed)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            hp.hparams(hparam_values(config, keys), trial_id=trial_id or Path(log_dir).name)
            for name, value in scores.items():
                if value is not None:
                    tf.summary.scalar(METRIC_PREFIX + name, float(value), step=0)
    finally:
        writer.flush()
        writer.close()


def log_run(config: Config, metrics: RunMetrics) -> None:
    """A finished run's session: `metrics` is its records.RunMetrics."""
    scores = {
        "test_accuracy": metrics.test.accuracy,
        "test_loss": metrics.test.loss,
        "val_accuracy": metrics.best_val_accuracy(),
        "wall_time_s": metrics.wall_time_s,
    }
    log_hparams(Path(config.output.log_dir) / metrics.run_id, config, scores)
