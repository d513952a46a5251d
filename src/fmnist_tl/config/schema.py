"""The whole config: its sections, the rules across them, and how its errors read.

`Config` holds the sections (`sections.py`) and checks the cross-key limits one config
decides alone, before any data is read: per-backbone input sizes and weights, train_limit
vs the validation split, the size of one input batch, the seeds a sweep uses. The schema
also answers which field sits at a dotted key path (`field_annotation`) and how a
validation error reads as one line (`describe`: the key, the value received, what is
allowed), so the loader and the tune-space checks word errors the same way. The tune.space
grammar is tuning's rule (`space.py`).
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic import model_validator as checks
from pydantic.fields import FieldInfo

from ..errors import ConfigError
from ..records import FINETUNE, HEAD
from .backbones import BACKBONES, BackboneName
from .fields import MAX_INPUT_BATCH_BYTES, MAX_SEED, Int, consecutive_seeds, shown, type_text
from .run_sections import OutputConfig, RuntimeConfig, SweepConfig, TuneConfig
from .sections import (
    AugmentConfig,
    CNNConfig,
    DataConfig,
    DenseConfig,
    FinetuneConfig,
    HeadConfig,
    ModelConfig,
    ResizeMethod,
    TrainConfig,
    _key,
    _Section,
)

__all__ = [
    "AugmentConfig",
    "BackboneName",
    "CNNConfig",
    "Config",
    "DataConfig",
    "DenseConfig",
    "FinetuneConfig",
    "HeadConfig",
    "ModelConfig",
    "OutputConfig",
    "ResizeMethod",
    "RuntimeConfig",
    "SweepConfig",
    "TrainConfig",
    "TuneConfig",
    "check_sections",
    "describe",
    "field_annotation",
    "parse",
    "shown",
]


class Config(_Section):
    """One experiment."""

    seed: Int = _key(
        42, "seeds Python, NumPy, TensorFlow, the split and the layers", ge=0, le=MAX_SEED
    )
    data: DataConfig = _key(DataConfig, "the data")
    augment: AugmentConfig = _key(AugmentConfig, "augmentation")
    model: ModelConfig = _key(ModelConfig, "the model")
    train: TrainConfig = _key(TrainConfig, "stage 1")
    finetune: FinetuneConfig = _key(FinetuneConfig, "stage 2")
    output: OutputConfig = _key(OutputConfig, "where results go")
    runtime: RuntimeConfig = _key(RuntimeConfig, "how a run uses the machine")
    tune: TuneConfig = _key(TuneConfig, "fmnist tune")
    sweep: SweepConfig = _key(SweepConfig, "fmnist sweep")

    @checks(mode="after")
    def _resolve_backbone_facts(self) -> Config:
        """Fill per-backbone defaults and check what depends on the backbone."""
        spec = BACKBONES[self.model.backbone]
        m = self.model
        if m.input_size is None:
            m.input_size = spec.default_size
        for key in ("input_size", "fallback_input_size"):
            size = getattr(m, key)
            if size is not None and size < spec.min_size:
                raise ValueError(
                    f"model.{key}: {size} is below the minimum {spec.min_size} "
                    f"for backbone {spec.name!r}; use {key} >= {spec.min_size}"
                )
        if m.weights == "imagenet" and not spec.pretrained:
            raise ValueError(
                f"model.weights: 'imagenet' does not exist for backbone {spec.name!r}; "
                "use 'none' (train from scratch) or a weights file path"
            )
        if self.finetune.unfreeze_from is None:
            self.finetune.unfreeze_from = spec.default_unfreeze
        return self

    @checks(mode="after")
    def _check_cross_keys(self) -> Config:
        """Limits one key sets on another, known before any data is read."""
        _check_split(self.data)
        channels = 3 if BACKBONES[self.model.backbone].rgb else 1
        size = self.model.input_size or 0
        batch_bytes = self.train.batch_size * size * size * channels * 4
        if batch_bytes > MAX_INPUT_BATCH_BYTES:
            raise ValueError(
                f"train.batch_size: {self.train.batch_size} images of {size}x{size}x{channels} "
                f"are {batch_bytes / 2**30:.1f} GiB of float32 input alone (the limit is "
                f"{MAX_INPUT_BATCH_BYTES // 2**30} GiB, before any activation); lower "
                "train.batch_size or model.input_size"
            )
        consecutive_seeds(self.seed, self.sweep.seeds, "sweep.seeds")
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


def _check_split(d: DataConfig) -> None:
    """With train_limit N, the split must leave examples on both sides (the pool is <= N)."""
    if d.train_limit is None or d.val_split == 0:
        return
    n_val = d.train_limit * d.val_split
    if d.train_limit - math.ceil(n_val) < 1:
        raise ValueError(
            f"data.val_split: {d.val_split:g} of train_limit {d.train_limit} leaves no training "
            "example; lower data.val_split or raise data.train_limit"
        )
    if round(n_val) < 1:
        raise ValueError(
            f"data.val_split: {d.val_split:g} of train_limit {d.train_limit} is "
            f"{n_val:.2g} examples: no validation set; raise data.val_split or "
            "data.train_limit, or set data.val_split: 0"
        )


def parse(raw: dict[str, Any]) -> Config:
    """`raw` validated against the schema; ConfigError with the one-line `describe` wording."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        error = ConfigError(describe(exc))
        # The key in error, so a loader can say which source (file or override) set it.
        error.key = _field_at(exc.errors()[0]["loc"])[0]  # type: ignore[attr-defined]
        raise error from None


