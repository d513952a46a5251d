"""The value types config fields are built from, their bounds, and how a type reads to a user.

A value plain pydantic accepts can still be one the libraries below cannot take: a batch of
10**23 overflows TensorFlow's int64, an infinite learning rate trains nothing, a seed of 2**32
fails in NumPy. So every number here has the range the library takes, or what a 24 GiB machine
holds, and is checked when the config loads, before any run folder exists. Booleans are not
numbers (YAML's `epochs: true` would be 1), floats are finite, names are names, not paths.
`type_text` words any field's type ("int in 1..8192", "one of: avg, max") for errors and for
`key_table`, so the allowed values are written once, in the field.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AllowInfNan, BeforeValidator, StrictBool
from pydantic_core import PydanticCustomError

# Seeds: NumPy's and keras.utils.set_random_seed take 0..2**32-1. The layer seeds derived from
# it (augmentation seed+1/+2, initialisers seed+10/+11) go to Keras's SeedGenerator, which takes
# any int64, so the top of the range leaves them room.
MAX_SEED = 2**32 - 1
TRAIN_SIZE = 60_000  # Fashion-MNIST's training set: a larger train_limit is the whole set
TEST_SIZE = 10_000  # its test set
MAX_EPOCHS = 1_000  # far past convergence here (tens of epochs); history and plots stay small
MAX_BATCH = 8_192  # one 224x224x3 float32 input batch of 8192 is 4.6 GiB before activations
MAX_INPUT_SIZE = 512  # the images are 28x28: upscaling past 512 adds memory, not detail
# A Dense layer of 8192 on ResNet50's flattened 7x7x2048 map has 0.8 G weights: 13 GiB with
# Adam's two slots, about the most a 24 GiB machine holds beside the backbone.
MAX_UNITS = 8_192
MAX_FILTERS = 1_024  # one 28x28 conv of 1024 filters is 0.8 MB of activations per image
MAX_BLOCKS = 8  # conv blocks: five max-pools already bring a 28x28 map to 1x1
MAX_LAYERS = 16  # hidden layers of the dense baseline
# Keras holds the learning rate in a float32 variable, which is inf past 3.4e38. A huge finite
# rate is allowed: it diverges, and the divergence guard says so (exit 4).
MAX_LR = 1e38
MAX_PENALTY = 1.0  # an L2 factor or weight decay above 1 outweighs the loss itself
MAX_CACHE_GB = 1_024.0  # runtime.cache_memory_gb: more than any machine here holds
MAX_STEPS_PER_EXECUTION = 1_024  # batches per Keras call; past this the saved overhead is nil
MAX_TRIALS = 1_000  # each trial trains a model; a larger random search is a different tool
# runtime.peer_wait_s and peer_lost_s: a day; a longer wait for a peer is a hang by another name.
MAX_WAIT_S = 86_400
# Run folders are <name>-<YYYYmmdd-HHMMSS>[-k]: 100 bytes of name keeps them far below the
# 255-byte file-name limit of Linux, macOS and Windows file systems.
MAX_NAME_BYTES = 100
# The resized float32 input batch alone (batch_size x input_size^2 x channels x 4 bytes); a
# backbone's activations are many times that, so past 4 GiB no 24 GiB machine trains it.
MAX_INPUT_BATCH_BYTES = 4 * 2**30


class Allowed:
    """Field metadata: the words for what a field takes, where the type alone says too little."""

    def __init__(self, text: str) -> None:
        self.text = text


def _not_bool(value: Any) -> Any:
    # YAML reads `true` as a bool, and pydantic would take it as 1: a number must be a number.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a number is needed, not true/false")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
# Floats take ints too (`learning_rate: 1`) and YAML 1.1's strings such as "1e-5"; never inf/nan.
# Float: a value Python uses as it is (float64: a split, a size in GiB, epochs of warmup).
Float = Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False)]

# Float32: a value TensorFlow computes with in float32 (a learning rate, a dropout rate, a
# penalty, an augmentation factor; mixed precision keeps these in float32 too). A nonzero
# value below float32's smallest normal number is 0 there: TensorFlow's CPU kernels flush
# subnormals to zero, so 1e-40 trains like 0, and 1e-50 is 0 in any case. One past its
# largest is inf. Either is refused, naming the key, instead of training at rate 0 or inf.
FLOAT32_TINY = 1.1754943508222875e-38  # numpy.finfo(numpy.float32).tiny
FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max


def _in_float32(value: float) -> float:
    if value != 0 and abs(value) < FLOAT32_TINY:
        raise PydanticCustomError(
            "float32_zero",
            "is 0 in float32, the dtype it is used in (its nonzero values start at 1.2e-38)",
        )
    if abs(value) > FLOAT32_MAX:
        raise PydanticCustomError(
            "float32_inf", "is inf in float32, the dtype it is used in (its largest is 3.4e38)"
        )
    return value


Float32 = Annotated[Float, AfterValidator(_in_float32)]
Bool = StrictBool  # true/false only: 1, "yes" or "1" from a dict are errors, not guesses


def _check_path(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_path", "a path cannot be empty")
    if "\x00" in value:
        raise PydanticCustomError("nul_path", "a path cannot contain a NUL character")
    return value


PathText = Annotated[str, AfterValidator(_check_path), Allowed("a path")]


def _number_as_text(value: Any) -> Any:
    # `name: 2024` in YAML is an int; as a name it means the text 2024.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_name(value: str) -> str:
    """A run name: one plain folder-name part, never a path."""
    if "/" in value or "\\" in value or value in (".", ".."):
        raise PydanticCustomError(
            "name_is_path",
            "a name, not a path: put the folder in output.dir and a plain name here",
        )
    if not value.strip():
        raise PydanticCustomError("empty_name", "a name cannot be empty")
    if value.startswith("."):
        raise PydanticCustomError("hidden_name", "a name starting with '.' is a hidden folder")
    if not value.isprintable():
        raise PydanticCustomError("unprintable_name", "a name cannot hold control characters")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise PydanticCustomError(
            "long_name",
            f"a name longer than {MAX_NAME_BYTES} bytes makes run folder names too long",
        )
    return value


NAME_RULE = f"a name: up to {MAX_NAME_BYTES} bytes, printable, no / or \\, not starting with '.'"
Name = Annotated[
    str, BeforeValidator(_number_as_text), AfterValidator(_check_name), Allowed(NAME_RULE)
]

MAX_LABEL = 250  # an experiment name: MLflow's own limit is far above a name one can read


def _check_uri(value: str) -> str:
    """A tracking store: scheme://... (sqlite:///x.db, http://host:5000) or `databricks`."""
    head, sep, _ = value.partition(":")
    scheme = head.replace("+", "").replace("-", "").replace(".", "")
    if value.strip() != value or not (value == "databricks" or (sep and scheme.isalnum())):
        raise PydanticCustomError(
            "not_uri", "a URI with a scheme is needed, e.g. sqlite:///runs/mlflow.db"
        )
    return _check_path(value)


