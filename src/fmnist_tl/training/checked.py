"""JSON checked against a dataclass's field annotations, so a damaged file is named, not a crash.

`checked(cls, raw, where)` returns the fields of `cls` from a parsed JSON object, each of the
type its annotation declares ("int", "float | None", "list[str]", "dict[str, Any]", ...); a
missing field or a value of another type is a TypeError that names the field and the value.
JSON's `true` is never a number, and an int is a float. JSON's integers have no size limit,
Python's neither, but NumPy, TensorFlow and range() do: an int outside int64 is of no type.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

_JSON_TYPES: dict[str, Any] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
    "dict": dict,
    "list": list,
}
INT64 = 2**63  # |an int| below this fits the C integers it ends up in (else OverflowError)


def checked(
    cls: type,
    raw: Any,
    where: str,
    *,
    optional: frozenset[str] = frozenset(),
    nested: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The fields of dataclass `cls` from `raw`. Every field must be present unless it is in
    `optional` or, with `optional` empty, has a default; `nested` names and types the keys of
    dict fields (all present unless the dict is empty)."""
    if not isinstance(raw, dict):
        raise TypeError(f"{where} is a {type(raw).__name__}, not an object")
    out = {}
    for f in fields(cls):
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if f.name not in raw:
            if f.name in optional or (has_default and not optional):
                continue
            raise TypeError(f"{where}: '{f.name}' is missing")
        value = raw[f.name]
        if not is_type(value, str(f.type)):
            raise TypeError(f"{where}: '{f.name}' is {value!r}, not {f.type}")
        if isinstance(value, dict) and value:  # an empty one is a state not yet reached
            for key, hint in (nested or {}).get(f.name, {}).items():
                if key not in value:
                    raise TypeError(f"{where}: '{f.name}.{key}' is missing")
                if not is_type(value[key], hint):
                    raise TypeError(f"{where}: '{f.name}.{key}' is {value[key]!r}, not {hint}")
        out[f.name] = value
    return out


def is_type(value: Any, hint: str) -> bool:
    """`value` as JSON gives it matches a field annotation such as "list[str]", "int | None"."""
    options = [h.strip() for h in hint.split("|")]
    if value is None:
        return "None" in options
    for option in options:
        base, _, inner = option.partition("[")
        wanted = _JSON_TYPES.get(base)
        if wanted is None or not isinstance(value, wanted):
            continue
        if isinstance(value, bool) and base != "bool":
            continue  # JSON's true is not a number
        if isinstance(value, int) and base in ("int", "float") and not -INT64 <= value < INT64:
            continue  # 10**30 epochs: no counter holds it
        if base == "list" and inner == "str]" and not all(isinstance(v, str) for v in value):
            continue
        return True
    return False