def check_sections(raw: dict[str, Any], model: type[BaseModel] = Config, at: str = "") -> None:
    """Every section in `raw` is a mapping: `model: 3` is an error (naming the key) before any
    override merges into it, so a `--set model.backbone=cnn` never replaces it in silence."""
    for name, field in model.model_fields.items():
        if name not in raw or not _is_section(field.annotation):
            continue
        key, value = f"{at}.{name}" if at else name, raw[name]
        if not isinstance(value, dict):
            error = ConfigError(section_error(key, value, field.annotation))
            error.key = key  # type: ignore[attr-defined]
            raise error
        check_sections(value, field.annotation, key)


def section_error(key: str, value: Any, section: type[BaseModel]) -> str:
    """The words for a section given something else than a mapping of its keys."""
    return (
        f"{key}: is a section: give its keys as a mapping, or leave it out for the defaults "
        f"(got {shown(value)}); keys in {key}: {', '.join(section.model_fields)}"
    )


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
            if not _is_section(annotation):
                raise ConfigError(
                    f"{label}: {'.'.join(parts[: depth + 1])!r} is a value, not a section"
                )
            model = annotation
    return annotation


def describe(exc: ValidationError) -> str:
    """One line for the first error: key path, what was received, what is allowed."""
    err = exc.errors()[0]
    if err["type"] == "extra_forbidden":
        path = ".".join(str(p) for p in err["loc"])
        allowed = _keys_at(err["loc"][:-1])
        return f"{path}: unknown key; allowed keys here: {', '.join(allowed)}"
    if err["type"] == "value_error":
        # Our own cross-field checks already name the key and the fix.
        return str(err["msg"]).removeprefix("Value error, ")
    key, field = _field_at(err["loc"])
    got = err.get("input")
    if field is None and err["type"] in _NOT_A_MAPPING and key != "config":
        section = field_annotation(key.split("."), key)
        if _is_section(section):
            return section_error(key, got, section)
    allowed = f"; allowed: {type_text(field.annotation, field.metadata)}" if field else ""
    if err["type"] in _BOUNDS | {"finite_number"} and _not_finite(got):
        return f"{key}: must be a finite number (got {float(got)!r}){allowed}"
    return f"{key}: {_message(err)} (got {shown(got)}){allowed}"


_NOT_A_MAPPING = {"model_type", "model_attributes_type", "dict_type"}
_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _message(err: Any) -> str:
    """pydantic's message, a bound such as 1e38 written so, not as its 39 digits."""
    bound = next(iter((err.get("ctx") or {}).values()), None)
    if err["type"] not in _BOUNDS or not isinstance(bound, int | float) or abs(bound) < 1e6:
        return str(err["msg"])
    words = str(err["msg"]).rsplit(" ", 1)[0]
    return f"{words} {f'{bound:.6g}'.replace('e+', 'e')}"


def _not_finite(value: Any) -> bool:
    """inf or nan, as a float or as text a float would read ("inf", "nan", ".inf")."""
    if not isinstance(value, float | str):
        return False
    try:
        number = float(str(value).strip().removeprefix(".").replace("-.", "-").replace("+.", "+"))
    except ValueError:
        return False
    return not math.isfinite(number)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_at(loc: tuple[Any, ...]) -> tuple[str, FieldInfo | None]:
    """The dotted key (list items as [i]) and the leaf field an error location points at."""
    model: Any = Config
    key, field = "", None
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif model is not None and part in model.model_fields:
            field = model.model_fields[part]
            key = f"{key}.{part}" if key else str(part)
            model = field.annotation if _is_section(field.annotation) else None
            field = None if model is not None else field
        # Anything else is a union member's tag (e.g. "list[bool]"): not part of the key.
    return key or "config", field


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))
