"""Process-wide setup for a run: seeds, determinism, precision, distribution strategy, how
frozen passes run, and how Keras reports progress."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import progress, tfenv
from ..config import Config
from ..errors import ConfigError, FmnistError, first_line
from . import multiworker

if TYPE_CHECKING:  # the CLI imports this module before TensorFlow may load
    from ..models.frozen import PassSetup


def seed_everything(seed: int) -> None:
    """Fix Python, NumPy, TensorFlow and Keras randomness (keras seeds all three too)."""
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def apply(config: Config) -> None:
    """Seeds, deterministic ops and the precision policy, before any model is built; what
    TensorFlow refuses here is the setup's fault, one line (exit 2)."""
    if config.runtime.verbose == "debug":  # before TensorFlow loads, when it has not yet
        tfenv.set_verbose()
    import keras
    import tensorflow as tf

    seed_everything(config.seed)
    rt = config.runtime
    policy = "float32"
    if rt.mixed_precision:
        if has_gpu():
            policy = "mixed_float16"
        else:
            progress.say("note: runtime.mixed_precision is ignored without a GPU")
    with _refused("runtime"):
        if rt.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.mixed_precision.set_global_policy(policy)


def check_environment(config: Config) -> None:
    """What a run reads from the environment, before any work: TF_CONFIG for multi_worker."""
    if config.runtime.distribute == "multi_worker":
        multiworker.check()


def strategy(config: Config) -> Any:
    """The tf.distribute strategy for `runtime.distribute` (None = default, one device)."""
    import tensorflow as tf

    kind = config.runtime.distribute
    with _refused(f"runtime.distribute: {kind}"):
        if kind == "mirrored":
            return tf.distribute.MirroredStrategy()
        if kind == "multi_worker":
            multiworker.patch_keras()  # two Keras 3 bugs with more than one worker
            # Reads the cluster from TF_CONFIG; waits for every peer (bounded, interruptible).
            make = tf.distribute.MultiWorkerMirroredStrategy
            return multiworker.build(make, config.runtime.peer_wait_s)
    return None


@contextlib.contextmanager
def _refused(what: str) -> Iterator[None]:
    """A library's failure while the run is set up: the setup's fault, one line (exit 2)."""
    try:
        yield
    except FmnistError:
        raise
    except Exception as exc:
        raise ConfigError(f"{what}: TensorFlow refused it: {first_line(exc)}") from None


def frozen_setup(config: Config, strat: Any = None) -> PassSetup:
    """How this run's frozen passes run (runtime.frozen_pass; Keras's under a strategy), and
    where converted models are kept: beside the feature cache."""
    from ..models.frozen import PassSetup

    return PassSetup(
        config.runtime.frozen_pass, Path(config.output.cache_dir), distributed=strat is not None
    )


def scope(strat: Any) -> contextlib.AbstractContextManager[Any]:
    return strat.scope() if strat is not None else contextlib.nullcontext()


def replicas(strat: Any) -> int:
    return int(strat.num_replicas_in_sync) if strat is not None else 1


def verbosity(config: Config) -> int:
    """Keras fit verbosity: a progress bar on a terminal, one line per epoch otherwise."""
    mode = config.runtime.verbose
    if mode in ("auto", "debug"):
        return 1 if sys.stdout.isatty() else 2
    return {"bar": 1, "epoch": 2, "silent": 0}[mode]
