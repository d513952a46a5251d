"""Where a config comes from: defaults, a YAML file, `--set key.path=value`, a model's folder.

Defaults -> YAML -> overrides, then one validation of the whole: the schema, and then the
tune.space check, so every loaded config is one `fmnist tune` can search. Every error is one
line that starts with its source (the file, `defaults` or the `--set` item), names the key path
and says what is allowed.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError, first_line
from .schema import Config, field_annotation, parse
from .space import search_space


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
    """The schema's validation, then the tune.space check; ConfigError prefixed by `source`."""
    try:
        config = parse(raw)
        search_space(config)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass the path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
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
    annotation = field_annotation(parts, f"--set {item!r}")
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
