"""Where a config comes from: defaults, a YAML file, overrides, a model's folder.

Defaults -> YAML -> overrides (`--set key.path=value` strings, or a {key.path: value} dict
from Python), then one validation of the whole: the schema, and then the tune.space check, so
every loaded config is one `fmnist tune` can search. YAML is read strictly: a key written twice
in one mapping (a section included) is an error naming both lines, never "the last one wins".
Every error is one line that starts with its source (the file, `defaults` or the override),
names the key path and says what is allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, MissingFileError, first_line, os_failure, short_path
from ..layout import CONFIG
from ..paths import check_file, open_regular
from .fields import is_text_field
from .schema import Config, check_sections, field_annotation, parse, shown
from .space import search_space

Overrides = Sequence[str] | Mapping[str, Any]
MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *anchor`: merged keys may be overridden
MAX_DEPTH = 64  # collections in collections; the deepest key path of a config is 4
# Read before parsing: the largest config here is 4 KiB; a tune.space or sweep grid of
# thousands of values still fits, and a huge file is refused before YAML holds it in memory.
MAX_CONFIG_BYTES = 2**20


class DuplicateKey(yaml.YAMLError):
    """A mapping holds the same key twice: YAML itself would keep the last value silently."""

    def __init__(self, path: list[str], first: int, second: int, section: bool) -> None:
        self.path, self.first, self.second, self.section = path, first, second, section
        super().__init__(self.words())

    def words(self, lines: bool = True) -> str:
        what = "section" if self.section else "key"
        where = f", at lines {self.first} and {self.second}" if lines else ""
        fix = "merge them into one" if self.section else "keep one"
        return f"{what} {'.'.join(self.path)!r} is written twice{where}; {fix}"


class TooDeep(yaml.YAMLError):
    """Collections nested deeper than MAX_DEPTH: every step after the parser (composing,
    checking, validating, copying) recurses, so Python's stack would give out first."""

    def __init__(self, mark: Any) -> None:
        self.line = mark.line + 1 if mark is not None else None
        super().__init__(self.words())

    def words(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        return f"nested deeper than {MAX_DEPTH} levels{where}; a config is a few levels deep"


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping, at any depth, and
    collections nested deeper than MAX_DEPTH.

    The check runs on the composed node tree, before construction and before `<<` merges
    are flattened, so a merged key that a mapping overrides is not a duplicate.
    """

    depth = 0

    def compose_document(self) -> Any:
        node = super().compose_document()
        _check_duplicates(node, [], set())
        return node

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_duplicates(node: yaml.Node, path: list[str], seen: set[int]) -> None:
    if id(node) in seen:  # an alias: checked where its anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, [*path, str(i)], seen)
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        is_key = isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG
        key = key_node.value if is_key else ""
        line = key_node.start_mark.line + 1
        if is_key and key in lines:
            section = isinstance(value_node, yaml.MappingNode)
            raise DuplicateKey([*path, key], lines[key], line, section)
        if is_key:
            lines[key] = line
        _check_duplicates(value_node, [*path, key] if is_key else path, seen)


def config_beside(model_path: Path) -> Path | None:
    """The resolved config saved with a model: <stem>.config.yaml, else config.yaml, else None.

    A candidate that exists but is no regular file (a folder, a FIFO) is returned too: reading
    it says what it is, rather than another config being taken in silence."""
    for candidate in (model_path.with_suffix(".config.yaml"), model_path.parent / CONFIG):
        if candidate.exists():
            return candidate
    return None


def load_saved_config(
    path: Path,
    overrides: Overrides | None = None,
    origins: Mapping[str, str] | None = None,
    action: str = "resumed",
) -> Config:
    """A run's own saved config: damaged, it is a damaged run folder (exit 3), not bad usage.

    An error in `overrides` (typed by the user) stays a ConfigError naming the option.
    """
    try:
        load_config(path)
    except ConfigError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise MissingFileError(
            f"{short_path(path)}: damaged ({reason}); this run cannot be {action}: "
            "train again with `fmnist train CONFIG`"
        ) from None
    return load_config(path, overrides, origins=origins)


def finetune_config(
    model_path: Path,
    unfreeze_from: str | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    overrides: Sequence[str] | None = None,
) -> Config:
    """The config saved beside a model with finetune's options on top; each error names its
    option. No TensorFlow: the CLI checks all of it before the model loads."""
    extra, origins = list(overrides or []), {}
    for key, value in (
        ("unfreeze_from", unfreeze_from),
        ("learning_rate", learning_rate),
        ("epochs", epochs),
    ):
        if value is not None:
            extra.append(f"finetune.{key}={value}")
            origins[f"finetune.{key}"] = f"--{key.replace('_', '-')} {value}"
    return load_saved_config(_run_config(model_path), extra, origins, action="fine-tuned")


def _run_config(model_path: Path) -> Path:
    """The resolved config saved with a model, or an error saying what to do."""
    if not model_path.is_file():
        raise MissingFileError(
            f"{short_path(model_path)}: model file not found; train one first "
            "(`fmnist train CONFIG`) or pass the path to a .keras file"
        )
    found = config_beside(model_path)
    if found is not None:
        return found
    raise MissingFileError(
        f"{short_path(model_path)}: no config.yaml beside the model; fine-tune a model inside "
        "a run folder written by `fmnist train`"
    )


def load_config(
    path: str | Path | None,
    overrides: Overrides | str | None = None,
    *,
    origins: Mapping[str, str] | None = None,
) -> Config:
    """Defaults -> YAML file -> overrides, validated as a whole (ConfigError, one line).

    `overrides` is a list of "key.path=value" strings (values typed by the schema, as `--set`
    does) or a dict {"key.path": value} of values already typed; both are validated alike.
    `path=None` starts from the defaults. output.name defaults to the file's stem. An error
    in a value an override set names the override (or `origins[key]`, the option that set it,
    e.g. "--learning-rate"), not the file: the user typed it there.
    """
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        raw = _read_yaml(path)
        try:
            check_sections(raw)  # before an override could merge into a section given a scalar
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if isinstance(overrides, str):
        overrides = [overrides]
    labels: dict[str, str] = {}  # key path -> the override that set it
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            label = _label(origins, str(key), f"overrides[{str(key)!r}]")
            labels[str(key).strip()] = label
            _set_key(raw, str(key), copy.deepcopy(value), label)
    else:
        for item in overrides or []:
            key, label = _apply_override(raw, item, origins)
            labels[key] = label
    config = validate(raw, source, labels)
    if config.output.name is None:
        _name_from_file(config, Path(path).stem if path is not None else "default", source)
    config.output.pin_tracking()  # where tracking goes is saved with the run
    return config


def validate(
    raw: dict[str, Any], source: str = "config", labels: Mapping[str, str] | None = None
) -> Config:
    """The schema's validation, then the tune.space check; ConfigError prefixed by `source`,
    or by the override in `labels` (key path -> label) that set the value in error."""
    try:
        config = parse(raw)
        search_space(config)
    except ConfigError as exc:
        raise ConfigError(f"{_origin(exc, source, labels or {})}: {exc}") from None
    return config


def _origin(exc: ConfigError, source: str, labels: Mapping[str, str]) -> str:
    """The override that set the erring key (or the section holding it), else `source`."""
    key = getattr(exc, "key", None)
    if not key:
        return source
    for path, label in reversed(list(labels.items())):  # the last override wins
        if key == path or key.startswith(f"{path}.") or key.startswith(f"{path}["):
            return label
    return source


def _label(origins: Mapping[str, str] | None, key: str, default: str) -> str:
    return (origins or {}).get(key.strip(), default)


def _name_from_file(config: Config, stem: str, source: str) -> None:
    """output.name from the config file's stem, checked as any name is."""
    try:
        config.output.name = stem
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ConfigError(
            f"{source}: output.name: the file name {shown(stem)} is no run name ({reason}); "
            "set output.name to a plain name"
        ) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    check_file(path, "config file", "pass the path to a YAML file", ConfigError)
    try:
        with open_regular(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{short_path(path)}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, far more "
                "than any config; pass the path to a YAML config"
            )
        data = yaml.load(raw.decode("utf-8"), Loader=StrictLoader)
    except (DuplicateKey, TooDeep) as exc:
        raise ConfigError(f"{path}: {exc.words()}") from None
    except RecursionError:  # aliases can nest what the composer saw shallow
        raise ConfigError(f"{path}: {TooDeep(None).words()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at position "
            f"{exc.start}); save the config as UTF-8"
        ) from None
    except OSError as exc:  # replaced after the check by a FIFO, a disk error, ...
        raise ConfigError(f"cannot read the config: {os_failure(exc, path)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections "
            f"({', '.join(Config.model_fields)}), got {type(data).__name__}"
        )
    return data


def _apply_override(
    raw: dict[str, Any], item: str, origins: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """Set `key.path=value` in the raw dict, typed by the schema field it names.

    Returns the key and the label its errors start with."""
    if not isinstance(item, str):
        raise ConfigError(f"override {item!r}: expected a 'key.path=value' string")
    key, sep, text = item.partition("=")
    key = key.strip()
    # The value is echoed cut short: the error's own "(got ...)" shows it too.
    label = _label(origins, key, f"--set {shown(key + sep + text)}")
    if not sep or not key:
        raise ConfigError(f"{label}: expected key.path=value, e.g. train.epochs=5")
    annotation = field_annotation(key.split("."), label)
    # Strings stay verbatim ("none", "1e-3" as a name); everything else is parsed as YAML.
    value: Any = text if is_text_field(annotation) else _yaml_scalar(text, label)
    _set_key(raw, key, value, label)
    return key, label


def _set_key(raw: dict[str, Any], key: str, value: Any, label: str) -> None:
    """Put `value` at a dotted key; a mapping given for a section merges into what is there."""
    parts = key.strip().split(".")
    annotation = field_annotation(parts, label)
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    old = node.get(parts[-1])
    is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    if is_section and not isinstance(value, dict):
        first = next(iter(annotation.model_fields))
        raise ConfigError(
            f"{label}: {key.strip()} is a section; set a key inside it, "
            f"e.g. --set {key.strip()}.{first}={_example(value)}"
        )
    if is_section and isinstance(value, dict) and isinstance(old, dict):
        value = _merged(old, value)
    node[parts[-1]] = value


def _example(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    result = dict(old)
    for key, value in new.items():
        both = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = _merged(result[key], value) if both else value
    return result


def _yaml_scalar(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=StrictLoader) if text.strip() else None
    except DuplicateKey as exc:
        raise ConfigError(f"{label}: {exc.words(lines=False)}") from None
    except (TooDeep, RecursionError):
        raise ConfigError(f"{label}: {TooDeep(None).words()}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{label}: cannot parse the value {text!r}") from None
