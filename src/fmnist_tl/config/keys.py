"""Every config key with its type, default and meaning, read from the schema (never retyped).

`fmnist config keys` and the README's key list are built on `key_table`; a key added to
`sections.py` with its `_key(default, meaning, bounds)` appears here by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .fields import type_text
from .schema import Config


@dataclass(frozen=True)
class KeyInfo:
    """One leaf key of the config."""

    key: str  # dotted path, e.g. "train.batch_size"
    type: str  # what it takes, e.g. "int in 1..8192", "one of: avg, max, flatten"
    default: Any  # as YAML/JSON would hold it: None, a number, text, a list or a mapping
    meaning: str  # one line
    section: str  # the docstring line of the section it sits in, e.g. "Stage 1: ..."


def key_table() -> list[KeyInfo]:
    """Every leaf key of `Config`, in schema order, with its type, default and meaning.

    Defaults that a backbone fills in (model.input_size, finetune.unfreeze_from) read None:
    the key's meaning says what None resolves to.
    """
    return _leaves(Config, "")


def _leaves(model: type[BaseModel], prefix: str) -> list[KeyInfo]:
    rows: list[KeyInfo] = []
    section = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_leaves(annotation, f"{key}."))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(
            KeyInfo(
                key=key,
                type=type_text(annotation, field.metadata),
                default=default,
                meaning=field.description or "",
                section=section,
            )
        )
    return rows
