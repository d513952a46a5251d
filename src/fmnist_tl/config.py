"""The experiment config: schema with defaults, YAML loading, --set overrides, validation.

Defaults live here, YAML files change only what differs, `--set key.path=value` overrides
both. The whole config is checked before any heavy work; every error is one line that names
the key path, the value received and what is allowed.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from pathlib import Path
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

from .backbones import BACKBONES
from .errors import ConfigError

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
    # float key, integers for an integer key. Checked against the schema when loaded.
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

    @model_validator(mode="after")
    def _check_tune_space(self) -> Config:
        """Every tune.space key is a tunable field, and every value it can take validates."""
        search_space(self)
        return self

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from trained weights (ImageNet or a file)."""
        return self.model.weights != "none"

    @property
    def frozen_stage1(self) -> bool:
        """Whether stage 1 keeps the backbone frozen (see ModelConfig.freeze_backbone)."""
        if self.model.freeze_backbone is not None:
            return self.model.freeze_backbone
        return self.pretrained and BACKBONES[self.model.backbone].pretrained

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def config_beside(model_path: Path) -> Path | None:
    """The resolved config saved with a model: <stem>.config.yaml, else config.yaml, else None."""
    for candidate in (model_path.with_suffix(".config.yaml"), model_path.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Defaults -> YAML file -> `key.path=value` overrides, validated as a whole."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        raw = _read_yaml(path)
    for item in overrides or []:
        _apply_override(raw, item)
    config = validate(raw, source)
    if config.output.name is None:
        config.output.name = Path(path).stem if path is not None else "default"
    return config


def validate(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass the path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections "
            f"({', '.join(Config.model_fields)}), got {type(data).__name__}"
        )
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `key.path=value` in the raw dict, typed by the schema field it names."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. train.epochs=5")
    parts = key.split(".")
    annotation = _field_annotation(parts, item)
    # Strings stay verbatim ("none", "1e-3" as a name); everything else is parsed as YAML.
    value: Any = text if _is_str_field(annotation) else _yaml_scalar(text, item)
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _field_annotation(parts: list[str], item: str, label: str | None = None) -> Any:
    """The schema annotation at a dotted key path; `label` prefixes errors (default: --set)."""
    label = label or f"--set {item!r}"
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


