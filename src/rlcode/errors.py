"""The error types meant for users: ``rlcode`` prints each as one line, never as a traceback.

A user can reach these with input alone (a flag, a config file, a run directory, a reward function),
so the message itself is the whole report: it names the field or file and how to fix it. Anything
else that escapes ``rlcode.cli.app.main`` is a bug and keeps its traceback. ``ConfigError``
(``rlcode.configs``), ``CheckpointError`` (``rlcode.run.checkpoints``) and ``MissingExtra``
(``rlcode.extras``) are the older members of this family; ``cli.main`` handles them alike.
"""

from __future__ import annotations

from typing import Any

MAX_REPR = 200  # characters of a value an error message repeats; a 35 MB message helps nobody


class UserError(Exception):
    """Bad input of some kind; the message says which input and the fix. ``rlcode`` exits with 2."""

    exit_code = 2


class TrainingDiverged(UserError, RuntimeError):
    """Training met a non-finite loss or gradient and stopped before applying it.

    A ``RuntimeError`` as these stops always were. ``rlcode`` exits with 3 so that scripts can tell a
    diverged run (the hyperparameters or rewards need changing) from a refused input (exit 2).
    """

    exit_code = 3


class RunDataError(UserError, ValueError):
    """A run directory's logs (metrics.jsonl, config.json) cannot be read; the message names the file."""


def shorten(text: str, limit: int = MAX_REPR) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def short_repr(value: Any, limit: int = MAX_REPR) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that a message never repeats a huge input."""
    return shorten(repr(value), limit)
