"""Validated configuration machinery shared by every algorithm.

Each algorithm owns one frozen dataclass (``rlcode.tabular.config``, ``rlcode.policy_gradient.config``,
``rlcode.rlhf.config``); every field carries ``metadata={"help": ...}``. This module turns such a
dataclass into argparse flags, reads TOML/JSON config files, rejects unknown keys before any work
starts, and gives the small ``check_*`` helpers that ``__post_init__`` methods use so that every
error names the field, the bad value, the allowed range and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from rlcode.errors import UserError, short_repr

C = TypeVar("C")
# Episodes one evaluation may run: their returns are kept in memory, and a million already gives
# a standard error a thousand times below the returns' spread.
MAX_EPISODES = 1_000_000


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message says which field and how to fix it."""


def fail(cls_name: str, field_name: str, value: Any, allowed: str, fix: str | None = None) -> typing.NoReturn:
    hint = fix or f"set {field_name} to a value in {allowed}"
    raise ConfigError(f"{cls_name}.{field_name}={short_repr(value)} is invalid: allowed {allowed}; {hint}.")


def check_range(
    config: Any,
    field_name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    infinite_fix: str | None = None,
) -> None:
    """Raise ConfigError unless low <= value <= high (open ends where asked) and value is finite.

    An unbounded end does not admit inf: an infinite step size or coefficient passes a range check
    and then fails in the first update, far from the flag. ``infinite_fix`` says what to pass instead
    where inf would mean "off" (clipping, early stopping: None says that).
    """
    value = getattr(config, field_name)
    name = type(config).__name__
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, field_name, value, "a number", f"pass a number for {field_name}")
    if isinstance(value, float) and not math.isfinite(value):
        fix = infinite_fix or f"pass a finite number for {field_name}"
        fail(name, field_name, value, "a finite number", fix)
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    allowed = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        fail(name, field_name, value, allowed)


def check_episodes(episodes: int, flag: str) -> None:
    """An episode count for an evaluation: a whole number in [1, MAX_EPISODES]."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 1 <= episodes <= MAX_EPISODES:
        raise ConfigError(
            f"{flag}={short_repr(episodes)} is invalid: allowed a whole number in [1, {MAX_EPISODES}]; "
            f"pass such a number (for more, run several evaluations with different seeds)."
        )


def check_choice(config: Any, field_name: str, choices: typing.Iterable[Any]) -> None:
    value = getattr(config, field_name)
    options = list(choices)
    if value not in options:
        fail(type(config).__name__, field_name, value, f"one of {options}")


def _literal_choices(tp: Any) -> tuple[Any, ...] | None:
    return get_args(tp) if get_origin(tp) is Literal else None


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(cls: type, name: str, tp: Any, value: Any) -> Any:
    """Convert a value read from a file or the command line to the field's declared type."""
    tp, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{cls.__name__}.{name} may not be None; give a value of type {tp}.")
    choices = _literal_choices(tp)
    if choices is not None:
        if value not in choices:
            fail(cls.__name__, name, value, f"one of {list(choices)}")
        return value
    try:
        if tp is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if tp is int:
            return _whole_number(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            return str(value)
        origin = get_origin(tp)
        if origin in (tuple, list):
            items = value.split(",") if isinstance(value, str) else list(value)
            (inner, *_rest) = get_args(tp) or (str,)
            converted = [_coerce(cls, name, inner, item) for item in items]
            return tuple(converted) if origin is tuple else converted
    except ConfigError:  # an item of a list field: its message names the item and the fix already
        raise
    except (TypeError, ValueError, OverflowError):
        kind = getattr(tp, "__name__", tp)
        hint = "pass a whole number (2.9 is not rounded for you)" if tp is int else "pass a value of that type"
        raise ConfigError(f"{cls.__name__}.{name}={short_repr(value)} is not a valid {kind}; {hint}.") from None
    return value


def _whole_number(value: Any) -> int:
    """An int field's value: 3, 3.0, "3" and "1e5" are whole numbers; 2.9 or "2.9" is refused, never truncated."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            value = float(text)  # "1e5" is a common way to write a step count
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and inf
            raise ValueError(value)
        return int(value)
    raise TypeError(value)


def config_from_dict(cls: type[C], data: Mapping[str, Any], source: str = "config") -> C:
    """Build ``cls`` from a mapping, rejecting unknown keys before anything else happens."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{source} has unknown key(s) {short_repr(unknown)} for {cls.__name__}; valid keys are {sorted(names)}. "
            "Remove or rename them."
        )
    hints = field_types(cls)
    try:
        kwargs = {key: _coerce(cls, key, hints[key], value) for key, value in data.items()}
        return cls(**kwargs)
    except ConfigError as error:
        if source == "command line" or source in str(error):
            raise
        raise ConfigError(f"{source}: {error}") from None  # the file to edit, not only the field


def config_to_dict(config: Any) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


# A tier's reader of its own config-file format (the policy-gradient tier reads rl-zoo YAML):
# reader(path, config_class) -> flat dict of field values. Tiers hand theirs in through the algorithm
# registry (``Algorithm.config_readers``), so that this module imports no tier.
ConfigReader = Callable[[Path, "type | None"], dict[str, Any]]


def load_config_file(
    path: str | Path, config_class: type | None = None, readers: Mapping[str, ConfigReader] | None = None
) -> dict[str, Any]:
    """Read a TOML or JSON config file into a flat dict; ``readers`` add other suffixes (".yaml": ...)."""
    path = Path(path)
    readers = {suffix.lower(): reader for suffix, reader in (readers or {}).items()}
    kinds = ", ".join([".toml", ".json", *sorted(readers)])
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; pass the path of a {kinds} file.")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a {kinds} file.")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(read_config_text(path))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
    elif suffix == ".json":
        try:
            data = json.loads(read_config_text(path))
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON: {error}") from None
    elif suffix in readers:
        data = readers[suffix](path, config_class)
    else:
        raise ConfigError(f"config file {str(path)!r} has an unknown suffix; use {kinds}.")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of key = value pairs.")
    return data


def read_config_text(path: Path) -> str:
    """The text of a config file, which must be UTF-8 (as TOML requires); the error names the file and byte."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x}); "
            "save it as UTF-8."
        ) from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per dataclass field; defaults are suppressed so that only given flags override."""
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _strip_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})".replace("%", "%%")
        if tp is bool:
            parser.add_argument(
                _flag(f.name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
            continue
        choices = _literal_choices(tp)
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
        parser.add_argument(_flag(f.name), default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def config_from_args(
    cls: type[C],
    args: argparse.Namespace,
    config_file: str | Path | None = None,
    readers: Mapping[str, ConfigReader] | None = None,
) -> C:
    """File values first, then the flags the user actually gave on the command line."""
    data: dict[str, Any] = dict(load_config_file(config_file, cls, readers)) if config_file else {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in names:
        if hasattr(args, name):
            data[name] = getattr(args, name)
    return config_from_dict(cls, data, source=str(config_file) if config_file else "command line")


def doc_field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help text for the CLI and docs."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)
