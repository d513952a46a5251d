"""Optimizers, learning-rate schedules and compiling a model for a stage."""

from __future__ import annotations

import math
from typing import Any

import keras

from .. import metrics
from ..config import Config
from ..errors import ConfigError
from ..metrics import ACCURACY
from ..models import head
from ..records import FINETUNE
from .distill import DistillationLoss, LabelAccuracy

FEATURE_STEPS_PER_EXECUTION = 32  # see compile_model


def _loss(config: Config) -> keras.losses.Loss:
    """Cross-entropy with the labels (smoothed as train.label_smoothing), or with a teacher the
    distillation loss, which mixes in the teacher's softened probabilities."""
    t = config.train
    if t.teacher is not None:
        return DistillationLoss(t.distill_alpha, t.distill_temperature, t.label_smoothing)
    if t.label_smoothing > 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def steps_per_epoch(n_train: int, batch: int) -> int:
    """Optimizer steps in one epoch: what learning-rate schedules count in."""
    return max(1, math.ceil(n_train / batch))


def _optimizer(
    config: Config, stage: str, learning_rate: Any, rates: dict[str, float]
) -> keras.optimizers.Optimizer:
    """The stage's optimizer; with the stage's EMA or per-layer rates, the same class taught
    both (`_Tuned`), else Keras's own."""
    t, ema = config.train, config.schedule(stage).ema
    if t.optimizer == "adamw":
        cls, kwargs = keras.optimizers.AdamW, {"weight_decay": t.weight_decay}
    elif t.optimizer == "sgd":
        cls = keras.optimizers.SGD
        kwargs = {"momentum": 0.9, "nesterov": True, "weight_decay": t.weight_decay or None}
    else:
        cls, kwargs = keras.optimizers.Adam, {"weight_decay": t.weight_decay or None}
    if ema:
        kwargs |= {"use_ema": True, "ema_momentum": ema}
    if not (ema or rates):
        return cls(learning_rate, **kwargs)
    return _tuned(cls)(learning_rate, rates=rates, **kwargs)


def _tuned(base: type) -> type:
    """`base` with a learning-rate factor per variable (layer decay), and an EMA whose swaps
    callbacks.EmaWeights owns: fit's closing `finalize_variable_values` would otherwise copy
    the average over weights that already are the average."""

    class Tuned(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, rates: dict[str, float] | None = None, **kw: Any):
            super().__init__(*args, **kw)
            self.rates = dict(rates or {})

        def build(self, variables: Any) -> None:
            super().build(variables)
            # update_step gets the backend's variable: key the factors as Keras keys it.
            self._factors = {self._var_key(v): self.rates.get(v.path) for v in variables}

        def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
            factor = self._factors.get(self._var_key(variable))
            rate = learning_rate if factor is None else learning_rate * factor
            super().update_step(gradient, variable, rate)

        def finalize_variable_values(self, var_list: Any) -> None:
            pass

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "rates": self.rates}

    Tuned.__name__ = Tuned.__qualname__ = f"Tuned{base.__name__}"
    return Tuned


def layer_rates(model: keras.Model, decay: float) -> dict[str, float]:
    """timm's layer decay: the head learns at the stage's rate, and each block below it at
    `decay` times the rate of the block above (blocks by name: block_13_expand is block_13).
    Keyed by variable path; {} when decay is 1."""
    if decay == 1:
        return {}
    groups: dict[str, list[Any]] = {}
    for layer in _leaves(model):
        if layer.trainable_weights:
            name = "head" if layer.name.startswith(head.PREFIXES) else _block(layer.name)
            groups.setdefault(name, []).extend(layer.trainable_weights)
    order = [g for g in groups if g != "head"] + (["head"] if "head" in groups else [])
    depth = {g: len(order) - 1 - i for i, g in enumerate(order)}
    return {v.path: decay ** depth[g] for g, weights in groups.items() for v in weights}


def _leaves(model: keras.Model) -> list[Any]:
    """Every layer of `model`, nested models opened, in the order they run."""
    out = []
    for layer in model.layers:
        out.extend(_leaves(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _block(name: str) -> str:
    parts = name.split("_")
    return "_".join(parts[:2]) if len(parts) > 2 else name


def warmup_steps(config: Config, stage: str, steps_per_epoch: int) -> int:
    """The stage's warmup in optimizer steps. A warmup asked for that rounds to no step (a
    fraction of an epoch of few steps) is refused with its key (exit 2): the run would
    otherwise train without it, unsaid."""
    warmup_epochs = config.schedule(stage).warmup_epochs
    steps = round(warmup_epochs * steps_per_epoch)
    if warmup_epochs > 0 and steps == 0:
        key = "finetune" if stage == FINETUNE else "train"
        raise ConfigError(
            f"{key}.warmup_epochs ({warmup_epochs:g}) is no optimizer step at "
            f"{steps_per_epoch} steps per epoch; set at least {1 / steps_per_epoch:.3g} "
            "(one step), or 0 for no warmup"
        )
    return steps


def check_warmups(config: Config, stages: list[str], steps_per_epoch: int) -> None:
    """Every stage's warmup, checked before any work (`warmup_steps`)."""
    for stage in stages:
        warmup_steps(config, stage, steps_per_epoch)


def learning_rate(config: Config, stage: str, steps_per_epoch: int) -> Any:
    """The stage's learning rate: a number, or a schedule stepped by the optimizer.

    Schedules count optimizer steps, which are saved with the optimizer, so a resumed run
    carries on at the right point of its warmup or cosine curve.
    """
    s = config.schedule(stage)
    warmup = warmup_steps(config, stage, steps_per_epoch)
    if s.schedule == "cosine":
        total = max(1, s.epochs * steps_per_epoch - warmup)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else s.learning_rate,
            decay_steps=total,
            alpha=s.min_learning_rate / s.learning_rate,
            warmup_target=s.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if warmup:  # constant after a linear warmup: a cosine that does not decay (alpha 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=1, alpha=1.0, warmup_target=s.learning_rate, warmup_steps=warmup
        )
    return s.learning_rate  # constant, or plateau (ReduceLROnPlateau lowers this variable)


def compile_model(
    model: keras.Model,
    config: Config,
    stage: str,
    steps_per_epoch: int,
    *,
    on_features: bool = False,
) -> None:
    """Compile for `stage` ("head" or "finetune") with its learning rate and schedule.

    A head trained on cached features (`on_features`) runs FEATURE_STEPS_PER_EXECUTION steps
    per call into TensorFlow: its steps take milliseconds, so per-step dispatch and callback
    overhead would otherwise be a large share of them. The steps themselves are unchanged.
    """
    loss, scores = _loss(config), metrics.keras_metrics()
    if config.train.teacher is not None:  # targets are [label, the teacher's probabilities]
        scores = [LabelAccuracy(name=m) if m == ACCURACY.keras else m for m in scores]
    steps = config.runtime.steps_per_execution
    decay = config.finetune.layer_decay if stage == FINETUNE else 1.0
    rate = learning_rate(config, stage, steps_per_epoch)
    model.compile(
        optimizer=_optimizer(config, stage, rate, layer_rates(model, decay)),
        loss=loss,
        metrics=scores,
        jit_compile=config.runtime.jit_compile,
        steps_per_execution=max(steps, FEATURE_STEPS_PER_EXECUTION) if on_features else steps,
    )
