"""MultiWorkerMirroredStrategy with Keras 3: one workaround, applied only when it is used.

Keras 3's TensorFlow trainer builds a model under a strategy by taking the first batch and
averaging it over replicas with `strategy.reduce("MEAN", batch)` (`_maybe_symbolic_build`).
With more than one worker, MultiWorkerMirroredStrategy's reduce does not take a nested batch
(keras-team/keras#20585: the TensorFlow multi-worker tutorial fails the same way), so `fit`
stops before its first step. Only the batch's shapes and dtypes matter for the build, so the
workaround builds from this worker's first replica's part of the batch instead. Then each
step's logs (scalar loss and metrics) are averaged over workers with `reduce("MEAN", axis=0)`,
which a scalar has no axis for; scalars are averaged with axis=None instead. Both are applied
once, for the process that asked for `runtime.distribute: multi_worker`; every other strategy
keeps Keras's own path.
"""

from __future__ import annotations

from typing import Any

_PATCHED = False


def patch_keras() -> None:
    """Build models under a multi-worker strategy from one replica's batch (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as trainer_module
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    def local(value: Any, strategy: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(lambda v: local(v, strategy), next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer_module.reduce_per_replica = _scalar_safe(trainer_module, local)
    _PATCHED = True


def _scalar_safe(trainer_module: Any, local: Any) -> Any:
    """Keras's reduce_per_replica, with scalars averaged over workers on no axis."""
    from keras.src import tree

    original = trainer_module.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        multi = trainer_module._collective_all_reduce_multi_worker(strategy)
        if not multi or reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)

        def one(v: Any) -> Any:
            rank = local(v, strategy).shape.rank
            return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

        return tree.map_structure(one, values)

    return reduce_per_replica
