"""The data a run or a search trains on: the training pool, its seeded split, the test set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import data
from ..config import Config


@dataclass
class StageData:
    """What one stage fits on: images (or cached features of them) and labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


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

    def images(self) -> StageData:
        return StageData(self.x_train, self.y_train, self.x_val, self.y_val)

    def of_pool(self, pooled: np.ndarray, config: Config) -> StageData:
        """`pooled` (one row per pool image, e.g. its features) split like the images."""
        (x_train, _), (x_val, _) = data.split_train_val(
            pooled, self.y_pool, config.data.val_split, config.seed
        )
        return StageData(x_train, self.y_train, x_val, self.y_val)


def prepare_data(config: Config) -> Splits:
    ds = data.load_fashion_mnist(config.data.dir)
    x, y = data.limit(ds.x_train, ds.y_train, config.data.train_limit)
    (xt, yt), (xv, yv) = data.split_train_val(x, y, config.data.val_split, config.seed)
    xs, ys = data.limit(ds.x_test, ds.y_test, config.data.test_limit)
    return Splits(x, y, xt, yt, xv, yv, xs, ys, ds.source)
