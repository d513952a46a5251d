"""The data a run or a search trains on: the training pool, its seeded split, the test set, and
with a teacher (train.teacher) the teacher's probabilities, split alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..classes import CLASS_NAMES
from ..config import Config
from ..data import pipeline
from ..data.sources import limit, load_fashion_mnist, split_train_val
from ..errors import ConfigError, DataError
from .distill import teacher_targets, with_targets


@dataclass
class StageData:
    """What one stage fits on: images (or cached features of them) and labels."""

    x_train: np.ndarray | pipeline.Rows  # Rows: of a memory-mapped cache
    y_train: np.ndarray
    x_val: np.ndarray | pipeline.Rows
    y_val: np.ndarray
    # x_train's axis 1 holds each example's views (image, mirror image), one drawn per epoch
    # (pipeline.make_dataset); x_val holds the first view only, as the model sees it unaugmented.
    views: bool = False


@dataclass
class Splits:
    x_pool: np.ndarray  # training examples before the validation split (feature cache key)
    y_pool: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    # The teacher's probabilities of the train and validation images (training/distill.py).
    teacher: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """What a fit's y is: the labels, or with a teacher [label, its probabilities]."""
        if self.teacher is None:
            return self.y_train, self.y_val
        return with_targets(self.y_train, self.teacher[0]), with_targets(
            self.y_val, self.teacher[1]
        )

    def images(self) -> StageData:
        y_train, y_val = self.targets
        return StageData(self.x_train, y_train, self.x_val, y_val)

    def of_pool(self, pooled: np.ndarray, config: Config, *, views: bool = False) -> StageData:
        """`pooled` (one row per pool image, e.g. its features) split like the images;
        `views`: its axis 1 holds each image's views (see StageData.views). A memory-mapped
        `pooled` stays on disk: each part is its row numbers, read batch by batch."""
        if isinstance(pooled, np.memmap):
            rows = np.arange(len(pooled))
            (i_train, _), (i_val, _) = split_train_val(
                rows, self.y_pool, config.data.val_split, config.seed
            )
            lazy_train = pipeline.Rows(pooled, i_train)
            lazy_val = pipeline.Rows(pooled, i_val, 0 if views else None)
            y_train, y_val = self.targets
            return StageData(lazy_train, y_train, lazy_val, y_val, views)
        (x_train, _), (x_val, _) = split_train_val(
            pooled, self.y_pool, config.data.val_split, config.seed
        )
        if views:
            x_val = np.ascontiguousarray(x_val[:, 0])
        y_train, y_val = self.targets
        return StageData(x_train, y_train, x_val, y_val, views)


def prepare_data(config: Config) -> Splits:
    ds = load_fashion_mnist(config.data.dir)
    x, y = limit(ds.x_train, ds.y_train, config.data.train_limit)
    (xt, yt), (xv, yv) = split_train_val(x, y, config.data.val_split, config.seed)
    cut = config.data.train_limit if len(y) < len(ds.y_train) else None  # the limit took some
    check_split(y, yt, yv, config.data.val_split, cut)
    xs, ys = limit(ds.x_test, ds.y_test, config.data.test_limit)
    splits = Splits(x, y, xt, yt, xv, yv, xs, ys, ds.source)
    probs = teacher_targets(config, x)  # once per pool image; None without a teacher
    if probs is not None:
        (pt, _), (pv, _) = split_train_val(probs, y, config.data.val_split, config.seed)
        splits.teacher = (pt, pv)
    return splits


def check_split(
    y_pool: np.ndarray, y_train: np.ndarray, y_val: np.ndarray, val_split: float, limit: int | None
) -> None:
    """Every class has a training example, and a validation one when there is a split.

    `limit`: data.train_limit when it left some training data out, else None (a class the
    data lacks is then the data's fault, exit 3).

    Checked before any run folder exists: without training examples Keras fits no step and a
    run would end in "no epoch produced a finite val_loss", which is about the data.
    """
    chosen = f"data.val_split={val_split}" + (f", data.train_limit={limit}" if limit else "")
    fix = "raise data.train_limit or lower data.val_split"
    if len(y_train) == 0:
        raise ConfigError(f"data: no training example left of {len(y_pool)} ({chosen}); {fix}")
    pool, train, val = (
        np.bincount(y, minlength=len(CLASS_NAMES)) for y in (y_pool, y_train, y_val)
    )
    for c, name in enumerate(CLASS_NAMES):
        n = f"{pool[c]} example{'' if pool[c] == 1 else 's'}"
        where = f"data: class {c} ({name}) has {n} in the training pool ({chosen})"
        if pool[c] == 0 and limit is None:
            raise DataError(f"{where}: the data lacks it; use data with all 10 classes")
        if train[c] == 0:
            raise ConfigError(f"{where}, none left for training; {fix}")
        if val_split > 0 and val[c] == 0:
            raise ConfigError(
                f"{where}, none in the validation split; raise data.train_limit or "
                "data.val_split, or set data.val_split=0 (no validation)"
            )