def _check_label(value: str) -> str:
    if not value.strip() or not value.isprintable() or len(value) > MAX_LABEL:
        raise PydanticCustomError(
            "bad_label", f"printable text of 1 to {MAX_LABEL} characters is needed"
        )
    return value


Uri = Annotated[
    str,
    AfterValidator(_check_uri),
    Allowed("a URI: sqlite:///PATH, postgresql://..., http://HOST:PORT or databricks"),
]
Label = Annotated[
    str,
    BeforeValidator(_number_as_text),
    AfterValidator(_check_label),
    Allowed(f"printable text, up to {MAX_LABEL} characters"),
]


def _check_prefix(value: str) -> str:
    if not value.strip() or not value.isprintable():
        raise PydanticCustomError("empty_prefix", "a layer-name prefix cannot be empty or blank")
    if "/" in value:
        raise PydanticCustomError("slash_prefix", "Keras layer names never contain '/'")
    return value


LayerPrefix = Annotated[
    str, AfterValidator(_check_prefix), Allowed("a layer-name prefix, e.g. block_13")
]


def consecutive_seeds(first: int, n: int, what: str) -> list[int]:
    """seed, seed+1, ..., the `n` seeds a repeat or a sweep runs; ValueError naming `what`
    (the key or option that asked for them) when they pass MAX_SEED. The one home of that
    bound: the config's sweep.seeds, --repeat and --seeds all come here."""
    if first + n - 1 > MAX_SEED:
        raise ValueError(
            f"{what}: {n} seeds from seed {first} pass {MAX_SEED}, the largest seed NumPy "
            f"takes; lower seed or {what}"
        )
    return list(range(first, first + n))