def _is_str_field(annotation: Any) -> bool:
    """str, str | None, or a Literal of strings: YAML must not turn "off" into False."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is Literal:
        return all(isinstance(a, str) for a in args)
    return origin in (typing.Union, types.UnionType) and len(args) == 1 and _is_str_field(args[0])


def _yaml_scalar(text: str, item: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: cannot parse the value {text!r}") from None


def _describe(exc: ValidationError) -> str:
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


# tune.space: what a search may change. Keys under these are errors, with the reason.
UNTUNABLE = {
    "tune": "they are the search's own settings",
    "data": "the data and its validation split are what every trial is scored on",
    "output": "they say where results go, not how the model learns",
    "runtime": "they change speed, not the model",
    "seed": "picking the luckiest seed measures noise, not a better setting",
    "finetune": "trials score stage 1 only, so stage-2 settings never change a score",
}
RANGE_KEYS = ("min", "max", "step", "log")


@dataclass(frozen=True)
class SearchDim:
    """One tune.space entry: a choice among values, or an integer or float range."""

    key: str  # dotted config key, e.g. model.head.units
    kind: Literal["choice", "int", "float"]
    values: tuple[Any, ...] = ()  # choice: YAML values, any type the key accepts
    low: float = 0.0  # ranges: min and max, both included (a float range never hits max)
    high: float = 0.0
    step: float | None = None
    log: bool = False  # sample uniformly in log space


def search_space(config: Config) -> list[SearchDim]:
    """tune.space, parsed and checked: each choice and each end of each range must validate
    in place in this config, typed exactly as `--set` types a value."""
    dims = []
    for key, spec in config.tune.space.items():
        dim = _search_dim(str(key), spec)
        if dim.kind == "choice":
            samples = [("choice", value) for value in dim.values]
        else:
            cast = int if dim.kind == "int" else float
            samples = [("min", cast(dim.low)), ("max", cast(dim.high))]
        for label, value in samples:
            try:
                apply_values(config, {dim.key: value}, keep_tune=False)
            except ConfigError as exc:
                raise ValueError(
                    f"tune.space: {dim.key}: {label} {value!r} is not accepted ({exc}); "
                    "search only values the key accepts"
                ) from None
        dims.append(dim)
    if config.tune.epochs is not None and "train.epochs" in config.tune.space:
        raise ValueError(
            "tune.epochs: train.epochs is tuned in tune.space, so tune.epochs must be null "
            "(the sampled train.epochs is each trial's epoch count)"
        )
    return dims


def check_search(config: Config, trials: int | None = None) -> int:
    """How many trials `fmnist tune` runs; ConfigError when this config cannot be searched."""
    if not config.tune.space:
        raise ConfigError(
            "tune.space is empty, so there is nothing to search; add a tune: section with keys "
            "to search, e.g. `space: {model.head.dropout: {min: 0.0, max: 0.5}}` (README: Tuning)"
        )
    if config.data.val_split == 0:
        raise ConfigError(
            "data.val_split: 0 leaves no validation split, and tune scores every trial on it; "
            "set data.val_split above 0 (e.g. 0.1)"
        )
    if config.runtime.distribute != "none":
        raise ConfigError(
            f"runtime.distribute: {config.runtime.distribute!r}: fmnist tune runs its trials in "
            "one process; set runtime.distribute=none"
        )
    n = config.tune.trials if trials is None else trials
    if n < 1:
        raise ConfigError(f"--trials {n}: run at least 1 trial")
    return n


def apply_values(config: Config, values: dict[str, Any], *, keep_tune: bool = True) -> Config:
    """A copy of `config` with dotted-key values set, validated as a whole (ConfigError).

    A tuned backbone brings its own input_size and unfreeze_from unless the config had moved
    them off the old backbone's defaults.
    """
    raw = config.to_dict()
    if not keep_tune:
        raw.pop("tune", None)
    backbone = values.get("model.backbone", config.model.backbone)
    if backbone != config.model.backbone and config.model.backbone in BACKBONES:
        old = BACKBONES[config.model.backbone]
        if raw["model"]["input_size"] == old.default_size:
            raw["model"]["input_size"] = None
        if raw["finetune"]["unfreeze_from"] == old.default_unfreeze:
            raw["finetune"]["unfreeze_from"] = None
    for key, value in values.items():
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _search_dim(key: str, spec: Any) -> SearchDim:
    where = f"tune.space: {key}"
    parts = key.split(".")
    if parts[0] in UNTUNABLE:
        what = "seed" if parts[0] == "seed" else f"{parts[0]}.* keys"
        raise ValueError(
            f"{where}: {what} cannot be tuned ({UNTUNABLE[parts[0]]}); tune model.*, augment.* "
            "or train.* keys"
        )
    try:
        annotation = _field_annotation(parts, key, label="tune.space")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise ValueError(
            f"{where}: this is a section, not a value; tune keys inside it: "
            f"{', '.join(f'{key}.{f}' for f in annotation.model_fields)}"
        )
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{where}: the list of choices is empty; give at least one value")
        return SearchDim(key, "choice", values=tuple(spec))
    if not isinstance(spec, dict):
        raise ValueError(
            f"{where}: give a list of choices (e.g. [128, 256]) or a range "
            f"(e.g. {{min: 0.0, max: 0.5}}), got {spec!r}"
        )
    unknown = [str(k) for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise ValueError(
            f"{where}: unknown range key {unknown[0]!r}; a range takes min and max, and "
            "optionally step or log: true"
        )
    if "min" not in spec or "max" not in spec:
        raise ValueError(f"{where}: a range needs both min and max, got {spec!r}")
    low, high = _range_number(spec["min"], where, "min"), _range_number(spec["max"], where, "max")
    step = None if spec.get("step") is None else _range_number(spec["step"], where, "step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise ValueError(f"{where}: min {low} is above max {high}")
    if step is not None and step <= 0:
        raise ValueError(f"{where}: step must be above 0, got {step}")
    if log and step is not None:
        raise ValueError(f"{where}: give step or log: true, not both")
    if log and low <= 0:
        raise ValueError(f"{where}: log: true needs min above 0, got {low}")
    kind = _number_kind(annotation)
    integers = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    if kind == "int" and not integers:
        raise ValueError(f"{where}: this key takes integers; give integer min, max and step")
    dim_kind: Literal["int", "float"] = "int" if integers and kind != "float" else "float"
    return SearchDim(key, dim_kind, low=low, high=high, step=step, log=log)


def _range_number(value: Any, where: str, name: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{where}: {name} must be a number, got {value!r}")
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: {name} must be a number, got {value!r}") from None
    return value


def _number_kind(annotation: Any) -> str | None:
    """For a range: "float" for a float key, "int" for an integer key, None for others."""
    args = set(typing.get_args(annotation)) or {annotation}
    if typing.get_origin(annotation) is Literal:
        return None
    if float in args:
        return "float"
    if int in args:
        return "int"
    return None
