"""The config schema: every section, its defaults and what each value may be.

Defaults live here (each with a one-line comment); YAML files and `--set` change only what
differs. The sections check their own values and the cross-field rules of one config; the
schema also answers the two questions everyone else asks about it: which field sits at a dotted
key path (`field_annotation`) and how a validation error reads as one line (`describe`), so the
loader and the tune-space checks word errors the same way. The tune.space grammar is not
checked here: it is a rule of tuning (`space.py`), run when a config is loaded.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..backbones import BACKBONES
from ..errors import ConfigError
from ..records import FINETUNE, HEAD

BackboneName = Literal["mobilenet_v2", "resnet50", "vgg16", "cnn", "dense"]
ResizeMethod = Literal["nearest", "bilinear", "bicubic", "area", "lanczos3"]


class _Section(BaseModel):
    # Unknown keys are errors, not silently ignored; assignments are re-validated.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dir: str | None = None  # folder with IDX (.gz or not) or CSV files; None = search
    train_limit: int | None = Field(None, ge=1)  # first N training examples (quick runs)
    test_limit: int | None = Field(None, ge=1)  # first N test examples
    val_split: float = Field(0.1, ge=0.0, lt=1.0)  # stratified, seeded share of train


class AugmentConfig(_Section):
    """Augmentation on the 28x28 images: random during training, and the test-time flip."""

    flip: bool = False  # random horizontal flip (clothes are left-right symmetric)
    translate: float = Field(0.0, ge=0.0, le=0.5)  # max shift, fraction of the image side
    erase: float = Field(0.0, ge=0.0, le=1.0)  # probability of random erasing per image
    erase_area: float = Field(0.33, gt=0.02, le=1.0)  # max erased area, fraction of image
    # Test-time augmentation: evaluation and prediction average the class probabilities of
    # each image and its mirror image. Twice the inference compute, no training cost.
    test_flip: bool = False


class HeadConfig(_Section):
    pooling: Literal["avg", "max", "flatten"] = "avg"  # over the backbone's feature map
    units: int = Field(256, ge=0)  # hidden Dense(relu) width; 0 = no hidden layer
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


class CNNConfig(_Section):
    """The from-scratch `cnn` backbone: conv blocks, each ending in [max-pool] + dropout."""

    filters: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    # One count for every block, or one per block: on a CPU the convs at 28x28 cost the most,
    # so a recipe can give the full-resolution block one conv and the later blocks two.
    convs_per_block: int | list[int] = 2
    # Max-pool after every block, or one flag per block: a recipe whose head flattens the
    # feature map can keep the last block at 7x7, where the position of details still shows.
    pool: bool | list[bool] = True
    batch_norm: bool = True
    dropout: float = Field(0.25, ge=0.0, lt=1.0)
    l2: float = Field(0.0, ge=0.0)  # L2 weight penalty on conv kernels

    @field_validator("convs_per_block", mode="before")
    @classmethod
    def _convs_shape(cls, value: Any) -> Any:
        ok = isinstance(value, int) or (
            isinstance(value, list) and value and all(isinstance(c, int) for c in value)
        )
        if not ok or isinstance(value, bool):
            raise ValueError(
                "model.cnn.convs_per_block must be a whole number of convs (1-4) or a list "
                f"with one per block, e.g. [1, 2, 2]; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_convs(self) -> CNNConfig:
        counts = self.convs_per_block
        if isinstance(counts, list) and len(counts) != len(self.filters):
            raise ValueError(
                f"model.cnn.convs_per_block has {len(counts)} entries but model.cnn.filters has "
                f"{len(self.filters)} blocks; give one count per block or a single number"
            )
        if any(not 1 <= c <= 4 for c in self.block_convs()):
            raise ValueError(
                f"model.cnn.convs_per_block must be between 1 and 4 per block, got {counts}"
            )
        if isinstance(self.pool, list) and len(self.pool) != len(self.filters):
            raise ValueError(
                f"model.cnn.pool has {len(self.pool)} entries but model.cnn.filters has "
                f"{len(self.filters)} blocks; give one true/false per block or a single one"
            )
        return self

    def block_convs(self) -> list[int]:
        """The number of convs in each block."""
        counts = self.convs_per_block
        return list(counts) if isinstance(counts, list) else [counts] * len(self.filters)

    def block_pools(self) -> list[bool]:
        """Whether each block ends in a max-pool."""
        return list(self.pool) if isinstance(self.pool, list) else [self.pool] * len(self.filters)


class DenseConfig(_Section):
    """The `dense` baseline: flatten, then these Dense(relu) layers before the head."""

    units: list[int] = Field(default_factory=list)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    l2: float = Field(0.0, ge=0.0)


class ModelConfig(_Section):
    backbone: BackboneName = "mobilenet_v2"
    weights: str = "imagenet"  # "imagenet", "none" (from scratch) or a weights file path
    # If the ImageNet download fails, continue from random weights (printed, recorded).
    allow_random_weights: bool = False
    # None = frozen in stage 1 iff the weights are pretrained (a frozen random backbone
    # outputs near-constant features: DESIGN.md). true/false force it.
    freeze_backbone: bool | None = None
    input_size: int | None = Field(None, ge=1)  # None = the backbone's default size
    resize_method: ResizeMethod = "bilinear"
    head: HeadConfig = Field(default_factory=HeadConfig)
    cnn: CNNConfig = Field(default_factory=CNNConfig)
    dense: DenseConfig = Field(default_factory=DenseConfig)


class _Schedule(_Section):
    """The learning-rate schedule of one stage; each stage has its own."""

    epochs: int
    learning_rate: float
    # constant; cosine decay to min_learning_rate over the stage's epochs; or plateau: multiply
    # by plateau_factor after plateau_patience epochs without a better monitored value.
    schedule: Literal["constant", "cosine", "plateau"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0.0)  # linear warmup from 0 (constant and cosine)
    min_learning_rate: float = Field(0.0, ge=0.0)  # where cosine ends; plateau's floor
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check_schedule(self) -> _Schedule:
        at = "train" if isinstance(self, TrainConfig) else "finetune"
        if self.warmup_epochs and self.schedule == "plateau":
            raise ValueError(
                f"{at}.warmup_epochs works with schedule constant or cosine, not plateau; set "
                "warmup_epochs: 0 or pick cosine"
            )
        if self.epochs and self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"{at}.warmup_epochs ({self.warmup_epochs:g}) must be shorter than epochs "
                f"({self.epochs})"
            )
        if self.min_learning_rate >= self.learning_rate and self.schedule != "constant":
            raise ValueError(
                f"{at}.min_learning_rate ({self.min_learning_rate:g}) must be below learning_rate "
                f"({self.learning_rate:g})"
            )
        return self


class TrainConfig(_Schedule):
    """Stage 1: the head (and a from-scratch backbone) with a frozen pretrained backbone."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0.0)  # decoupled (AdamW/SGD) weight decay
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    patience: int | None = Field(3, ge=1)  # EarlyStopping patience; null = no early stop
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    feature_cache: Literal["auto", "off"] = "auto"  # reuse frozen-backbone features

    @field_validator("feature_cache", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False; accept it as the "off" it was meant to be.
        return "off" if value is False else value


class FinetuneConfig(_Schedule):
    """Stage 2: unfreeze from a named layer and continue at a small learning rate."""

    epochs: int = Field(0, ge=0)  # 0 = no stage 2
    unfreeze_from: str | None = None  # layer-name prefix; None = the backbone's default
    learning_rate: float = Field(1e-5, gt=0.0)
    patience: int | None = Field(3, ge=1)


class OutputConfig(_Section):
    dir: str = "saved_models"  # run folders go to <dir>/<run_id>/
    log_dir: str = "logs/fit"  # TensorBoard logs go to <log_dir>/<run_id>/
    name: str | None = None  # run name; None = the config file's stem
    update_best: bool = True  # atomically replace <dir>/best.keras with this run's model
    cache_dir: str = ".cache/features"  # frozen-backbone features, keyed by what they depend on


class RuntimeConfig(_Section):
    mixed_precision: bool = False  # float16 compute on GPU (output layer stays float32)
    jit_compile: bool = False  # XLA-compile the train step
    steps_per_execution: int = Field(1, ge=1)
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    deterministic: bool = False  # TF deterministic ops (GPU reproducibility, slower)
    verbose: Literal["auto", "bar", "epoch", "silent"] = "auto"  # bar on a terminal


class TuneConfig(_Section):
    """`fmnist tune`: random search; each trial trains stage 1 and is scored on validation."""

    trials: int = Field(20, ge=1)  # default for --trials
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"  # maximised / minimised
    epochs: int | None = Field(None, ge=1)  # stage-1 epochs per trial; None = train.epochs
    # Dotted config key -> a list of choices, or a range {min, max, step?, log?}: floats for a
    # float key, integers for an integer key. Checked against the schema when loaded (space.py).
    space: dict[str, Any] = Field(default_factory=dict)

    @field_validator("space", mode="before")
    @classmethod
    def _null_space(cls, value: Any) -> Any:
        return {} if value is None else value  # `space:` with nothing under it


class Config(_Section):
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _resolve_backbone_facts(self) -> Config:
        """Fill per-backbone defaults and check what depends on the backbone."""
        spec = BACKBONES[self.model.backbone]
        m = self.model
        if m.input_size is None:
            m.input_size = spec.default_size
        if m.input_size < spec.min_size:
            raise ValueError(
                f"model.input_size: {m.input_size} is below the minimum {spec.min_size} "
                f"for backbone {spec.name!r}; use input_size >= {spec.min_size}"
            )
        if m.weights == "imagenet" and not spec.pretrained:
            raise ValueError(
                f"model.weights: 'imagenet' does not exist for backbone {spec.name!r}; "
                "use 'none' (train from scratch) or a weights file path"
            )
        if self.finetune.unfreeze_from is None:
            self.finetune.unfreeze_from = spec.default_unfreeze
        return self

    def schedule(self, stage: str) -> TrainConfig | FinetuneConfig:
        """The section that schedules `stage`: train for the head stage, finetune for stage 2."""
        if stage == HEAD:
            return self.train
        if stage == FINETUNE:
            return self.finetune
        raise ValueError(f"unknown stage {stage!r}; expected {HEAD!r} or {FINETUNE!r}")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse(raw: dict[str, Any]) -> Config:
    """`raw` validated against the schema; ConfigError with the one-line `describe` wording."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def field_annotation(parts: list[str], label: str) -> Any:
    """The schema annotation at a dotted key path; `label` starts each error (e.g. --set 'x=1')."""
    model: type[BaseModel] = Config
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(
                f"{label}: unknown key {'.'.join(parts[: depth + 1])!r}; "
                f"keys in {where}: {', '.join(fields)}"
            )
        annotation = fields[part].annotation
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise ConfigError(
                    f"{label}: {'.'.join(parts[: depth + 1])!r} is a value, not a section"
                )
            model = annotation
    return annotation


def describe(exc: ValidationError) -> str:
    """One line for the first error: key path, what was received, what is allowed."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        allowed = _keys_at(err["loc"][:-1])
        return f"{path}: unknown key; allowed keys here: {', '.join(allowed)}"
    if err["type"] == "value_error":
        # Our own cross-field checks already name the key and the fix.
        return str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    return f"{path}: {err['msg']} (got {got!r})"


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))