def is_text_field(annotation: Any) -> bool:
    """str, str | None, or a Literal of strings: a value typed for it stays the text given
    (YAML would turn "off" into False, "1e-3" into a number)."""
    kinds = members(annotation)
    if len(kinds) != 1:
        return False
    (kind,) = kinds
    if typing.get_origin(kind) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(kind))
    return kind is str


def shown(value: Any, limit: int = 60) -> str:
    """A received value as YAML would write it, cut short: errors stay one readable line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def type_text(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """A type as a user reads it: "int in 1..8192", "number in [0, 1)", "one of: a, b"."""
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        # A Field(...) inside Annotated keeps its bounds in its own metadata.
        flat = [m for item in extra for m in (getattr(item, "metadata", None) or [item])]
        return type_text(base, [*flat, *metadata])
    words = [item.text for item in metadata if isinstance(item, Allowed)]
    if words:  # the outermost wording wins
        return words[-1]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        words = [type_text(a, metadata) for a in args if a is not type(None)]
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is list:
        sizes = _bounds(metadata, "min_length", "max_length")
        return f"list{_length_text(*sizes)} of {type_text(args[0])}"
    if origin is dict:
        return "mapping"
    if annotation is bool:
        return "true/false"
    if annotation in (int, float):
        return _number_text(annotation, metadata)
    if annotation is str:
        return "text"
    return getattr(annotation, "__name__", str(annotation))


def members(annotation: Any) -> list[Any]:
    """The types a field takes, unwrapped from Annotated and unions, None left out."""
    if typing.get_origin(annotation) is Annotated:
        return members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [kind for arg in typing.get_args(annotation) for kind in members(arg)]
    return [] if annotation is type(None) else [annotation]


def _bounds(metadata: Any, *names: str) -> list[Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        for name in names:
            if hasattr(item, name):
                found[name] = getattr(item, name)
    return [found.get(name) for name in names]


def _length_text(low: int | None, high: int | None) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" (at least {low} items)"
    return f" ({low or 0} to {high} items)"


def _number_text(kind: type, metadata: Any) -> str:
    ge, gt, le, lt = _bounds(metadata, "ge", "gt", "le", "lt")
    if kind is int:
        low = ge if ge is not None else (gt + 1 if gt is not None else None)
        high = le if le is not None else (lt - 1 if lt is not None else None)
        if low is not None and high is not None:
            return f"int in {low}..{high}"
        return "int" + (f" >= {low}" if low is not None else f" <= {high}" if high else "")
    low_end = f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else None
    high_end = f"{le:g}]" if le is not None else f"{lt:g})" if lt is not None else None
    if low_end and high_end:
        return f"number in {low_end}, {high_end}"
    if low_end:
        return f"number {'>=' if ge is not None else '>'} {low_end[1:]}"
    return "number" if not high_end else f"number {'<=' if le is not None else '<'} {high_end[:-1]}"
