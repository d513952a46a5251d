"""Typed failures. The CLI turns each into a one-line message and its exit code."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


class FmnistError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class ConfigError(FmnistError):
    """Bad usage or a bad config: wrong key, type, value or option (exit 2)."""

    exit_code = 2


class DataError(FmnistError):
    """Fashion-MNIST missing, truncated or corrupt (exit 3)."""

    exit_code = 3


class MissingFileError(FmnistError):
    """A model, weights, run folder or image that is missing or unreadable (exit 3)."""

    exit_code = 3


class TrainingDiverged(FmnistError):
    """The loss became NaN or infinite; the last good checkpoint is kept (exit 4)."""

    exit_code = 4


class Interrupted(FmnistError):
    """SIGINT/SIGTERM stopped a run at a safe point; it can be resumed (exit 130)."""

    exit_code = 130
